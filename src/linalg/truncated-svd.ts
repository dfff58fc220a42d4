/**
 * Top-k SVD of a float32 weight matrix: randomized (Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1)
 * for large matrices, exact for small ones.
 *
 * Division of labour (why it is fast): every product with the big matrix A goes to the compute backend
 * (onnxruntime sgemm, or CUDA); everything that touches only thin or small matrices (QR of the n x l
 * sketches, the l x l eigenproblem, recombination) runs here in float64, where precision is cheap.
 * All sketches are kept *transposed* (l x n row-major = n x l column-major): that is the layout the
 * backend returns for `X^T A`-shaped products and the layout the Householder QR wants, so no transpose
 * is ever materialised.
 *
 * Randomized path, with A' = A (m <= n) or A^T (m > n), so that A' is s x b with s = min(m, n):
 *   Omega (b x l) Gaussian from a seeded PRNG, l = k + oversample
 *   Y = A' Omega,  Q = qr(Y)                                  (s x l)
 *   repeat powerIterations: Z = A'^T Q, Q_z = qr(Z); Y = A' Q_z, Q = qr(Y)
 *   B = Q^T A'                                               (l x b, on the backend)
 *   B B^T = W diag(lambda) W^T (l x l, accumulated in float64 here, QL eigen-solver)
 *   s_i = sqrt(lambda_i),  U' = Q W,  V' = B^T W / s          (V' product on the backend)
 * Re-orthonormalising between every product keeps the small singular directions from being rounded
 * away in float32 (without it, each power step squares the condition number of the sketch). The
 * intermediate bases, which only feed the next float32 product, are orthonormalised by CholeskyQR2 on
 * the backend (cholqr.ts; Householder fallback when the sketch is rank-deficient); the final
 * short-side basis, which becomes U, by the float64 Householder QR, so U is orthonormal to 1e-15.
 * The Gram matrix of B is formed in float64 from the float32 B, so the eigen route squares the
 * condition number only at float64 precision (relative error of s_i about 1e-16 (s_1/s_i)^2, far
 * below the float32 rounding already in A).
 *
 * Accuracy caveat (measured, see the tests): the randomized error of the *vectors* shrinks like
 * (s_{l+1} / s_k)^(2q+1). With a fast-decaying spectrum q = 2, oversample 10 is plenty; with the slow
 * decay of LLM weight spectra the trailing vectors of the top-k block can be tens of degrees off
 * (s_i = 1/sqrt(1 + i/8), k = 64: 88 deg at q = 2, 0.4 deg at oversample 64, q = 8), while the
 * singular values stay within ~1e-2 relative. Use the same seed for matrices you compare, ask for
 * `residuals` to see how far each triplet has converged, and raise oversample / powerIterations when
 * angles must be trusted.
 *
 * Exact path (min(m, n) <= fullIfMinDimAtMost, default 256, or when k + oversample reaches min(m, n)):
 * the Gram matrix of the short side (s x s) accumulated in float64, its complete eigen-decomposition,
 * and the long-side vectors as A'^T W / s (one backend product). The singular values are exact to
 * float64 rounding relative to s_1 (see above), which for float32 weights is exact for any practical
 * purpose; every singular value is returned (`fullSpectrum`). Default 256 because the cost is about
 * s^2 b / 2 + 9 s^3 flops in TypeScript: measured ~70 ms for 256 x 1536 and ~200 ms for 256 x 8960,
 * but ~450 ms for 512 x 2048, where the randomized path costs tens of ms; at s <= 256 the randomized
 * path has lost its speed advantage and, with l = k + 10 a large share of s, gains nothing.
 */
import type { ComputeBackend, Matrix } from '../compute/backend';
import { checkMatrix } from '../compute/backend';
import { choleskyQr2Rows } from './cholqr';
import { allFinite, dot, gramRows } from './dense';
import { symmetricEigen, symmetricEigenvalues } from './eigen';
import { orthonormalizeColumnMajor, transposeToColumnMajor } from './qr';
import { Rng } from './random';
import { completeOrthonormalColumns } from './svd';

export { principalAnglesDeg } from './angles';

export interface SvdResult {
  /** rows x k, row-major; column i is the i-th left singular vector. */
  U: Float64Array;
  /** k singular values, descending. */
  S: Float64Array;
  /** cols x k, row-major; column i is the i-th right singular vector. */
  V: Float64Array;
  rows: number;
  cols: number;
  /** Number of triplets returned: min(requested k, rows, cols). */
  k: number;
  method: 'full' | 'randomized';
  /** Every singular value, descending (method 'full' only: the exact path computes them anyway). */
  fullSpectrum?: Float64Array;
  /**
   * Only when `residuals: true` was asked: r_i = ||A v_i - s_i u_i||_2 per triplet (A^T u_i = s_i v_i
   * holds by construction). A small r_i / (s_i - s_{k+1}) certifies the i-th vectors (Wedin); on slowly
   * decaying spectra the randomized trailing vectors can be far off (see the module comment).
   */
  residuals?: Float64Array;
}

export interface TruncatedSvdOptions {
  /** Extra sketch columns beyond k (HMT's p; 10 is the usual choice). */
  oversample: number;
  /** Power (subspace) iterations q; each costs two more products with A. 2 is the usual choice. */
  powerIterations: number;
  /** PRNG seed of the Gaussian test matrix. Use the same seed for matrices you compare. */
  seed: number;
  /** Use the exact path when min(rows, cols) is at most this (default {@link DEFAULT_FULL_IF_MIN_DIM_AT_MOST}). */
  fullIfMinDimAtMost?: number;
  /**
   * When given, milliseconds spent per phase are added to it: 'sketch' (Gaussian test matrix),
   * 'products' (backend), 'qr', 'smallSvd' (Gram of B + eigen), 'vectors', 'exact' (whole exact path).
   */
  timings?: Record<string, number>;
  /** Also compute `residuals` (one more product with A). Default false. */
  residuals?: boolean;
}

/** See the module comment for the cost reasoning behind 256. */
export const DEFAULT_FULL_IF_MIN_DIM_AT_MOST = 256;

/** A singular value below this fraction of s_1 has no trustworthy vector in float32 data. */
export const NULL_RELATIVE = 1e-7;

/** Below this fraction of s_1 a long-side vector from the float32 product is re-orthogonalised (see longSideVectors). */
export const WEAK_RELATIVE = 1e-2;

/** Entries of at most this magnitude (and at least its inverse) are used as they are; see {@link rangeScale}. */
const SAFE_MAX_ABS = 2 ** 40;

/**
 * A power of two that brings the largest |entry| (of all arrays given) into (1/2, 1], when it lies outside
 * [2^-40, 2^40]; 1 otherwise (and for a zero or non-finite matrix, which the callers handle). Products
 * with A run in float32 on the backend: with entries near the float32 limit (1e38) s_1, the sketches
 * and their Gram matrices overflow to Inf. Scaling by a power of two is exact, and singular values
 * scale back exactly; vectors do not change.
 */
export function rangeScale(...arrays: ArrayLike<number>[]): number {
  let max = 0;
  for (const data of arrays) {
    for (let i = 0; i < data.length; i++) {
      const a = Math.abs(data[i]);
      if (a > max) max = a;
    }
  }
  if (!(max > 0) || !Number.isFinite(max) || (max <= SAFE_MAX_ABS && max >= 1 / SAFE_MAX_ABS)) return 1;
  return 2 ** -Math.ceil(Math.log2(max));
}

function scaled(A: Matrix, scale: number): Matrix {
  return scale === 1 ? A : { rows: A.rows, cols: A.cols, data: A.data.map((x) => x * scale) };
}

/**
 * Top-k singular triplets of A. k is capped at min(rows, cols). Throws on non-finite entries in A
 * (detected in the first product, so the check costs nothing on healthy matrices).
 */
export async function truncatedSvd(backend: ComputeBackend, A: Matrix, k: number, opts: TruncatedSvdOptions): Promise<SvdResult> {
  checkMatrix(A, 'truncatedSvd A');
  const m = A.rows;
  const n = A.cols;
  const s = Math.min(m, n);
  const kk = Math.max(0, Math.min(Math.floor(k), s));
  const oversample = Math.max(0, Math.floor(opts.oversample));
  const q = Math.max(0, Math.floor(opts.powerIterations));
  const fullIf = opts.fullIfMinDimAtMost ?? DEFAULT_FULL_IF_MIN_DIM_AT_MOST;
  if (kk === 0) {
    return {
      U: new Float64Array(0),
      S: new Float64Array(0),
      V: new Float64Array(0),
      rows: m,
      cols: n,
      k: 0,
      method: 'full',
      fullSpectrum: new Float64Array(0),
    };
  }
  const l = Math.min(s, kk + oversample);
  // Huge (or tiny) entries: factor 2^e A instead and scale the singular values back (see rangeScale).
  const scale = rangeScale(A.data);
  const As = scaled(A, scale);
  let result: SvdResult;
  if (s <= fullIf || l >= s) {
    const t0 = performance.now();
    result = await exactSvd(backend, As, kk);
    addTime(opts.timings, 'exact', t0);
  } else {
    result = await randomizedSvd(backend, As, kk, l, q, opts.seed, opts.timings);
  }
  if (opts.residuals) {
    const t0 = performance.now();
    result.residuals = await svdResiduals(backend, As, result);
    addTime(opts.timings, 'residuals', t0);
  }
  if (scale !== 1) {
    const inv = 1 / scale;
    result.S = result.S.map((x) => x * inv);
    if (result.fullSpectrum) result.fullSpectrum = result.fullSpectrum.map((x) => x * inv);
    if (result.residuals) result.residuals = result.residuals.map((x) => x * inv);
  }
  return result;
}

/** All singular values (descending) of A by the exact path. Throws on non-finite entries. */
export function singularValuesFull(A: Matrix): Float64Array {
  checkMatrix(A, 'singularValuesFull A');
  if (!allFinite(A.data)) throw new Error('singularValuesFull: matrix has NaN or Inf entries');
  const { X, s, b } = shortSideRows(A);
  const lambda = symmetricEigenvalues(gramRows(X, s, b), s);
  return lambda.map((v) => Math.sqrt(Math.max(v, 0)));
}

export interface SpectralNormOptions {
  /** Stop when the estimate changes by less than this, relatively (default 1e-7). */
  tol?: number;
  /** Cap on subspace iterations (default 300). */
  maxIterations?: number;
  /** Block size of the subspace iteration (default 8): convergence goes like (s_{b+1}/s_1)^(2 it). */
  blockSize?: number;
  seed?: number;
  /** Exact path when min(rows, cols) is at most this (default as truncatedSvd). */
  fullIfMinDimAtMost?: number;
}

export interface SpectralNormResult {
  /** ||A||_2, the largest singular value. */
  value: number;
  /** Subspace iterations used (0 on the exact path). */
  iterations: number;
  /** False when maxIterations was reached before tol. */
  converged: boolean;
  method: 'full' | 'subspace-iteration';
}

/**
 * ||A||_2 for Gate I and for the Weyl bound. Exact path for small matrices; otherwise block subspace
 * iteration on the backend with a Rayleigh-Ritz estimate after every step: the estimate
 * ||A^T Q||_2 is a lower bound that increases monotonically to s_1, and iteration stops when it has
 * settled to `tol`. A block (rather than a single vector) makes a small gap s_1 ~ s_2, common in
 * updates, converge at the rate of s_{b+1}/s_1 instead of s_2/s_1.
 */
export async function spectralNorm(backend: ComputeBackend, A: Matrix, opts: SpectralNormOptions = {}): Promise<SpectralNormResult> {
  checkMatrix(A, 'spectralNorm A');
  const s = Math.min(A.rows, A.cols);
  if (s === 0) return { value: 0, iterations: 0, converged: true, method: 'full' };
  if (s <= (opts.fullIfMinDimAtMost ?? DEFAULT_FULL_IF_MIN_DIM_AT_MOST)) {
    return { value: singularValuesFull(A)[0], iterations: 0, converged: true, method: 'full' };
  }
  const tol = opts.tol ?? 1e-7;
  const maxIt = opts.maxIterations ?? 300;
  const bs = Math.max(1, Math.min(opts.blockSize ?? 8, s));
  // Products in float32: huge entries would overflow them (see rangeScale); the norm scales back exactly.
  const scale = rangeScale(A.data);
  if (scale !== 1) {
    const r = await spectralNorm(backend, scaled(A, scale), { ...opts, fullIfMinDimAtMost: 0 });
    return { ...r, value: r.value / scale };
  }
  const op = sideOperators(backend, A);
  const rng = new Rng(opts.seed ?? 0x5eed);
  // Start on the long side: Y = A' Omega.
  const omega = new Float32Array(bs * op.b);
  rng.fillGaussian(omega);
  let Yt = await op.applyA({ rows: bs, cols: op.b, data: omega });
  if (!allFinite(Yt.data)) throw new Error('spectralNorm: matrix has NaN or Inf entries');
  let Q = orthonormalizeColumnMajor(Float64Array.from(Yt.data), op.s, bs);
  let prev = 0;
  for (let it = 1; it <= maxIt; it++) {
    const Zt = await op.applyAt({ rows: bs, cols: op.s, data: Float32Array.from(Q) }); // bs x b
    const lam = symmetricEigenvalues(gramRows(Zt.data, bs, op.b), bs);
    const est = Math.sqrt(Math.max(lam[0], 0));
    if (est === 0) return { value: 0, iterations: it, converged: true, method: 'subspace-iteration' };
    if (it > 1 && Math.abs(est - prev) <= tol * est) {
      return { value: est, iterations: it, converged: true, method: 'subspace-iteration' };
    }
    prev = est;
    const Z = orthonormalizeColumnMajor(Float64Array.from(Zt.data), op.b, bs);
    Yt = await op.applyA({ rows: bs, cols: op.b, data: Float32Array.from(Z) });
    Q = orthonormalizeColumnMajor(Float64Array.from(Yt.data), op.s, bs);
  }
  return { value: prev, iterations: maxIt, converged: false, method: 'subspace-iteration' };
}

/**
 * r_i = ||A v_i - s_i u_i||_2 for the triplets of an SVD result (one backend product, A V). Both
 * factorization paths build the long-side vectors as A'^T u / s, so this is the residual that carries
 * the information.
 */
export async function svdResiduals(backend: ComputeBackend, A: Matrix, r: SvdResult): Promise<Float64Array> {
  const { k } = r;
  const m = A.rows;
  const n = A.cols;
  // (A V)^T = V^T A^T: panel V^T (k x n) times A^T.
  const Vt: Matrix = { rows: k, cols: n, data: new Float32Array(k * n) };
  for (let j = 0; j < n; j++) for (let i = 0; i < k; i++) Vt.data[i * n + j] = r.V[j * k + i];
  const AVt = await backend.matmul(Vt, A, { transB: true }); // k x m
  const out = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    let acc = 0;
    const si = r.S[i];
    for (let row = 0; row < m; row++) {
      const d = AVt.data[i * m + row] - si * r.U[row * k + i];
      acc += d * d;
    }
    out[i] = Math.sqrt(acc);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------

/**
 * Products with A' (A or A^T, whichever has the short side first) expressed through transpose flags.
 * Inputs and outputs are "transposed panels": an l x s (or l x b) row-major matrix whose rows are the
 * l sketch vectors.
 */
export interface SideOperators {
  /** Short dimension (rows of A'). */
  s: number;
  /** Long dimension (cols of A'). */
  b: number;
  /** A is taller than wide (A' = A^T). */
  tall: boolean;
  /** Xt (l x s) -> (A'^T X)^T = Xt A' (l x b). */
  applyAt(Xt: Matrix): Promise<Matrix>;
  /** Zt (l x b) -> (A' Z)^T = Zt A'^T (l x s). */
  applyA(Zt: Matrix): Promise<Matrix>;
}

export function sideOperators(backend: ComputeBackend, A: Matrix): SideOperators {
  const tall = A.rows > A.cols;
  return {
    s: Math.min(A.rows, A.cols),
    b: Math.max(A.rows, A.cols),
    tall,
    applyAt: (Xt) => backend.matmul(Xt, A, { transB: tall }),
    applyA: (Zt) => backend.matmul(Zt, A, { transB: !tall }),
  };
}

/** Adds the milliseconds since `since` to `timings[phase]` (when timings are kept) and returns now. */
export function addTime(timings: Record<string, number> | undefined, phase: string, since: number): number {
  const now = performance.now();
  if (timings) timings[phase] = (timings[phase] ?? 0) + (now - since);
  return now;
}

async function randomizedSvd(
  backend: ComputeBackend,
  A: Matrix,
  k: number,
  l: number,
  q: number,
  seed: number,
  timings: Record<string, number> | undefined,
): Promise<SvdResult> {
  const op = sideOperators(backend, A);
  const { s, b } = op;
  let t = performance.now();
  const rng = new Rng(seed);
  const omega = new Float32Array(l * b);
  rng.fillGaussian(omega);
  t = addTime(timings, 'sketch', t);

  // Work buffers reused across iterations (float64 sketches, float32 copies for the backend).
  const Qs = new Float64Array(s * l); // short-side basis, column-major s x l
  const Qb = new Float64Array(b * l); // long-side basis, column-major b x l
  const workS = new Float64Array(s * l);
  const workB = new Float64Array(b * l);
  const Qs32: Matrix = { rows: l, cols: s, data: new Float32Array(s * l) };
  const Qb32: Matrix = { rows: l, cols: b, data: new Float32Array(b * l) };

  // Orthonormalise a sketch given as transposed panel Xt (l x dim). Intermediate bases (consumed by the
  // next float32 product only) take the backend CholeskyQR2 when it succeeds; the final short-side
  // basis, which becomes U, always comes from the float64 Householder QR (see cholqr.ts).
  const orth = async (Xt: Matrix, dim: number, f64: Float64Array, f32: Matrix, work: Float64Array, final: boolean): Promise<Matrix> => {
    if (!final) {
      const fast = await choleskyQr2Rows(backend, Xt);
      if (fast) return fast;
    }
    f64.set(Xt.data);
    orthonormalizeColumnMajor(f64, dim, l, work);
    f32.data.set(f64);
    return f32;
  };

  const Yt = await op.applyA({ rows: l, cols: b, data: omega }); // l x s
  t = addTime(timings, 'products', t);
  if (!allFinite(Yt.data)) throw new Error('truncatedSvd: matrix has NaN or Inf entries');
  let Qst = await orth(Yt, s, Qs, Qs32, workS, q === 0);
  t = addTime(timings, 'qr', t);
  for (let it = 0; it < q; it++) {
    const Zt = await op.applyAt(Qst); // l x b
    t = addTime(timings, 'products', t);
    const Qbt = await orth(Zt, b, Qb, Qb32, workB, false);
    t = addTime(timings, 'qr', t);
    const Y2t = await op.applyA(Qbt); // l x s
    t = addTime(timings, 'products', t);
    Qst = await orth(Y2t, s, Qs, Qs32, workS, it === q - 1);
    t = addTime(timings, 'qr', t);
  }
  // Qs (float64) and Qs32 now hold the final Householder basis.
  const B = await op.applyAt(Qs32); // l x b: B = Q^T A'
  t = addTime(timings, 'products', t);

  // Small SVD of B through the eigen-decomposition of B B^T (l x l), float64.
  const eig = symmetricEigen(gramRows(B.data, l, b), l);
  t = addTime(timings, 'smallSvd', t);
  const W = eig.vectors; // l x l row-major, column i = eigenvector i (descending)
  const S = new Float64Array(k);
  for (let i = 0; i < k; i++) S[i] = Math.sqrt(Math.max(eig.values[i], 0));

  // Short-side vectors: U' = Q W_k (s x k, row-major), float64. Q is column-major s x l.
  const Us = new Float64Array(s * k);
  for (let j = 0; j < l; j++) {
    const qo = j * s;
    const wo = j * l;
    for (let r = 0; r < s; r++) {
      const qv = Qs[qo + r];
      if (qv === 0) continue;
      const uo = r * k;
      for (let i = 0; i < k; i++) Us[uo + i] += qv * W[wo + i];
    }
  }
  // Long-side vectors: V' = B^T W_k / S (b x k), product on the backend.
  const Wk: Matrix = { rows: l, cols: k, data: new Float32Array(l * k) };
  for (let j = 0; j < l; j++) for (let i = 0; i < k; i++) Wk.data[j * k + i] = W[j * l + i];
  const BtW = await backend.matmul(B, Wk, { transA: true }); // b x k
  const Vb = longSideVectors(BtW.data, b, k, S);
  addTime(timings, 'vectors', t);

  return op.tall
    ? { U: Vb, S, V: Us, rows: A.rows, cols: A.cols, k, method: 'randomized' }
    : { U: Us, S, V: Vb, rows: A.rows, cols: A.cols, k, method: 'randomized' };
}

/**
 * Divides the columns of P (b x k row-major, P = A'^T W) by the singular values; columns whose
 * singular value is (numerically) zero get an orthonormal completion instead (no direction is defined
 * there, but callers need an orthonormal basis, e.g. for angles of a rank-deficient update).
 *
 * P comes from a float32 product, so column i carries an error of about eps_32 s_1 / s_i: negligible
 * for the leading values, but the vectors of values far below s_1 (a rank-deficient matrix, a zero
 * row) lose their orthogonality. Those columns (s_i < WEAK_RELATIVE s_1) are re-orthogonalised
 * against all earlier ones in float64 (two Gram-Schmidt passes); a column that this leaves with no
 * length of its own is completed like a zero value. The cost is b k per such column and pass, nothing
 * for a well-conditioned matrix.
 */
function longSideVectors(P: ArrayLike<number>, b: number, k: number, S: Float64Array): Float64Array {
  const Vc = new Float64Array(b * k); // column-major b x k
  const bad: boolean[] = [];
  let anyBad = false;
  let anyWeak = false;
  const floor = S[0] * NULL_RELATIVE;
  const weak = S[0] * WEAK_RELATIVE;
  for (let i = 0; i < k; i++) {
    const ok = S[i] > floor && S[i] > 0;
    bad.push(!ok);
    if (!ok) {
      anyBad = true;
      continue;
    }
    if (S[i] < weak) anyWeak = true;
    const inv = 1 / S[i];
    const o = i * b;
    for (let r = 0; r < b; r++) Vc[o + r] = P[r * k + i] * inv;
  }
  if (anyWeak) {
    for (let i = 0; i < k; i++) {
      if (bad[i] || !(S[i] < weak)) continue;
      const oi = i * b;
      for (let pass = 0; pass < 2; pass++) {
        for (let j = 0; j < i; j++) {
          if (bad[j]) continue;
          const d = dot(Vc, j * b, Vc, oi, b);
          if (d !== 0) for (let r = 0; r < b; r++) Vc[oi + r] -= d * Vc[j * b + r];
        }
      }
      const nn = dot(Vc, oi, Vc, oi, b);
      if (!(nn > 0.25)) {
        bad[i] = true;
        anyBad = true;
        continue;
      }
      const inv = 1 / Math.sqrt(nn);
      for (let r = 0; r < b; r++) Vc[oi + r] *= inv;
    }
  }
  if (anyBad) completeOrthonormalColumns(Vc, b, k, bad);
  return transposeToColumnMajor(Vc, k, b);
}

/** The short side's rows as float64: X = A (m <= n) or A^T (m > n), s x b row-major. */
function shortSideRows(A: Matrix): { X: Float64Array; s: number; b: number; tall: boolean } {
  const tall = A.rows > A.cols;
  const X = tall ? transposeToColumnMajor(A.data, A.rows, A.cols) : Float64Array.from(A.data);
  return { X, s: Math.min(A.rows, A.cols), b: Math.max(A.rows, A.cols), tall };
}

/**
 * The exact path: Gram of the short side in float64, full eigen-decomposition, k vectors. The
 * long-side vectors A'^T W_k / s are one backend product (float32, like A itself): in TypeScript that
 * product was the larger half of the cost for a 256 x 8960 matrix.
 */
async function exactSvd(backend: ComputeBackend, A: Matrix, k: number): Promise<SvdResult> {
  if (!allFinite(A.data)) throw new Error('truncatedSvd: matrix has NaN or Inf entries');
  const { X, s, b, tall } = shortSideRows(A);
  const eig = symmetricEigen(gramRows(X, s, b), s);
  const W = eig.vectors; // s x s
  const fullSpectrum = eig.values.map((v) => Math.sqrt(Math.max(v, 0)));
  const S = fullSpectrum.slice(0, k);
  const Us = new Float64Array(s * k);
  for (let r = 0; r < s; r++) for (let i = 0; i < k; i++) Us[r * k + i] = W[r * s + i];
  // Long side: P = A'^T W_k (b x k) = (W_k^T A')^T. As a transposed panel: Pt = W_k^T A' (k x b),
  // i.e. the same applyAt product as the randomized path, with W_k^T as the panel.
  const Wkt: Matrix = { rows: k, cols: s, data: new Float32Array(k * s) };
  for (let i = 0; i < k; i++) for (let r = 0; r < s; r++) Wkt.data[i * s + r] = W[r * s + i];
  const Pt = await sideOperators(backend, A).applyAt(Wkt); // k x b
  const Vb = longSideVectors(transposeToColumnMajor(Pt.data, k, b), b, k, S);
  return tall
    ? { U: Vb, S, V: Us, rows: A.rows, cols: A.cols, k, method: 'full', fullSpectrum }
    : { U: Us, S, V: Vb, rows: A.rows, cols: A.cols, k, method: 'full', fullSpectrum };
}
