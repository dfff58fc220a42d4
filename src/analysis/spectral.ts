/**
 * The spectral pass (Gate II): M5 principal angles, M6 spectral drift, M7 principal / low-magnitude
 * overlaps, M8 off-principal energy, stable rank and ESD tail, and the verdict, per 2-D linear weight.
 * Heavy products run on the compute backend (onnxruntime, CUDA or CPU); small dense algebra in TypeScript.
 */
import type { TensorRef } from '../formats/checkpoint';
import { decodeToFloat32 } from '../formats/dtype';
import type { ComputeBackend, Matrix } from '../compute/backend';
import { truncatedSvd, principalAnglesDeg, spectralNorm, rangeScale, type SvdResult } from '../linalg/truncated-svd';
import { sharedSubspaceSvd, sharedBasisWidth, SUBSPACE_TOLERANCE, SUBSPACE_MAX_ITERATIONS } from '../linalg/shared-subspace';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { ANALYSIS_REVISION } from './revision';
import { changedMask, selectByMagnitude, pairOverlaps, type Overlap } from './masks';
import { giveScratch, takeScratch } from './scratch';
import { FULL_SVD_MAX_MIN_DIM, spectralScope, type AnalysisPlan } from './plan';
import { verdictFrom, verdictInputOf, runVerdict, noRegimeReason, ZERO_BASE } from './verdict';
import { simulateNulls, NO_ROUNDING } from './nulls';
import { median } from '../core/stats';
import { lowRankDense, lowRankInner, lowRankNorms, lowRankProjections, scaleLowRank, type LowRankUpdate } from '../linalg/low-rank';
import { MergedWeight } from './adapter';
import type { AnalysisSettings, SpectralSummary, TensorDiff, TensorSpectral, Verdict } from '../report/schema';
import type { AnalyzeOptions, SpectralPass, SpectralPassResult } from './analyze';

export { FULL_SVD_MAX_MIN_DIM };

export interface TensorPair {
  name: string;
  m: number;
  n: number;
  w0: Float32Array;
  w1: Float32Array;
  mask: Uint8Array;
  changed: number;
  /** Storage dtypes of the base and checkpoint tensors (the verdict's nulls simulate the checkpoint's). */
  dtype0: string;
  dtype1: string;
  /** Entries non-finite on either side (zeroed here; such a tensor gets no regime). */
  nonFinite: number;
  /**
   * The update by its factors (a LoRA adapter's scale * B @ A, in the stored weight's orientation): the
   * Gate II measures are then of W0 + L R exactly, not of w1, which holds the merge rounded to the base's
   * dtype and serves the changed mask (M1, M7) only.
   */
  update?: LowRankUpdate;
}

export async function readPair(a: TensorRef, b: TensorRef, eta: number): Promise<TensorPair> {
  const [m, n] = a.info.shape;
  const numel = m * n;
  const [r0, r1] = await Promise.all([a.file.readElements(a.info, 0, numel), b.file.readElements(b.info, 0, numel)]);
  const w0 = new Float32Array(numel);
  const w1 = new Float32Array(numel);
  decodeToFloat32(a.info.dtype, r0, numel, w0);
  decodeToFloat32(b.info.dtype, r1, numel, w1);
  const { mask, changed } = changedMask(a.info.dtype, r0, w0, b.info.dtype, r1, w1, eta);
  // Non-finite entries would poison every product: zero them in both (they are reported by the diff pass).
  let nonFinite = 0;
  for (let i = 0; i < numel; i++) {
    if (!Number.isFinite(w0[i]) || !Number.isFinite(w1[i])) {
      w0[i] = 0;
      w1[i] = 0;
      nonFinite++;
    }
  }
  const update = b.file instanceof MergedWeight ? await b.file.update() : undefined;
  return { name: a.info.name, m, n, w0, w1, mask, changed, dtype0: a.info.dtype, dtype1: b.info.dtype, nonFinite, ...(update ? { update } : {}) };
}

function mat(rows: number, cols: number, data: Float32Array): Matrix {
  return { rows, cols, data };
}

/** First `k` columns of a row-major rows x kk Float64 matrix, as a float32 Matrix. */
function leadingColumns(A: Float64Array, rows: number, kk: number, k: number): Matrix {
  const out = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++) for (let c = 0; c < k; c++) out[r * k + c] = A[r * kk + c];
  return mat(rows, k, out);
}

function leadingColumns64(A: Float64Array, rows: number, kk: number, k: number): Float64Array {
  const out = new Float64Array(rows * k);
  for (let r = 0; r < rows; r++) for (let c = 0; c < k; c++) out[r * k + c] = A[r * kk + c];
  return out;
}

function sumSq(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return s;
}

/** Hill estimator of the power-law exponent of the ESD tail (eigenvalues lambda = sigma^2), WeightWatcher-style. */
export function esdTailAlpha(sigma: ArrayLike<number>): number | null {
  const lam = Array.from(sigma, (s) => s * s).filter((x) => x > 0);
  const tail = Math.floor(lam.length / 2);
  if (tail < 5) return null;
  const xmin = lam[tail - 1];
  let s = 0;
  for (let i = 0; i < tail; i++) s += Math.log(lam[i] / xmin);
  return s > 0 ? 1 + tail / s : null;
}

/**
 * Where the spectral pass keeps each base weight's converged subspace (computed once per base file
 * identity and settings, reused by every checkpoint of that base). The engine and the CLI back it with
 * files in the result cache; `get` returns undefined for a miss or an entry that does not check out.
 */
export interface BaseBasisStore {
  get(key: string, length: number): Promise<Float32Array | undefined>;
  put(key: string, data: Float32Array): Promise<void>;
}

/** What the base-basis store did during one spectral pass. */
export interface BasisCacheStats {
  hits: number;
  misses: number;
}

/**
 * The key of a base weight's subspace: the identity of the file that holds it (path, size, mtime, header
 * digest), the tensor, and everything the subspace depends on.
 */
export function baseBasisKey(ref: TensorRef, settings: AnalysisSettings, l: number): string {
  const f = ref.file;
  return createHash('sha256')
    .update(
      JSON.stringify({
        revision: ANALYSIS_REVISION,
        file: [path.resolve(f.identity.path), f.identity.size, f.identity.mtimeMs, f.headerHash],
        tensor: [ref.info.name, ref.info.dtype, ref.info.shape],
        svd: [settings.k, settings.kSpectrum, settings.oversample, settings.powerIterations, settings.seed, l, SUBSPACE_TOLERANCE, SUBSPACE_MAX_ITERATIONS],
      }),
    )
    .digest('hex');
}

export interface PairSpectral {
  spectral: TensorSpectral;
  principal: Overlap;
  lowMagnitude: Overlap;
  principalNotLow: Overlap;
  verdict: Verdict;
  /** Why this tensor has no regime, when it has none. */
  degenerate?: string;
}

/** A small stable hash of a tensor name, so that each tensor's nulls draw their own random numbers. */
function nameSeed(name: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export interface PairOptions {
  timings?: Record<string, number>;
  signal?: AbortSignal;
  /** The base weight's stored subspace and where to keep a new one (the shared-subspace path only). */
  basis?: { get(length: number): Promise<Float32Array | undefined>; put(data: Float32Array): Promise<void>; stats?: BasisCacheStats };
}

export async function analyzePair(backend: ComputeBackend, p: TensorPair, settings: AnalysisSettings, opts: PairOptions = {}): Promise<PairSpectral> {
  const { timings, signal } = opts;
  let mark = performance.now();
  const lap = (phase: string): void => {
    if (!timings) return;
    const now = performance.now();
    timings[phase] = (timings[phase] ?? 0) + now - mark;
    mark = now;
  };
  const { m, n } = p;
  const minDim = Math.min(m, n);
  const k = Math.min(settings.k, minDim);
  const kk = Math.min(Math.max(k, settings.kSpectrum), minDim);
  // Entries near the float32 limit would overflow dW and the float32 products: the algebra runs on
  // 2^e W0, 2^e W1 (exact; everything below is in those units), and the measures with a unit (singular
  // values, first-order shifts, ||dW||_2) scale back. Masks and exponent groups use the stored values.
  const scale = rangeScale(p.w0, p.w1);
  const unit = 1 / scale;
  const w0 = scale === 1 ? p.w0 : p.w0.map((x) => x * scale);
  const W0 = mat(m, n, w0);
  // Small matrices get every singular value exactly; larger ones the top kk of both on one shared subspace.
  const l = sharedBasisWidth(minDim, kk, settings.oversample);
  const exact = minDim <= FULL_SVD_MAX_MIN_DIM || l >= minDim;
  // A factored update is measured as it is, W0 + L R unrounded: formed densely only where the exact SVD
  // path needs W1; on the shared subspace W1 is an operator and dW two thin products.
  const low = p.update ? scaleLowRank(p.update, scale) : undefined;
  let W1: Matrix | null = null;
  let dWm: Matrix | null = null;
  // A stored update's dW is scratch (overwritten whole below), given back once its last product is done.
  let dWScratch: Float32Array | undefined;
  if (!low || exact) {
    const dW = low ? lowRankDense(low) : (dWScratch = takeScratch(m * n));
    const w1 = low ? new Float32Array(m * n) : scale === 1 ? p.w1 : p.w1.map((x) => x * scale);
    if (low) for (let i = 0; i < dW.length; i++) w1[i] = w0[i] + dW[i];
    else for (let i = 0; i < dW.length; i++) dW[i] = w1[i] - w0[i];
    W1 = mat(m, n, w1);
    dWm = mat(m, n, dW);
  }
  let s0: SvdResult;
  let s1: SvdResult;
  let left: Float64Array;
  let right: Float64Array;
  let subspace: TensorSpectral['subspace'];
  if (exact) {
    const svdOpts = { oversample: settings.oversample, powerIterations: settings.powerIterations, seed: settings.seed, fullIfMinDimAtMost: minDim };
    s0 = await truncatedSvd(backend, W0, kk, svdOpts);
    signal?.throwIfAborted();
    s1 = await truncatedSvd(backend, W1!, kk, svdOpts);
    // M5: principal angles of the top-k left and right subspaces.
    left = principalAnglesDeg(leadingColumns64(s0.U, m, s0.k, k), leadingColumns64(s1.U, m, s1.k, k), m, k);
    right = principalAnglesDeg(leadingColumns64(s0.V, n, s0.k, k), leadingColumns64(s1.V, n, s1.k, k), n, k);
  } else {
    const stored = await opts.basis?.get(l * minDim);
    if (opts.basis?.stats) opts.basis.stats[stored ? 'hits' : 'misses']++;
    const r = await sharedSubspaceSvd(backend, W0, low ? null : W1, low ?? dWm!, {
      kk,
      k,
      oversample: settings.oversample,
      powerIterations: settings.powerIterations,
      seed: settings.seed,
      baseBasis: stored,
    });
    if (!stored && opts.basis) await opts.basis.put(r.baseBasis);
    s0 = r.base;
    s1 = r.checkpoint;
    left = r.anglesLeftDeg;
    right = r.anglesRightDeg;
    const c = r.checkpointConvergence;
    subspace = {
      basisWidth: r.l,
      baseFromCache: !!stored,
      baseIterations: r.baseConvergence?.iterations ?? null,
      baseConverged: r.baseConvergence?.converged ?? null,
      checkpointIterations: c.iterations,
      errorEstimate: c.error,
      tolerance: SUBSPACE_TOLERANCE,
      converged: c.converged,
    };
  }
  lap('svd');
  signal?.throwIfAborted();
  // A factored update's norms are exact (r x r problems); a stored one's ||dW||_2 to 1e-4 relative: a
  // Gate I probe shown to three digits; a tighter tolerance costs 5x on flat spectra.
  const lowNorms = low ? lowRankNorms(low) : undefined;
  const dFro2 = lowNorms ? lowNorms.fro ** 2 : sumSq(dWm!.data);
  const dFro = Math.sqrt(dFro2);
  const dSpec = lowNorms
    ? lowNorms.spectral
    : dFro2 > 0
      ? (await spectralNorm(backend, dWm!, { seed: settings.seed, tol: 1e-4, fullIfMinDimAtMost: FULL_SVD_MAX_MIN_DIM })).value
      : 0;
  lap('updateSpectralNorm');

  // M6: normalised spectral shift over the values computed for both.
  const count = Math.min(s0.S.length, s1.S.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < count; i++) {
    num += (s1.S[i] - s0.S[i]) ** 2;
    den += s0.S[i] ** 2;
  }
  const full = s0.method === 'full' && s1.method === 'full';

  // M8: energy of dW inside the top-k subspaces of W0 (from the factors when there are factors: k x r products).
  const U0 = leadingColumns(s0.U, m, s0.k, k);
  const V0 = leadingColumns(s0.V, n, s0.k, k);
  let energy: { twoSided: ArrayLike<number>; left: number; right: number };
  if (low) {
    const proj = lowRankProjections(low, leadingColumns64(s0.U, m, s0.k, k), leadingColumns64(s0.V, n, s0.k, k), k);
    energy = { twoSided: proj.twoSided, left: proj.leftFro2, right: proj.rightFro2 };
  } else {
    const dWV = await backend.matmul(dWm!, V0); // m x k
    const UtdW = await backend.matmul(U0, dWm!, { transA: true }); // k x n
    const UtdWV = await backend.matmul(U0, dWV, { transA: true }); // k x k
    energy = { twoSided: UtdWV.data, left: sumSq(UtdW.data), right: sumSq(dWV.data) };
  }
  // dW's last use (neither dWm nor dWScratch is read below): the nulls may take its pages.
  if (dWScratch) giveScratch(dWScratch);
  lap('energy');
  const share = (x: number): number => (dFro2 > 0 ? Math.min(1, Math.max(0, 1 - x / dFro2)) : 1);

  // M7: principal mask from the rank-k reconstruction of W0, low-magnitude mask from |W0|.
  const US = new Float32Array(m * k);
  for (let r = 0; r < m; r++) for (let c = 0; c < k; c++) US[r * k + c] = s0.U[r * s0.k + c] * s0.S[c];
  const W0k = await backend.matmul(mat(m, k, US), V0, { transB: true });
  lap('reconstruction');
  const numel = m * n;
  const count50 = Math.round(settings.alpha * numel);
  const P = selectByMagnitude(W0k.data, count50, true);
  const L = selectByMagnitude(p.w0, count50, false);
  lap('select');
  const { principal: oP, lowMagnitude: oL, principalNotLow: oPL } = pairOverlaps(P, L, p.mask, p.changed, p.w0);
  lap('overlaps');

  // M6 on the principal part: exact top-k shifts, and the first-order shifts u_i^T dW v_i (the diagonal of
  // U0_k^T dW V0_k), exact products with no difference of two estimates.
  let numK = 0;
  let denK = 0;
  for (let i = 0; i < Math.min(k, count); i++) {
    numK += (s1.S[i] - s0.S[i]) ** 2;
    denK += s0.S[i] ** 2;
  }
  const firstOrder = new Float64Array(k);
  for (let i = 0; i < k; i++) firstOrder[i] = energy.twoSided[i * k + i];
  const foNorm = Math.sqrt(sumSq(firstOrder));
  const baseFro2 = sumSq(w0);
  // ||W0 + L R||_F^2 = ||W0||_F^2 + 2 <W0, L R> + ||L R||_F^2.
  const ckptFro2 = low ? Math.max(0, baseFro2 + 2 * (await lowRankInner(backend, W0, low)) + dFro2) : sumSq(W1!.data);
  // A factored update is measured unrounded: what merging would round away does not make it "no update".
  const degenerate = noRegimeReason({
    nonFinite: p.nonFinite,
    changed: low ? null : p.changed,
    updateNorm: dFro2,
    k,
    m,
    n,
    baseNorm: baseFro2,
    checkpointNorm: ckptFro2,
  });
  const nulls = degenerate
    ? {
        directionBlind: { principalEnergy: 0, spectralSharePrincipal: 0 },
        gradientLike: { principalEnergy: 0, spectralSharePrincipal: 0 },
        rounding: NO_ROUNDING,
        matchedBy: 'norm' as const,
      }
    : await simulateNulls(backend, {
        m,
        n,
        k,
        w0,
        baseFro2,
        U0k: U0,
        V0k: V0,
        sigma: s0.S,
        // The nulls are stored like the measured update: a factored one is not rounded.
        checkpointBf16: p.dtype1 === 'BF16' && !low,
        baseBf16: p.dtype0 === 'BF16',
        eta: settings.eta,
        changed: p.changed,
        seed: nameSeed(p.name, settings.seed),
        signal,
      });
  lap('nulls');

  const sigma1_0 = s0.S[0] ?? 0;
  const sigma1_1 = s1.S[0] ?? 0;
  const spectral: TensorSpectral = {
    k,
    svdMethod: full ? 'full' : 'randomized',
    ...(subspace ? { subspace } : {}),
    principalAngleMaxDeg: Math.max(left[left.length - 1] ?? 0, right[right.length - 1] ?? 0),
    principalAnglesLeftDeg: Array.from(left, round4),
    principalAnglesRightDeg: Array.from(right, round4),
    nss: den > 0 ? Math.sqrt(num) / Math.sqrt(den) : 0,
    nssCount: count,
    nssSpectrum: full ? 'full' : 'top-k',
    sigmaBase: Array.from(s0.S.subarray(0, count), (x) => round6s(x * unit)),
    sigmaCheckpoint: Array.from(s1.S.subarray(0, count), (x) => round6s(x * unit)),
    nssPrincipal: denK > 0 ? Math.sqrt(numK / denK) : 0,
    principalShiftFirstOrder: Array.from(firstOrder, (x) => round6s(x * unit)),
    nssPrincipalFirstOrder: denK > 0 ? foNorm / Math.sqrt(denK) : 0,
    spectralSharePrincipal: dFro > 0 ? foNorm / dFro : 0,
    nulls,
    updateSpectralNorm: dSpec * unit,
    spectralShareOfUpdate: dFro > 0 ? Math.sqrt(num) / dFro : 0,
    overlapPrincipal: oP.observed,
    overlapPrincipalBaseline: oP.baseline,
    overlapPrincipalExpectedPrecision: oP.expectedPrecision,
    overlapLowMagnitude: oL.observed,
    overlapLowMagnitudeBaseline: oL.baseline,
    overlapLowMagnitudeExpectedPrecision: oL.expectedPrecision,
    overlapPrincipalNotLow: oPL.observed,
    overlapPrincipalNotLowBaseline: oPL.baseline,
    overlapPrincipalNotLowExpectedPrecision: oPL.expectedPrecision,
    offPrincipalEnergy: share(sumSq(energy.twoSided)),
    offPrincipalEnergyBaseline: 1 - (k * k) / (m * n),
    offPrincipalEnergyLeft: share(energy.left),
    offPrincipalEnergyLeftBaseline: 1 - k / m,
    offPrincipalEnergyRight: share(energy.right),
    offPrincipalEnergyRightBaseline: 1 - k / n,
    stableRankBase: sigma1_0 > 0 ? baseFro2 / sigma1_0 ** 2 : 0,
    stableRankCheckpoint: sigma1_1 > 0 ? ckptFro2 / sigma1_1 ** 2 : 0,
    esdAlphaBase: esdTailAlpha(s0.S),
    esdAlphaCheckpoint: esdTailAlpha(s1.S),
  };
  return { spectral, principal: oP, lowMagnitude: oL, principalNotLow: oPL, verdict: verdictFrom(verdictInputOf(spectral, degenerate)), degenerate };
}

function round4(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}

function round6s(x: number): number {
  return Number(x.toPrecision(7));
}

interface PooledOverlap {
  observed: number | null;
  baseline: number;
  expected: number | null;
}

/** Overlap pooled over tensors: sum |X and M| / sum |M|, the baseline sum |X| / sum numel. */
function poolOver(results: { t: TensorDiff; r: PairSpectral }[], pick: (r: PairSpectral) => Overlap): PooledOverlap {
  let xm = 0;
  let x = 0;
  let e = 0;
  let mCount = 0;
  let total = 0;
  for (const { t, r } of results) {
    const o = pick(r);
    xm += o.xAndM;
    x += o.xCount;
    e += o.expectedXAndM;
    mCount += t.changed;
    total += t.numel;
  }
  return { observed: mCount > 0 ? xm / mCount : null, baseline: total > 0 ? x / total : 0, expected: mCount > 0 ? e / mCount : null };
}

/** Pools per-tensor results into the run-level summary and verdict. */
export function summarizeSpectral(results: { t: TensorDiff; r: PairSpectral }[]): { spectralSummary: SpectralSummary; verdict: Verdict } | undefined {
  if (results.length === 0) return undefined;
  const pool = (pick: (r: PairSpectral) => Overlap): PooledOverlap => poolOver(results, pick);
  const P = pool((r) => r.principal);
  const L = pool((r) => r.lowMagnitude);
  const sp = results.map((x) => x.r.spectral);
  const spectralSummary: SpectralSummary = {
    tensors: results.length,
    principalAngleMaxDeg: Math.max(...sp.map((s) => s.principalAngleMaxDeg)),
    principalAngleMedianDeg: median(sp.map((s) => s.principalAngleMaxDeg)),
    nssMedian: median(sp.map((s) => s.nss)),
    nssPrincipalMedian: median(sp.map((s) => s.nssPrincipal)),
    nssPrincipalFirstOrderMedian: median(sp.map((s) => s.nssPrincipalFirstOrder)),
    spectralSharePrincipalMedian: median(sp.map((s) => s.spectralSharePrincipal)),
    spectralShareOfUpdateMedian: median(sp.map((s) => s.spectralShareOfUpdate)),
    offPrincipalEnergyMedian: median(sp.map((s) => s.offPrincipalEnergy)),
    offPrincipalEnergyBaselineMedian: median(sp.map((s) => s.offPrincipalEnergyBaseline)),
    overlapPrincipal: P.observed,
    overlapPrincipalBaseline: P.baseline,
    overlapPrincipalExpectedPrecision: P.expected,
    overlapLowMagnitude: L.observed,
    overlapLowMagnitudeBaseline: L.baseline,
    overlapLowMagnitudeExpectedPrecision: L.expected,
  };
  // Run level: the same rule on medians of the per-tensor ratios and the overlap pooled over tensors with a regime.
  const live = results.filter((x) => !x.r.degenerate);
  const Pl = live.length === results.length ? P : poolOver(live, (r) => r.principal);
  const verdict = runVerdict(
    results.map(({ r }) => ({ spectral: r.spectral, verdict: r.verdict, degenerate: r.degenerate })),
    { observed: Pl.observed, expected: Pl.expected },
  );
  return { spectralSummary, verdict };
}

/** Which tensors the spectral pass covers, and why the others are skipped: the plan's scope, then the data's. */
export function spectralApplies(t: TensorDiff): string | null {
  const scope = spectralScope(t.name, t.shape);
  if (scope) return scope;
  if (t.unchanged === null && t.numel > 0) return 'every entry is NaN or Inf: no spectrum';
  if (t.baseNormFro === 0) return ZERO_BASE;
  return null;
}

export interface SpectralPassOptions {
  /** Where base subspaces are kept between checkpoints and runs (none: each checkpoint computes its base's). */
  bases?: BaseBasisStore;
}

export function createSpectralPass(backend: ComputeBackend, passOptions: SpectralPassOptions = {}): SpectralPass {
  return {
    device: backend.name,
    async run(plan: AnalysisPlan, tensors: TensorDiff[], opts: AnalyzeOptions): Promise<SpectralPassResult> {
      // The tensors are the caller's: the pass reads them and returns its results; analyze.ts puts them in the report.
      const skipped = new Map<string, string>();
      const todo = tensors.filter((t) => {
        const why = plan.pair(t.name)?.spectralSkip ?? spectralApplies(t);
        if (why) skipped.set(t.name, why);
        return !why;
      });
      const results: { t: TensorDiff; r: PairSpectral }[] = [];
      const stats: BasisCacheStats = { hits: 0, misses: 0 };
      const store = passOptions.bases;
      // Two tensors in flight: while one runs TypeScript algebra (QR, selections), the other's products
      // run on onnxruntime's threads, so both cores stay busy. Results keep the tensor order.
      let next = 0;
      let done = 0;
      const slots: (PairSpectral | undefined)[] = new Array(todo.length);
      const workerLoop = async (): Promise<void> => {
        while (next < todo.length) {
          opts.signal?.throwIfAborted();
          const i = next++;
          const t = todo[i];
          // Report names are the base's; the plan's pairing (wrapper prefixes stripped) holds the checkpoint's tensor.
          const { base: a, checkpoint: b } = plan.pair(t.name)!;
          const pair = await readPair(a, b, opts.settings.eta);
          opts.signal?.throwIfAborted();
          // Without a store every base subspace is computed, and counted as such.
          const s = Math.min(pair.m, pair.n);
          const basis = {
            get: async (length: number) => store?.get(baseBasisKey(a, opts.settings, length / s), length),
            put: async (data: Float32Array) => store?.put(baseBasisKey(a, opts.settings, data.length / s), data),
            stats,
          };
          const r = await analyzePair(backend, pair, opts.settings, { signal: opts.signal, basis });
          slots[i] = r;
          done++;
          opts.onTensor?.({ ...t, spectral: r.spectral, verdict: r.verdict });
          opts.onProgress?.({ phase: 'spectral', tensor: t.name, index: done, total: todo.length, fraction: done / todo.length });
        }
      };
      await Promise.all([workerLoop(), workerLoop()]);
      todo.forEach((t, i) => results.push({ t, r: slots[i]! }));
      const used = stats.hits + stats.misses;
      return {
        report: {
          ...(summarizeSpectral(results) ?? {}),
          ...(used > 0 ? { baseBases: { fromCache: stats.hits, computed: stats.misses, cached: !!store } } : {}),
        },
        results: new Map(results.map(({ t, r }) => [t.name, r])),
        skipped,
      };
    },
  };
}
