/**
 * The single-run regime verdict: "off-principal" (RL-like), "principal-targeting" (SFT-like) or
 * "inconclusive". Documented, with its nulls and calibration, in docs/verdict.md.
 *
 * Sparsity never decides it (the size trap). Two measures are judged against a bracket of two nulls,
 * simulated per tensor at the checkpoint's own size and storage (src/analysis/nulls.ts):
 *  - principal energy: share of ||dW||_F^2 inside the two-sided top-k subspaces of W0 (1 - M8);
 *  - principal spectral share: ||(u_i^T dW v_i)_{i<=k}||_2 / ||dW||_F, how much of the update moves the
 *    top-k singular values (first order), i.e. spectrum preservation on the principal part.
 * A measure leans principal-targeting above BANDS.high x its gradient-like null (more than a gradient
 * that merely follows the matrix's own geometry), off-principal below its direction-blind null / BANDS.low
 * (less than an update with no preference at all), and is neutral in between: real gradient updates of
 * both regimes fall there, and only a comparison of runs from one base separates them (regime-compare.ts).
 * The third measure, the principal overlap ratio, compares the changed mask's overlap with principal
 * weights against what bf16 precision alone explains (band BANDS.overlap).
 *
 * Label: a regime when at least one measure leans to it and none leans the other way; inconclusive
 * otherwise, and always for degenerate tensors (no update, non-finite values).
 */
import type { TensorSpectral, Verdict, VerdictEvidence, VerdictLabel } from '../report/schema';
import { median } from '../core/stats';

/** Bands, calibrated on planted updates of known geometry built from real weights (test/unit/verdict.test.ts). */
export const BANDS = {
  /** leans principal-targeting above high x the gradient-like null */
  high: 1.5,
  /** leans off-principal below the direction-blind null / low */
  low: 1.5,
  /** principal overlap / its precision-only expectation: neutral within [1/overlap, overlap] */
  overlap: 1.05,
};

export interface BracketInput {
  value: number;
  directionBlind: number;
  gradientLike: number;
}

export interface VerdictInput {
  principalEnergy: BracketInput;
  spectralSharePrincipal: BracketInput;
  overlapPrincipal: number | null;
  overlapPrincipalExpected: number | null;
  /** Why there is no regime, when there is none (no update, non-finite values, k covering a whole side). */
  degenerate?: string;
  /** Per tensor: its k, which sets how noisy each measure is (noiseBand). Absent at the run level. */
  k?: number;
}

type Lean = VerdictEvidence['leans'];

/**
 * Observed against a null, as an odds ratio of shares: [x / (1 - x)] / [y / (1 - y)], with x, y the
 * energy shares (the spectral share is squared first, and the result square-rooted back to its scale).
 * For small shares it is the plain ratio; near 1 it keeps room above a null that already holds most of
 * the energy (a matrix whose top-k holds 80% of its own energy makes a gradient-like update put 64%
 * there, and a plain ratio could never exceed 1.56).
 */
export function oddsRatio(x: number, y: number, squared = false): number {
  const a = squared ? x * x : x;
  const b = squared ? y * y : y;
  // Shares within a float's rounding of 1 are 1: clamp so that two such shares compare as equal, not as 0 or Infinity.
  const odds = (p: number): number => {
    const c = Math.min(Math.max(p, 0), 1 - 1e-9);
    return c / (1 - c);
  };
  const r = ratio(odds(a), odds(b));
  return squared ? Math.sqrt(r) : r;
}

function ratio(a: number, b: number): number {
  if (a === Infinity) return b === Infinity ? 1 : Infinity;
  if (b === Infinity) return 0;
  return b > 0 ? a / b : a > 0 ? Infinity : NaN;
}

/** Which way a bracketed measure leans, from its ratios to the gradient-like and direction-blind nulls. */
export function leanOfBracket(overGradient: number, overBlind: number, widen = 1): Lean {
  if (overGradient > Math.max(BANDS.high, widen)) return 'principal-targeting';
  if (overBlind < 1 / Math.max(BANDS.low, widen)) return 'off-principal';
  return 'neutral';
}

/**
 * How far one tensor's measure must leave its null to count, for its own sampling noise: a share over
 * `cells` independent cells (k^2 core entries for the energy, k first-order shifts for the spectral
 * share) has a log standard deviation of about 1/sqrt(2 cells) (chi-square); a lean needs 4 of them.
 * With k = 16 that is 1.19x for the energy and 2.03x for the spectral share; with k = 64, 1.05x and 1.42x.
 * Run-level medians over tensors average this noise away and use the bands as they are.
 */
export function noiseBand(cells: number): number {
  return cells > 0 ? Math.exp(4 / Math.sqrt(2 * cells)) : Infinity;
}

export function leanOfOverlap(r: number): Lean {
  if (!Number.isFinite(r)) return 'neutral';
  if (r > BANDS.overlap) return 'principal-targeting';
  if (r < 1 / BANDS.overlap) return 'off-principal';
  return 'neutral';
}

export function labelOf(evidence: readonly VerdictEvidence[]): VerdictLabel {
  const off = evidence.some((e) => e.leans === 'off-principal');
  const on = evidence.some((e) => e.leans === 'principal-targeting');
  return off && !on ? 'off-principal' : on && !off ? 'principal-targeting' : 'inconclusive';
}

function bracketEvidence(measure: string, what: string, b: BracketInput, overGradient: number, overBlind: number, widen = 1): VerdictEvidence {
  const hi = Math.max(BANDS.high, widen);
  const lo = Math.max(BANDS.low, widen);
  return {
    measure,
    value: b.value,
    baseline: b.directionBlind,
    baselineGradient: b.gradientLike,
    ratio: overGradient,
    ratioDirectionBlind: overBlind,
    leans: leanOfBracket(overGradient, overBlind, widen),
    note: `${what} is ${fmt(overGradient)}x a gradient-like update's and ${fmt(overBlind)}x a direction-blind update's of the same size and storage (odds ratios) (principal-targeting above ${fmt(hi)}x the first, off-principal below ${fmt(1 / lo)}x the second)`,
  };
}

function overlapEvidence(observed: number, expected: number, r: number): VerdictEvidence {
  return {
    measure: 'principal overlap ratio',
    value: observed,
    baseline: expected,
    ratio: r,
    leans: leanOfOverlap(r),
    note: `changed weights hit principal weights ${fmt(r)}x as often as bf16 precision alone explains (neutral ${fmt(1 / BANDS.overlap)}-${fmt(BANDS.overlap)}x)`,
  };
}

export function verdictFrom(v: VerdictInput): Verdict {
  const evidence: VerdictEvidence[] = [];
  const pe = v.principalEnergy;
  const k = v.k;
  evidence.push(
    bracketEvidence(
      'principal energy',
      'the update energy inside the top-k subspaces',
      pe,
      oddsRatio(pe.value, pe.gradientLike),
      oddsRatio(pe.value, pe.directionBlind),
      k ? noiseBand(k * k) : 1,
    ),
  );
  const ss = v.spectralSharePrincipal;
  evidence.push(
    bracketEvidence(
      'principal spectral share',
      'the first-order shift of the top-k singular values per unit of update',
      ss,
      oddsRatio(ss.value, ss.gradientLike, true),
      oddsRatio(ss.value, ss.directionBlind, true),
      k ? noiseBand(k) : 1,
    ),
  );
  if (v.overlapPrincipal !== null && v.overlapPrincipalExpected !== null && v.overlapPrincipalExpected > 0) {
    evidence.push(overlapEvidence(v.overlapPrincipal, v.overlapPrincipalExpected, v.overlapPrincipal / v.overlapPrincipalExpected));
  }
  if (v.degenerate) {
    for (const e of evidence) e.leans = 'neutral';
    return { label: 'inconclusive', reason: v.degenerate, evidence };
  }
  const label = labelOf(evidence);
  return { label, reason: reasonOf(label, evidence), evidence };
}

/** One line a user reads beside the label. */
export function reasonOf(label: VerdictLabel, evidence: readonly VerdictEvidence[]): string {
  const leaning = evidence.filter((e) => e.leans !== 'neutral');
  if (label !== 'inconclusive') {
    return (
      leaning
        .filter((e) => e.leans === label)
        .map((e) => `${e.measure} ${fmt(e.ratio ?? NaN)}x`)
        .join(', ') + (label === 'off-principal' ? ' below the nulls' : ' above the nulls')
    );
  }
  if (leaning.length > 0) return 'the measures disagree';
  return 'between the nulls: more principal than a direction-blind update, no more than a gradient-like one (compare runs from this base to tell RL from SFT)';
}

/** The per-tensor input, from the spectral measurements and the simulated nulls. */
export function verdictInputOf(s: TensorSpectral, degenerate?: string): VerdictInput {
  return {
    principalEnergy: {
      value: 1 - s.offPrincipalEnergy,
      directionBlind: s.nulls.directionBlind.principalEnergy,
      gradientLike: s.nulls.gradientLike.principalEnergy,
    },
    spectralSharePrincipal: {
      value: s.spectralSharePrincipal,
      directionBlind: s.nulls.directionBlind.spectralSharePrincipal,
      gradientLike: s.nulls.gradientLike.spectralSharePrincipal,
    },
    overlapPrincipal: s.overlapPrincipal,
    overlapPrincipalExpected: s.overlapPrincipalExpectedPrecision,
    degenerate,
    k: s.k,
  };
}

export interface RunVerdictTensor {
  spectral: TensorSpectral;
  verdict: Verdict;
  /** Set when the tensor has no regime (no update, non-finite values). */
  degenerate?: string;
}

/**
 * The checkpoint's verdict: the same rule on the medians over non-degenerate tensors of each measure's
 * two ratios, and on the overlap ratio pooled over them. No non-degenerate tensor: inconclusive, with why.
 */
export function runVerdict(tensors: readonly RunVerdictTensor[], pooledOverlap: { observed: number | null; expected: number | null }): Verdict {
  const tensorLabels: Record<VerdictLabel, number> = { 'off-principal': 0, 'principal-targeting': 0, inconclusive: 0 };
  for (const t of tensors) tensorLabels[t.verdict.label]++;
  const live = tensors.filter((t) => !t.degenerate);
  if (live.length === 0) {
    const reasons = degenerateSummary(tensors);
    const reason =
      tensors.length === 0
        ? 'no linear weight was analysed'
        : tensors.every((t) => t.degenerate === 'no update')
          ? 'no update: every analysed weight is bit-identical to the base'
          : `no weight has a regime: ${reasons}`;
    return { label: 'inconclusive', reason, evidence: [], tensorLabels };
  }
  const inputs = live.map((t) => ({ ...verdictInputOf(t.spectral), k: undefined }));
  const med = (f: (i: VerdictInput) => number): number => median(inputs.map(f));
  const evidence: VerdictEvidence[] = [];
  for (const [key, measure, what] of [
    ['principalEnergy', 'principal energy', 'the update energy inside the top-k subspaces'],
    ['spectralSharePrincipal', 'principal spectral share', 'the first-order shift of the top-k singular values per unit of update'],
  ] as const) {
    const b: BracketInput = {
      value: med((i) => i[key].value),
      directionBlind: med((i) => i[key].directionBlind),
      gradientLike: med((i) => i[key].gradientLike),
    };
    const e = bracketEvidence(
      measure,
      what,
      b,
      med((i) => oddsRatio(i[key].value, i[key].gradientLike, key === 'spectralSharePrincipal')),
      med((i) => oddsRatio(i[key].value, i[key].directionBlind, key === 'spectralSharePrincipal')),
    );
    e.note = `median over ${live.length} tensors: ${e.note}`;
    evidence.push(e);
  }
  if (pooledOverlap.observed !== null && pooledOverlap.expected !== null && pooledOverlap.expected > 0) {
    const e = overlapEvidence(pooledOverlap.observed, pooledOverlap.expected, pooledOverlap.observed / pooledOverlap.expected);
    e.note = `pooled over ${live.length} tensors: ${e.note}`;
    evidence.push(e);
  }
  const label = labelOf(evidence);
  let reason = reasonOf(label, evidence);
  const skipped = tensors.length - live.length;
  if (skipped > 0) reason += ` (${skipped} of ${tensors.length} weights have no regime: ${degenerateSummary(tensors)})`;
  return { label, reason, evidence, tensorLabels };
}

/** A zero matrix has no singular directions: no angles, no principal subspace, no regime. */
export const ZERO_BASE = 'the base matrix is zero: it has no principal directions';
export const ZERO_CHECKPOINT = 'the checkpoint matrix is zero: it has no principal directions';

/**
 * Why a tensor has no regime, or undefined when it has one: no update, non-finite values, or a top-k
 * subspace that is a whole side of the matrix (every update is then "inside" it on that side, and no
 * measure can tell directions apart). The spectral pass labels by it and the comparison skips by it.
 */
export function noRegimeReason(t: {
  nonFinite: number;
  /** Entries the stored update changed; null where the update is measured unrounded (a LoRA adapter's factors). */
  changed: number | null;
  updateNorm: number;
  k: number;
  m: number;
  n: number;
  baseNorm?: number;
  checkpointNorm?: number;
}): string | undefined {
  if (t.nonFinite > 0) return `non-finite values (${t.nonFinite} entries)`;
  if (t.baseNorm === 0) return ZERO_BASE;
  if (t.checkpointNorm === 0) return ZERO_CHECKPOINT;
  if (t.changed === 0 || !(t.updateNorm > 0)) return 'no update';
  if (t.k >= Math.min(t.m, t.n)) return `k = ${t.k} covers a whole side of this ${t.m} x ${t.n} matrix: lower k`;
  return undefined;
}

/** "3 with no update; 11 where k covers a whole side of the matrix (lower k)": per-tensor reasons by kind. */
function degenerateSummary(tensors: readonly RunVerdictTensor[]): string {
  const kinds = new Map<string, number>();
  for (const t of tensors) {
    if (!t.degenerate) continue;
    const kind = t.degenerate.startsWith('non-finite')
      ? 'with non-finite values'
      : t.degenerate === 'no update'
        ? 'with no update'
        : t.degenerate.includes('covers a whole side')
          ? 'where k covers a whole side of the matrix (lower k)'
          : t.degenerate;
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  return [...kinds].map(([kind, n]) => `${n} ${kind}`).join('; ');
}

export function fmt(x: number): string {
  return Number.isFinite(x) ? (Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3)) : String(x);
}
