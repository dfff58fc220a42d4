/**
 * Weight pairs with an LLM-like spectrum and an update of known geometry, whose exact singular values and
 * principal angles are known by construction (no large SVD needed to check an estimate against them).
 *
 *   W0 = U diag(sigma) V^T,  W1 = (U Gu) diag(sigma') (V Gv)^T,  dW = U (Gu diag(sigma') Gv^T - diag(sigma)) V^T
 *
 * sigma decays like a power law with no clean gaps (sigma_i = (1 + i / 8)^-decay, with a 1% jitter kept
 * descending). U and V are dense and exactly orthonormal: a permuted identity mixed by layers of random
 * Givens rotations on row pairs (a butterfly; cheap, and a randomized SVD with a Gaussian sketch does not
 * care which orthonormal bases carry the spectrum). Gu and Gv are rotations in disjoint index pairs of
 * the coefficient space:
 * - every top-k index i is paired with a partner outside the top k at angle theta_i: the principal angles
 *   between the top-k subspaces of W0 and W1 are exactly the theta_i (left and right drawn separately);
 * - the remaining indices below the top kSpectrum are paired among themselves at a common angle chosen
 *   so that ||dW||_F / ||W0||_F reaches the asked size: update energy that moves no top value;
 * - sigma' = sigma (1 + shift_i) with shift_i ~ shiftRel N(0, 1): the exact spectral shift.
 * The singular values of W1 are exactly sigma' (sorted), so the normalised spectral shift over the top kk
 * is known to float64 rounding. W0 and dW are materialised in float32 by backend products; W1 = W0 + dW,
 * rounded once.
 *
 * Used by the accuracy tests of the spectral pass and by the benchmark's accuracy section.
 */
import type { ComputeBackend, Matrix } from '../compute/backend';
import { Rng } from '../linalg/random';

export interface PlantedOptions {
  m: number;
  n: number;
  /** Power-law exponent of the singular values (0.5: sigma_i ~ i^-1/2). */
  decay: number;
  /** Principal k whose subspaces rotate. */
  k: number;
  /** Top values whose shift is measured (kSpectrum). */
  kk: number;
  /** Standard deviation of the relative shift of each singular value. */
  shiftRel: number;
  /** Range of the top-k rotation angles in degrees, drawn uniformly. */
  angleDeg: [number, number];
  /** ||dW||_F / ||W0||_F to reach (the bulk rotations make up what the shifts and top rotations do not). */
  updateRel: number;
  seed: number;
}

/** Update geometries of the two regimes at the sizes users meet (relative Frobenius norm 2e-3 and 2e-2). */
export const RL_SIZED = { shiftRel: 1e-5, angleDeg: [0.01, 0.15] as [number, number], updateRel: 2e-3 };
export const SFT_SIZED = { shiftRel: 1e-3, angleDeg: [0.2, 1.5] as [number, number], updateRel: 2e-2 };

export interface PlantedPair {
  W0: Matrix;
  W1: Matrix;
  dW: Matrix;
  /** Exact singular values, descending. */
  sigma0: Float64Array;
  sigma1: Float64Array;
  /** Exact principal angles (degrees, ascending) between the top-k left and right subspaces. */
  anglesLeftDeg: Float64Array;
  anglesRightDeg: Float64Array;
  /** Exact ||sigma1 - sigma0|| / ||sigma0|| over the top kk. */
  nss: number;
  /** ||dW||_F / ||W0||_F as built. */
  updateRel: number;
}

/** A dense rows x s matrix with exactly orthonormal columns (row-major, float64). */
function butterflyBasis(rows: number, s: number, rng: Rng): Float64Array {
  const perm = Array.from({ length: rows }, (_, i) => i);
  for (let i = rows - 1; i > 0; i--) {
    const j = rng.nextU32() % (i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const X = new Float64Array(rows * s);
  for (let c = 0; c < s; c++) X[perm[c] * s + c] = 1;
  // Layers of rotations on row pairs (r, r + h), h a power of two; a fresh row shuffle between layers.
  const layers = Math.ceil(Math.log2(rows)) + 2;
  const rowPerm = new Int32Array(rows);
  for (let layer = 0; layer < layers; layer++) {
    for (let i = 0; i < rows; i++) rowPerm[i] = i;
    for (let i = rows - 1; i > 0; i--) {
      const j = rng.nextU32() % (i + 1);
      const t = rowPerm[i];
      rowPerm[i] = rowPerm[j];
      rowPerm[j] = t;
    }
    for (let i = 0; i + 1 < rows; i += 2) {
      const a = rowPerm[i] * s;
      const b = rowPerm[i + 1] * s;
      const phi = 2 * Math.PI * rng.nextUniform();
      const c = Math.cos(phi);
      const sn = Math.sin(phi);
      for (let t = 0; t < s; t++) {
        const x = X[a + t];
        const y = X[b + t];
        X[a + t] = c * x - sn * y;
        X[b + t] = sn * x + c * y;
      }
    }
  }
  return X;
}

interface Rotation {
  i: number;
  j: number;
  theta: number;
}

/** Disjoint index pairs: each top-k index with a partner in [k, s), the rest below kk paired among themselves. */
function rotations(s: number, k: number, kk: number, angle: [number, number], rng: Rng): { top: Rotation[]; bulk: [number, number][] } {
  const free = Array.from({ length: s - kk }, (_, i) => kk + i);
  for (let i = free.length - 1; i > 0; i--) {
    const j = rng.nextU32() % (i + 1);
    [free[i], free[j]] = [free[j], free[i]];
  }
  const top: Rotation[] = [];
  for (let i = 0; i < k; i++) {
    const deg = angle[0] + (angle[1] - angle[0]) * rng.nextUniform();
    top.push({ i, j: free.pop()!, theta: (deg * Math.PI) / 180 });
  }
  const bulk: [number, number][] = [];
  while (free.length >= 2) bulk.push([free.pop()!, free.pop()!]);
  return { top, bulk };
}

/** Gu diag(d) Gv^T - diag(d0) as a list of (row, col, value) entries. */
function core(s: number, d: Float64Array, d0: Float64Array, left: Rotation[], right: Rotation[]): Map<number, number> {
  // Start from diag(d); a left rotation mixes rows i, j; a right rotation mixes columns i, j.
  const M = new Map<number, number>();
  const key = (r: number, c: number): number => r * s + c;
  const get = (r: number, c: number): number => M.get(key(r, c)) ?? 0;
  const set = (r: number, c: number, v: number): void => {
    if (v === 0) M.delete(key(r, c));
    else M.set(key(r, c), v);
  };
  for (let i = 0; i < s; i++) set(i, i, d[i]);
  for (const { i, j, theta } of left) {
    const c = Math.cos(theta);
    const sn = Math.sin(theta);
    // Columns of U Gu: u_i' = c u_i + s u_j, u_j' = -s u_i + c u_j, so (Gu M) rows: row_i' = c row_i - s row_j ... in coefficients:
    // Gu = I except Gu[i,i] = c, Gu[j,i] = s, Gu[i,j] = -s, Gu[j,j] = c; (Gu M)[r, :] = sum_t Gu[r, t] M[t, :].
    const cols = new Set<number>();
    for (const kk of M.keys()) {
      const r = Math.floor(kk / s);
      if (r === i || r === j) cols.add(kk % s);
    }
    for (const col of cols) {
      const a = get(i, col);
      const b = get(j, col);
      set(i, col, c * a - sn * b);
      set(j, col, sn * a + c * b);
    }
  }
  for (const { i, j, theta } of right) {
    const c = Math.cos(theta);
    const sn = Math.sin(theta);
    // (M Gv^T)[:, col] = sum_t M[:, t] Gv[col, t]: col i' = c col_i - s col_j, col j' = s col_i + c col_j.
    const rows = new Set<number>();
    for (const kk of M.keys()) {
      const col = kk % s;
      if (col === i || col === j) rows.add(Math.floor(kk / s));
    }
    for (const row of rows) {
      const a = get(row, i);
      const b = get(row, j);
      set(row, i, c * a - sn * b);
      set(row, j, sn * a + c * b);
    }
  }
  for (let i = 0; i < s; i++) set(i, i, get(i, i) - d0[i]);
  return M;
}

function frobenius(M: Map<number, number>): number {
  let f = 0;
  for (const v of M.values()) f += v * v;
  return Math.sqrt(f);
}

/** rows x s float64 basis times the sparse s x s core: rows x s float32 (column c = sum_r X[:, r] M[r, c]). */
function basisTimesCore(X: Float64Array, rows: number, s: number, M: Map<number, number>): Float32Array {
  const out = new Float64Array(rows * s);
  for (const [kk, v] of M) {
    const r = Math.floor(kk / s);
    const c = kk % s;
    for (let t = 0; t < rows; t++) out[t * s + c] += X[t * s + r] * v;
  }
  return Float32Array.from(out);
}

/** ||b - a||_2 / ||a||_2 over the first `count` values: the NSS of two spectra. */
export function normalizedShift(a: ArrayLike<number>, b: ArrayLike<number>, count: number): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < count; i++) {
    num += (b[i] - a[i]) ** 2;
    den += a[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** The largest |a_i - b_i| (for comparing estimated angles with the planted ones). */
export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDifference: ${a.length} values against ${b.length}`);
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]));
  return e;
}

export async function plantedPair(backend: ComputeBackend, o: PlantedOptions): Promise<PlantedPair> {
  const { m, n } = o;
  const s = Math.min(m, n);
  const k = Math.min(o.k, s);
  const kk = Math.min(o.kk, s);
  const rng = new Rng(o.seed);
  const sigma0 = new Float64Array(s);
  for (let i = 0; i < s; i++) sigma0[i] = (1 + i / 8) ** -o.decay * (1 + 0.01 * rng.nextGaussian());
  sigma0.sort().reverse();
  const shifted = sigma0.map((x) => x * (1 + o.shiftRel * rng.nextGaussian()));
  const U = butterflyBasis(m, s, rng);
  const V = butterflyBasis(n, s, rng);
  const left = rotations(s, k, kk, o.angleDeg, rng);
  const right = rotations(s, k, kk, o.angleDeg, rng);
  const build = (phi: number): Map<number, number> => core(
    s, shifted, sigma0,
    [...left.top, ...left.bulk.map(([i, j]) => ({ i, j, theta: phi }))],
    [...right.top, ...right.bulk.map(([i, j]) => ({ i, j, theta: phi }))],
  );
  const base = frobenius(build(0));
  const norm0 = Math.sqrt(sigma0.reduce((a, x) => a + x * x, 0));
  const target = o.updateRel * norm0;
  // The bulk adds energy orthogonally to the rest, about linearly in phi for small angles: two secant steps.
  let phi = 0;
  if (target > base) {
    const probe = 1e-3;
    const bulkAt = (p: number): number => Math.sqrt(Math.max(0, frobenius(build(p)) ** 2 - base ** 2));
    phi = (probe * Math.sqrt(target ** 2 - base ** 2)) / Math.max(bulkAt(probe), 1e-300);
    phi *= Math.sqrt(target ** 2 - base ** 2) / Math.max(bulkAt(phi), 1e-300);
  }
  const M = build(phi);
  const US = new Float32Array(m * s);
  for (let r = 0; r < m; r++) for (let c = 0; c < s; c++) US[r * s + c] = U[r * s + c] * sigma0[c];
  const V32 = Float32Array.from(V);
  const W0 = await backend.matmul({ rows: m, cols: s, data: US }, { rows: n, cols: s, data: V32 }, { transB: true });
  const dW = await backend.matmul({ rows: m, cols: s, data: basisTimesCore(U, m, s, M) }, { rows: n, cols: s, data: V32 }, { transB: true });
  const w1 = new Float32Array(m * n);
  for (let i = 0; i < w1.length; i++) w1[i] = W0.data[i] + dW.data[i];
  const sigma1 = Float64Array.from(shifted).sort().reverse();
  // The top-k identity holds when no shift carries a value across the k-th boundary.
  if (!(Math.min(...shifted.subarray(0, k)) > Math.max(...shifted.subarray(k)))) throw new Error('plantedPair: a shift reorders the top-k boundary; use a smaller shiftRel');
  const deg = (r: Rotation[]): Float64Array => Float64Array.from(r.map((x) => (x.theta * 180) / Math.PI)).sort();
  return {
    W0, W1: { rows: m, cols: n, data: w1 }, dW, sigma0, sigma1,
    anglesLeftDeg: deg(left.top), anglesRightDeg: deg(right.top),
    nss: normalizedShift(sigma0, sigma1, kk),
    updateRel: frobenius(M) / norm0,
  };
}
