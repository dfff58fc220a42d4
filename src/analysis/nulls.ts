/**
 * The nulls of the single-run verdict, simulated per tensor (docs/verdict.md).
 *
 * Two reference updates of the same size, stored the same way as the checkpoint:
 *  - direction-blind: an isotropic Gaussian update (no preference for any singular direction);
 *  - gradient-like: a Gaussian update whose left and right energy follow the base matrix's own spectrum,
 *    Z = C_L^{1/2} G C_R^{1/2} with C_R = V diag(sigma^2) V^T / ||W0||_F^2 (and C_L alike). A gradient
 *    sum_t delta_t x_t^T has right covariance E[x x^T] (the layer's inputs) and left covariance E[delta
 *    delta^T]; in a trained network both line up with the weight's principal directions (the weight grew
 *    along the directions its data excites), which is why real updates, RL and SFT alike, put 25-35x an
 *    isotropic share of their energy into the top-k subspaces. This null is that alignment and no more.
 * Only the top-k singular triplets are used: the rest of each side gets the remaining energy spread
 * evenly, which changes no top-k measure.
 *
 * Both are scaled so that, stored in the checkpoint's dtype (bf16 rounding simulated entry by entry on
 * the base's values), they change as many entries as the checkpoint did: Gate III dilutes a small
 * update with rounding noise, and the nulls are diluted the same way, so a measure / its null does not
 * drift with the update's size.
 */
import type { ComputeBackend, Matrix } from '../compute/backend';
import { Rng } from '../linalg/random';
import { float32BitsToBf16Bits } from '../formats/dtype';
import { changedByEta } from './masks';
import { giveScratch, takeScratch } from './scratch';

export interface NullMeasures {
  /** ||U0_k^T D V0_k||_F^2 / ||D||_F^2: share of the update's energy inside the two-sided top-k subspaces. */
  principalEnergy: number;
  /** ||diag(U0_k^T D V0_k)||_2 / ||D||_F: first-order shifts of the top-k singular values per unit of update. */
  spectralSharePrincipal: number;
}

/** What bf16 storage did to the direction-blind null: the share of its stored energy that is rounding residual, and where that residual lies. */
export interface RoundingEstimate {
  /** ||N||_F^2 / ||D||_F^2. */
  share: number;
  /** Expected share of the residual's energy inside the top-k subspaces, and on the diagonal (first-order shifts). */
  principalEnergy: number;
  diagonalEnergy: number;
}

export interface SimulatedNulls {
  directionBlind: NullMeasures;
  gradientLike: NullMeasures;
  /** Rounding estimated on the direction-blind null at the checkpoint's changed count (share 0 for unrounded storage). */
  rounding: RoundingEstimate;
  /** 'changed': scaled to the checkpoint's changed count after simulated bf16 storage; 'norm': unrounded storage, scale-free. */
  matchedBy: 'changed' | 'norm';
}

export interface NullInput {
  m: number;
  n: number;
  k: number;
  w0: Float32Array;
  /** ||W0||_F^2. */
  baseFro2: number;
  /** Top-k left/right singular vectors of W0 (row-major m x k and n x k) and the top-k singular values. */
  U0k: Matrix;
  V0k: Matrix;
  sigma: ArrayLike<number>;
  /** Whether the checkpoint stores bf16 (rounding simulated) and whether the base does (bit-pattern M1 rule). */
  checkpointBf16: boolean;
  baseBf16: boolean;
  eta: number;
  /** Changed entries of the checkpoint (M1), out of m * n. */
  changed: number;
  seed: number;
  signal?: AbortSignal;
}

/** Unrounded storage: nothing of the update is rounding residual. */
export const NO_ROUNDING: RoundingEstimate = { share: 0, principalEnergy: 0, diagonalEnergy: 0 };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function sig7(x: number): number {
  return Number(x.toPrecision(7));
}

/** Round a float32 value to bf16 (round to nearest, ties to even) and back to float32. */
export function roundBf16(x: number): number {
  f32[0] = x;
  u32[0] = float32BitsToBf16Bits(u32[0]) << 16;
  return f32[0];
}

/**
 * Finds the scale s at which round(w0 + s z) changes the target share of entries, on a fixed subsample.
 * The sample is gathered once into contiguous arrays: the 40 bisection steps then stream 2 x 256 KB
 * instead of missing the cache on every entry of two ~50 MB matrices.
 */
function matchScale(w0: Float32Array, w2: number, z: Float32Array, target: number, bothBf16: boolean, eta: number, rng: Rng): number {
  const numel = w0.length;
  const sampleSize = Math.min(numel, 1 << 16);
  const ws = new Float32Array(sampleSize);
  const zs = new Float32Array(sampleSize);
  if (sampleSize === numel) {
    ws.set(w0);
    zs.set(z);
  } else
    for (let j = 0; j < sampleSize; j++) {
      const i = rng.nextU32() % numel;
      ws[j] = w0[i];
      zs[j] = z[i];
    }
  let z2 = 0;
  for (let i = 0; i < numel; i++) z2 += z[i] * z[i];
  const base = z2 > 0 ? Math.sqrt(w2 / z2) : 1;
  // Whether entry j changes is monotone in s: w0 + s z moves away from w0, float32 and bf16 rounding are
  // monotone, and so is the eta rule along such a path (for a base off the bf16 grid, a grid value within
  // eta of w0 is its nearest, so the stored value leaves it once and for all). Once the bisection has moved lo past s, an entry
  // changed at s is changed at every later mid, and once hi has moved below s, an entry unchanged at s stays
  // unchanged. Only the entries still undecided are evaluated, and the count is the plain count exactly.
  const active = new Uint32Array(sampleSize);
  for (let j = 0; j < sampleSize; j++) active[j] = j;
  let nActive = sampleSize;
  let fixedChanged = 0;
  const changedAt = new Uint8Array(sampleSize);
  const f = new Float32Array(1);
  const fb = new Uint32Array(f.buffer);
  const evaluate = (s: number): number => {
    let c = 0;
    for (let a = 0; a < nActive; a++) {
      const j = active[a];
      f[0] = ws[j] + s * zs[j];
      fb[0] = float32BitsToBf16Bits(fb[0]) << 16;
      // The M1 rule: a bf16 pair compares values (both exact bf16 held in float32: equal values <=> equal bits, +0 == -0).
      const ch = bothBf16 ? f[0] !== ws[j] : changedByEta(ws[j], f[0], eta);
      changedAt[j] = ch ? 1 : 0;
      c += ch ? 1 : 0;
    }
    return c;
  };
  // Keeps the active entries whose flag is `keep`; returns how many were dropped with the other flag.
  const narrow = (keep: number): number => {
    let w = 0;
    for (let a = 0; a < nActive; a++) {
      const j = active[a];
      if (changedAt[j] === keep) active[w++] = j;
    }
    const dropped = nActive - w;
    nActive = w;
    return dropped;
  };
  // Geometric bisection with sqrt only (correctly rounded in IEEE 754, unlike exp and log, whose last bit
  // may differ between Node versions): the engine and the CLI must agree to the bit.
  let lo = base * 1e-9;
  let hi = base * 10;
  for (let it = 0; it < 40; it++) {
    const mid = Math.sqrt(lo * hi);
    const changed = fixedChanged + evaluate(mid);
    if (changed / sampleSize < target) {
      lo = mid;
      fixedChanged += narrow(0);
    } else {
      hi = mid;
      narrow(1);
    }
  }
  return Math.sqrt(lo * hi);
}

/**
 * The null's expected measures once stored: D = round(W0 + s Z) - W0 splits into alpha s Z (the part of
 * the reference update that survives rounding, alpha by least squares) and the rounding residual N,
 * which acts entry by entry. The first part's measures are the null's analytic expectations (`signal`);
 * the residual's are their expectation over independent signs, sum_ij N_ij^2 a_i b_j (a, b the row
 * leverages of U0_k, V0_k) and sum_l sum_ij N_ij^2 U_il^2 V_jl^2. Both are sums over many entries, so
 * the null carries almost none of the sampling noise of a single draw.
 */
interface StoredNull {
  measures: NullMeasures;
  rounding: RoundingEstimate;
}

async function expectedStored(
  backend: ComputeBackend,
  z: Float32Array,
  stored: StoredUpdate,
  s: number,
  signal: NullMeasures,
  inp: NullInput,
): Promise<StoredNull> {
  const { m, n, k } = inp;
  const { d, dz, zz, dd } = stored;
  if (!(dd > 0)) return { measures: { principalEnergy: 0, spectralSharePrincipal: 0 }, rounding: NO_ROUNDING };
  const alpha = zz > 0 ? dz / zz : 0;
  const U = inp.U0k.data;
  const V = inp.V0k.data;
  const a = new Float64Array(m);
  const b = new Float64Array(n);
  for (let i = 0; i < m; i++) for (let l = 0; l < k; l++) a[i] += U[i * k + l] ** 2;
  const V2 = new Float32Array(n * k);
  for (let j = 0; j < n; j++)
    for (let l = 0; l < k; l++) {
      V2[j * k + l] = V[j * k + l] ** 2;
      b[j] += V2[j * k + l];
    }
  // N^2 in place of d (d is not needed afterwards).
  const as = alpha * s;
  let noiseInside = 0;
  for (let i = 0; i < m; i++) {
    let row = 0;
    for (let j = 0, idx = i * n; j < n; j++, idx++) {
      const r = d[idx] - as * z[idx];
      const r2 = Math.fround(r * r);
      d[idx] = r2;
      row += r2 * b[j];
    }
    noiseInside += row * a[i];
  }
  const N2V2 = await backend.matmul({ rows: m, cols: n, data: d }, { rows: n, cols: k, data: V2 }); // m x k
  let noiseDiag = 0;
  for (let i = 0; i < m; i++) for (let l = 0; l < k; l++) noiseDiag += N2V2.data[i * k + l] * U[i * k + l] ** 2;
  const kept = alpha * alpha * zz;
  // Seven significant digits: far beyond what a simulated reference is good for, and the last bits of
  // long float sums are not worth a difference between two machines' reports.
  return {
    measures: {
      principalEnergy: sig7(Math.min(1, (kept * signal.principalEnergy + noiseInside) / dd)),
      spectralSharePrincipal: sig7(Math.sqrt(Math.max(0, kept * signal.spectralSharePrincipal ** 2 + noiseDiag) / dd)),
    },
    rounding: {
      share: sig7(Math.min(1, Math.max(0, 1 - kept / dd))),
      principalEnergy: sig7(dd > kept ? noiseInside / (dd - kept) : 0),
      diagonalEnergy: sig7(dd > kept ? noiseDiag / (dd - kept) : 0),
    },
  };
}

/** A simulated stored update, with the sums its least-squares split needs (taken in the same pass). */
interface StoredUpdate {
  /** round(w0 + s z) - w0, entry by entry. */
  d: Float32Array;
  /** <d, s z>, ||s z||^2 and ||d||^2. */
  dz: number;
  zz: number;
  dd: number;
}

/** Stores s * z on top of w0 in bf16, as the checkpoint did (into `out`), and returns the stored update. */
function storeBf16(w0: Float32Array, z: Float32Array, s: number, out: Float32Array): StoredUpdate {
  const sums = new Float64Array(3);
  storeBf16Loop(w0, z, s, out, new Uint32Array(out.buffer, out.byteOffset, out.length), sums);
  return { d: out, dz: sums[0], zz: sums[1], dd: sums[2] };
}

/**
 * The loop of storeBf16 on its own, with typed arrays in and out and nothing after it: a long loop first
 * runs on-stack-replaced code, and code after it that the interpreter never reached would deoptimise
 * the function on every call (measured: 12 ns per entry instead of 4).
 */
function storeBf16Loop(w0: Float32Array, z: Float32Array, s: number, out: Float32Array, bits: Uint32Array, sums: Float64Array): void {
  // roundBf16 inlined: the sum rounded to float32 in `out`, its bits rounded to bf16 in place.
  const len = w0.length;
  let dz = 0;
  let zz = 0;
  let dd = 0;
  for (let i = 0; i < len; i++) {
    const w = w0[i];
    const sz = s * z[i];
    out[i] = w + sz;
    bits[i] = float32BitsToBf16Bits(bits[i]) << 16;
    const di = Math.fround(out[i] - w);
    out[i] = di;
    dz += di * sz;
    zz += sz * sz;
    dd += di * di;
  }
  sums[0] = dz;
  sums[1] = zz;
  sums[2] = dd;
}

/** Z <- C_L^{1/2} Z C_R^{1/2} for the gradient-like null (in place; four m x n x k products). */
export async function shapeLikeSpectrum(backend: ComputeBackend, z: Float32Array, inp: NullInput): Promise<void> {
  const { m, n, k, sigma } = inp;
  const T = inp.baseFro2;
  let Tk = 0;
  for (let i = 0; i < k; i++) Tk += sigma[i] * sigma[i];
  const rest = Math.max(0, 1 - Tk / T);
  const cL = m > k ? Math.sqrt(rest / (m - k)) : 0;
  const cR = n > k ? Math.sqrt(rest / (n - k)) : 0;
  const dL = new Float32Array(k);
  const dR = new Float32Array(k);
  for (let i = 0; i < k; i++) {
    dL[i] = sigma[i] / Math.sqrt(T) - cL;
    dR[i] = sigma[i] / Math.sqrt(T) - cR;
  }
  // Right: X = cR Z + (Z V) diag(dR) V^T.
  const ZV = await backend.matmul({ rows: m, cols: n, data: z }, inp.V0k); // m x k
  for (let r = 0; r < m; r++) for (let c = 0; c < k; c++) ZV.data[r * k + c] *= dR[c];
  const right = await backend.matmul(ZV, inp.V0k, { transB: true }); // m x n
  for (let i = 0; i < z.length; i++) z[i] = cR * z[i] + right.data[i];
  // Left: Z = cL X + U diag(dL) (U^T X).
  const UtX = await backend.matmul(inp.U0k, { rows: m, cols: n, data: z }, { transA: true }); // k x n
  for (let r = 0; r < k; r++) for (let c = 0; c < n; c++) UtX.data[r * n + c] *= dL[r];
  const left = await backend.matmul(inp.U0k, UtX); // m x n
  for (let i = 0; i < z.length; i++) z[i] = cL * z[i] + left.data[i];
}

/** The nulls' expected measures before storage: shares of an unrounded update of each kind. */
export function analyticNulls(
  m: number,
  n: number,
  k: number,
  sigma: ArrayLike<number>,
  baseFro2: number,
): { directionBlind: NullMeasures; gradientLike: NullMeasures } {
  let Tk = 0;
  let T4 = 0;
  for (let i = 0; i < k; i++) {
    const s2 = sigma[i] * sigma[i];
    Tk += s2;
    T4 += s2 * s2;
  }
  const T = baseFro2 > 0 ? baseFro2 : 1;
  return {
    directionBlind: { principalEnergy: sig7((k * k) / (m * n)), spectralSharePrincipal: sig7(Math.sqrt(k / (m * n))) },
    gradientLike: { principalEnergy: sig7(Math.min(1, (Tk / T) * (Tk / T))), spectralSharePrincipal: sig7(Math.min(1, Math.sqrt(T4) / T)) },
  };
}

/**
 * Both nulls for one tensor (deterministic from the seed). A checkpoint stored in bf16 gets its rounding
 * simulated: each reference update is drawn, scaled to change as many entries as the checkpoint did,
 * rounded, and its expected measures taken as stored. Other dtypes: the analytic values.
 */
export async function simulateNulls(backend: ComputeBackend, inp: NullInput): Promise<SimulatedNulls> {
  const numel = inp.m * inp.n;
  const analytic = analyticNulls(inp.m, inp.n, inp.k, inp.sigma, inp.baseFro2);
  if (!inp.checkpointBf16) return { ...analytic, rounding: NO_ROUNDING, matchedBy: 'norm' };
  const rng = new Rng(inp.seed);
  // Both are overwritten whole before they are read (the Gaussian fill, the stored update).
  const z = takeScratch(numel);
  const d = takeScratch(numel);
  try {
    const target = inp.changed / numel;
    const run = async (signal: NullMeasures): Promise<StoredNull> => {
      const s = matchScale(inp.w0, inp.baseFro2, z, target, inp.baseBf16, inp.eta, rng);
      return expectedStored(backend, z, storeBf16(inp.w0, z, s, d), s, signal, inp);
    };
    // One Gaussian draw serves both: each null is an expectation over its own draw, and the gradient-like
    // one is the direction-blind draw shaped (the two come out correlated, neither biased).
    rng.fillGaussianZiggurat(z);
    const blind = await run(analytic.directionBlind);
    inp.signal?.throwIfAborted();
    await shapeLikeSpectrum(backend, z, inp);
    const gradient = await run(analytic.gradientLike);
    return { directionBlind: blind.measures, gradientLike: gradient.measures, rounding: blind.rounding, matchedBy: 'changed' };
  } finally {
    giveScratch(z);
    giveScratch(d);
  }
}

/**
 * A stored share with the rounding residual taken out: x_s = (1 - rho) x + rho n, so x = (x_s - rho n) / (1 - rho),
 * with rho and n estimated on the direction-blind null at the same changed count. Used to compare runs of
 * different sizes, whose stored updates carry different amounts of rounding. Null when rounding is nearly all of it.
 */
export function withoutRounding(stored: number, rho: number, noiseShare: number): number | null {
  if (rho > 0.95) return null;
  return Math.min(1, Math.max(1e-12, (stored - rho * noiseShare) / (1 - rho)));
}
