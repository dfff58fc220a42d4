/**
 * The comparative verdict: runs from one base, paired tensor by tensor over their shared linear weights,
 * each measure normalised by the update's size, with a bootstrap interval over tensors. The paper's own
 * evidence is of this kind (RL against SFT from the same base). Documented in docs/verdict.md.
 *
 * For each pair (a, b):
 *  - updateSizeRatio: median over shared tensors of ||dW_a||_F / ||dW_b||_F, named so that nobody reads
 *    a smaller update as a different regime (the size trap);
 *  - per measure, the geometric mean over tensors of the per-tensor ratio a/b, with a 95% percentile
 *    interval from a bootstrap over tensors (BOOTSTRAP resamples, seeded: reproducible);
 *  - a measure leans towards the run whose value is lower (every measure here grows with principal
 *    targeting) when its interval excludes 1 and the ratio leaves the measure's band; the max principal
 *    angle is shown beside them but does not vote (see MEASURES);
 *  - moreOffPrincipal: the run every leaning measure points to, or null ("no difference beyond the update
 *    size" when none leans, "the measures disagree" when they point both ways).
 */
import type { CheckpointReport, ComparativeEvidence, RegimeComparison, RegimePair, RegimeRunLayer, TensorDiff, TensorSpectral } from '../report/schema';
import { Rng } from '../linalg/random';
import { median } from '../core/stats';
import { withoutRounding } from './nulls';
import { noRegimeReason } from './verdict';

export const BOOTSTRAP = 2000;

interface Measure {
  measure: string;
  /** A per-tensor value that grows with principal targeting and does not grow with the update's size. */
  value: (t: TensorDiff) => number | null;
  /** Ratios within [1/band, band] are no difference worth naming. */
  band: number;
  /** Whether the measure takes part in moreOffPrincipal (false: shown for the paper's figure, see `why`). */
  votes: boolean;
}

const pos = (x: number | null | undefined): number | null => (x !== null && x !== undefined && Number.isFinite(x) && x > 0 ? x : null);

/** Odds x / (1 - x) of a stored energy share with the rounding residual taken out (square-rooted for a norm share). */
function oddsWithoutRounding(stored: number, sp: TensorSpectral, residual: 'principalEnergy' | 'diagonalEnergy', root: boolean): number | null {
  const x = withoutRounding(stored, sp.nulls.rounding.share, sp.nulls.rounding[residual]);
  if (x === null) return null;
  const odds = x / (1 - Math.min(x, 1 - 1e-12));
  return pos(root ? Math.sqrt(odds) : odds);
}

export const MEASURES: readonly Measure[] = [
  {
    measure: 'principal angle per unit update',
    // Wedin: the top-k subspaces rotate by at most ||dW||_2 / gap, so angle / ||dW||_2 is the rotation per
    // unit of update. Shown, not voting: the max angle is set by the gap sigma_k - sigma_k+1 (nonlinear once
    // the update is comparable to it) and by bf16 rounding noise (which adds to ||dW||_2), so two updates of
    // one geometry at different sizes differ here (test/unit/verdict.test.ts).
    value: (t) => pos(t.spectral && t.spectral.updateSpectralNorm > 0 ? t.spectral.principalAngleMaxDeg / t.spectral.updateSpectralNorm : null),
    band: 1.1,
    votes: false,
  },
  {
    measure: 'principal spectral shift per unit update, rounding removed',
    // First-order shifts of the top-k singular values per unit of ||dW||_F (principal-part NSS per unit
    // update), as odds of the squared share, with the bf16 rounding residual taken out (nulls.ts), so that
    // runs of different sizes, carrying different amounts of rounding, compare like for like.
    value: (t) => (t.spectral ? oddsWithoutRounding(t.spectral.spectralSharePrincipal ** 2, t.spectral, 'diagonalEnergy', true) : null),
    band: 1.1,
    votes: true,
  },
  {
    measure: 'principal energy, rounding removed',
    // Share of the update's energy inside the top-k subspaces, as odds, with the bf16 rounding residual
    // taken out: scale-free, and a small update's dilution by rounding does not read as off-principal.
    value: (t) => (t.spectral ? oddsWithoutRounding(1 - t.spectral.offPrincipalEnergy, t.spectral, 'principalEnergy', false) : null),
    band: 1.1,
    votes: true,
  },
  {
    measure: 'principal overlap against precision',
    // Overlap of the changed mask with the principal weights over what bf16 precision alone explains.
    value: (t) =>
      pos(
        t.spectral && t.spectral.overlapPrincipal !== null && t.spectral.overlapPrincipalExpectedPrecision
          ? t.spectral.overlapPrincipal / t.spectral.overlapPrincipalExpectedPrecision
          : null,
      ),
    band: 1.02,
    votes: true,
  },
];

export class ComparisonError extends Error {
  override name = 'ComparisonError';
}

/**
 * ||dW||_F of the update the spectral measures saw: an adapter's exact scale * B @ A (its spectral
 * measures are of the unrounded update), else the stored difference.
 */
function measuredUpdateNorm(t: TensorDiff): number {
  return t.adapter?.updateNormFro ?? t.updateNormFro;
}

function hasUpdate(t: TensorDiff | undefined): t is TensorDiff {
  // Tensors without a regime carry no comparison either.
  return (
    !!t &&
    !!t.spectral &&
    noRegimeReason({
      nonFinite: t.nonFinite,
      changed: t.adapter ? null : t.changed,
      updateNorm: measuredUpdateNorm(t),
      k: t.spectral.k,
      m: t.shape[0],
      n: t.shape[1],
    }) === undefined
  );
}

/** Geometric mean of ratios and its bootstrap percentile interval over the same tensors. */
export function bootstrapGeometricMean(logRatios: readonly number[], rng: Rng, resamples = BOOTSTRAP): { ratio: number; ciLow: number; ciHigh: number } {
  const n = logRatios.length;
  const mean = logRatios.reduce((a, b) => a + b, 0) / n;
  const means = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += logRatios[rng.nextU32() % n];
    means[r] = s / n;
  }
  means.sort();
  const q = (p: number): number => means[Math.min(resamples - 1, Math.max(0, Math.floor(p * resamples)))];
  // Seven significant digits: exp's last bit may differ between Node versions, and engine and CLI must agree.
  const sig = (x: number): number => Number(x.toPrecision(7));
  return { ratio: sig(Math.exp(mean)), ciLow: sig(Math.exp(q(0.025))), ciHigh: sig(Math.exp(q(0.975))) };
}

export function comparePair(aLabel: string, a: CheckpointReport, bLabel: string, b: CheckpointReport, seed = 1234): RegimePair {
  const bByName = new Map(b.tensors.map((t) => [t.name, t]));
  const sameShape = (t: TensorDiff): boolean => {
    const o = bByName.get(t.name);
    return !!o && !!t.spectral && !!o.spectral && t.shape.join('x') === o.shape.join('x');
  };
  if (!a.tensors.some(sameShape)) throw new ComparisonError(`${aLabel} and ${bLabel} share no analysed linear weight: nothing to compare`);
  const shared = a.tensors.filter((t) => sameShape(t) && hasUpdate(t) && hasUpdate(bByName.get(t.name)));
  if (shared.length === 0) {
    // They share weights, but none has a regime in both (no update, non-finite values, k covering a side).
    const why = [
      ...new Set(
        [...a.tensors, ...b.tensors].map((t) => t.verdict?.reason).filter((r): r is string => !!r && !r.startsWith('between') && !r.includes('disagree')),
      ),
    ]
      .slice(0, 3)
      .join('; ');
    return {
      a: aLabel,
      b: bLabel,
      updateSizeRatio: null,
      moreOffPrincipal: null,
      evidence: [],
      tensors: 0,
      summary: `no comparison: no shared weight has a regime in both runs${why ? ` (${why})` : ''}`,
    };
  }
  const updateSizeRatio = median(shared.map((t) => measuredUpdateNorm(t) / measuredUpdateNorm(bByName.get(t.name)!)));
  const rng = new Rng(seed);
  const evidence: ComparativeEvidence[] = [];
  for (const m of MEASURES) {
    const logs: number[] = [];
    for (const t of shared) {
      const x = m.value(t);
      const y = m.value(bByName.get(t.name)!);
      if (x !== null && y !== null) logs.push(Math.log(x / y));
    }
    if (logs.length < 2) continue;
    const { ratio, ciLow, ciHigh } = bootstrapGeometricMean(logs, rng);
    const leans = ciHigh < 1 && ratio < 1 / m.band ? aLabel : ciLow > 1 && ratio > m.band ? bLabel : null;
    evidence.push({ measure: m.measure, ratio, ciLow, ciHigh, leans, tensors: logs.length, votes: m.votes });
  }
  const voting = evidence.filter((e) => e.votes);
  const toA = voting.filter((e) => e.leans === aLabel).length;
  const toB = voting.filter((e) => e.leans === bLabel).length;
  const moreOffPrincipal = toA > 0 && toB === 0 ? aLabel : toB > 0 && toA === 0 ? bLabel : null;
  const size = `${aLabel}'s update is ${fmtRatio(updateSizeRatio)}x ${bLabel}'s`;
  let summary: string;
  if (moreOffPrincipal) {
    const other = moreOffPrincipal === aLabel ? bLabel : aLabel;
    const n = Math.max(toA, toB);
    summary = `${moreOffPrincipal} is more off-principal than ${other} per unit of update (${n} of ${voting.length} measures; ${size})`;
  } else if (toA > 0 && toB > 0) {
    summary = `the measures disagree (${toA} lean to ${aLabel}, ${toB} to ${bLabel}; ${size})`;
  } else {
    summary = `no difference beyond the update size: ${size}`;
  }
  return { a: aLabel, b: bLabel, updateSizeRatio, moreOffPrincipal, evidence, tensors: shared.length, summary };
}

/** Per run and layer, the paper's figures side by side: max principal angle, principal-part NSS, off-principal energy, overlap ratio. */
export function layerProfile(r: CheckpointReport): RegimeRunLayer[] {
  const byLayer = new Map<number, TensorDiff[]>();
  for (const t of r.tensors) {
    if (!t.spectral || t.layer === null) continue;
    const list = byLayer.get(t.layer) ?? [];
    list.push(t);
    byLayer.set(t.layer, list);
  }
  return [...byLayer.entries()]
    .sort((x, y) => x[0] - y[0])
    .map(([layer, ts]) => {
      const sp = ts.map((t) => t.spectral!);
      const ov = sp.filter((s) => s.overlapPrincipal !== null && s.overlapPrincipalExpectedPrecision);
      return {
        layer,
        principalAngleMaxDeg: Math.max(...sp.map((s) => s.principalAngleMaxDeg)),
        nssPrincipal: median(sp.map((s) => s.nssPrincipalFirstOrder)),
        offPrincipalEnergy: median(sp.map((s) => s.offPrincipalEnergy)),
        offPrincipalEnergyNull: median(sp.map((s) => 1 - s.nulls.gradientLike.principalEnergy)),
        overlapPrincipalRatio: ov.length ? median(ov.map((s) => s.overlapPrincipal! / s.overlapPrincipalExpectedPrecision!)) : null,
      };
    });
}

export function compareRegimes(labels: readonly string[], reports: readonly CheckpointReport[], seed = 1234): RegimeComparison {
  if (labels.length !== reports.length) throw new Error('compareRegimes: one label per report');
  const bases = new Set(reports.map((r) => r.base));
  if (bases.size > 1) throw new ComparisonError(`the runs have different bases: ${[...bases].join(' and ')}`);
  const pairs: RegimePair[] = [];
  for (let i = 0; i < reports.length; i++)
    for (let j = i + 1; j < reports.length; j++) pairs.push(comparePair(labels[i], reports[i], labels[j], reports[j], seed));
  return {
    method: `per pair, over shared linear weights: geometric mean of per-tensor ratios a/b, 95% percentile interval from ${BOOTSTRAP} bootstrap resamples of tensors`,
    runs: reports.map((r, i) => ({
      label: labels[i],
      checkpoint: r.checkpoint,
      step: r.step,
      relUpdateNorm: r.summary.relUpdateNorm,
      unchangedLinear: r.summary.unchangedLinear,
      verdict: r.verdict ?? null,
      layers: layerProfile(r),
    })),
    pairs,
  };
}

function fmtRatio(x: number): string {
  return Number.isFinite(x) ? x.toPrecision(3) : String(x);
}
