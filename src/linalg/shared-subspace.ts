/**
 * The top singular triplets of a base W0 and a checkpoint W1 = W0 + dW, computed on one shared subspace
 * so that their difference is accurate.
 *
 * Why not two independent truncated SVDs: an RL-sized update moves each top-256 singular value by about
 * 1e-5 relative, while a randomized estimate of a trailing value on a slowly decaying (LLM-like) spectrum
 * is off by more than that. Subtracting two such estimates measures their errors, not the shift (the
 * normalised spectral shift came out 20-40% too high). Here both matrices are projected on the same
 * orthonormal basis Qb of the long side (b x l): the Ritz values sigma(W0' Qb) and sigma(W1' Qb) share
 * their projection error to first order, so it cancels in the shift, and what remains is
 * second order in the update (see the accuracy tests on power-law spectra in test/unit/linalg.test.ts).
 *
 * Both matrices must be well represented by the basis: projecting W0 on W1's subspace alone loses W0's
 * top directions that the update rotated away (its values drop and its angles to W1 vanish), so the
 * shared basis is W1's converged subspace extended by what W0's adds to it.
 *
 * The work, with A' = A or A^T so that A' is s x b with s = min(m, n), l = kSpectrum + oversample:
 *   base (cold):   Z = A0'^T Omega, Qb = orth(Z); subspace iterations on A0 (at least powerIterations,
 *                  then until converged); Qs0 = orth(A0' Qb), the short-side basis a cache keeps (l x s)
 *   base (cached): Qs0 as stored
 *   both:          Qb0 = orth(A0'^T Qs0)
 *   checkpoint:    subspace iterations on A1 from Qb0 (W1 is W0 plus a small dW: an excellent start)
 *   one iteration: C = A' Qb (s x l), Ritz of C, the test; Qs = orth(C), Qb = orth(A'^T Qs)
 *   convergence:   ||sin Theta||_F between the top-k left Ritz subspaces of two successive iterations
 *                  gives the change c and, with the previous change, the contraction rate rho; iteration
 *                  stops when the estimated remaining error c rho / (1 - rho) is at most `tol` (default
 *                  1e-4, i.e. ~0.006 degrees), or at `maxIterations` (then `converged` is false)
 *   shared basis:  Q = [Qb1, orth((I - Qb1 Qb1^T) Qb0)] (directions above float32 noise only), width L
 *   shared step:   C1 = A1' Q, E = dW' Q, C0 = C1 - E in float64; Ritz values and vectors of both from
 *                  the float64 Gram matrices C^T C (L x L)
 * Products with the big matrices and the orthonormalisations (CholeskyQR2) run on the backend in float32;
 * the small Gram matrices and the s x k vectors on the backend in float64 (exact inputs, exact products);
 * the eigen-decompositions in float64 here.
 *
 * Ritz values are lower bounds of the exact singular values; for the leading ones the gap is negligible,
 * for the last few of the l computed it is not, which is why only the top kSpectrum of them are
 * reported. The long-side angles are computed in the coordinates of Q (exact for an orthonormal Q;
 * CholeskyQR2 makes it orthonormal to float32 rounding, which moves an angle by ~1e-6 rad).
 */
import { widenMatrix, type ComputeBackend, type Matrix, type Matrix64 } from '../compute/backend';
import { choleskyQr2Rows } from './cholqr';
import { allFinite } from './dense';
import { symmetricEigen, symmetricEigenTop } from './eigen';
import { orthonormalizeColumnMajor } from './qr';
import { Rng } from './random';
import { principalAnglesDeg } from './angles';
import { completeOrthonormalColumns } from './svd';
import { NULL_RELATIVE, addTime, sideOperators, type SideOperators, type SvdResult } from './truncated-svd';
import { lowRankSideOperators, sumSideOperators, type LowRankUpdate } from './low-rank';

/** Default tolerance of the convergence test: the estimated remaining ||sin Theta||_F of the top-k subspace (~0.006 degrees). */
export const SUBSPACE_TOLERANCE = 1e-4;
/** Iterations at most per matrix (base and checkpoint each). */
export const SUBSPACE_MAX_ITERATIONS = 12;

export interface SharedSubspaceOptions {
  /** Values reported (kSpectrum, capped at min(m, n)). */
  kk: number;
  /** Vectors reported and watched by the convergence test (the principal k). */
  k: number;
  /** Extra basis columns beyond kk. */
  oversample: number;
  /** Iterations on the base at least (the randomized range finder's power iterations). */
  powerIterations: number;
  seed: number;
  /** The convergence test's tolerance (default {@link SUBSPACE_TOLERANCE}). */
  tol?: number;
  maxIterations?: number;
  /** The base's converged short-side basis (l x s row-major panel) from an earlier run: skips the base's iterations. */
  baseBasis?: Float32Array;
  /** Milliseconds per phase are added here: 'products', 'orth', 'ritz' (the convergence test's), 'finalRitz', 'angles'. */
  timings?: Record<string, number>;
}

export interface SubspaceConvergence {
  iterations: number;
  /** ||sin Theta||_F between the top-k Ritz subspaces of the last two iterations. */
  change: number;
  /** The estimated distance (||sin Theta||_F) of the last top-k Ritz subspace from the converged one. */
  error: number;
  converged: boolean;
}

export interface SharedSubspaceResult {
  base: SvdResult;
  checkpoint: SvdResult;
  /** Principal angles in degrees (ascending) of the top-k left and right subspaces, base vs checkpoint. */
  anglesLeftDeg: Float64Array;
  anglesRightDeg: Float64Array;
  /** The base's converged short-side basis (l x s row-major), what a cache keeps. */
  baseBasis: Float32Array;
  /** Width of the shared basis (W1's l columns and what W0's adds). */
  l: number;
  /** null when the base came from `baseBasis`. */
  baseConvergence: SubspaceConvergence | null;
  checkpointConvergence: SubspaceConvergence;
}

/** Width of the shared basis for a matrix whose short side is s. */
export function sharedBasisWidth(s: number, kk: number, oversample: number): number {
  return Math.min(s, kk + Math.max(0, Math.floor(oversample)));
}

/** Orthonormal rows spanning the rows of Xt (l x dim): CholeskyQR2 on the backend, Householder when it breaks down. */
async function orthRows(backend: ComputeBackend, Xt: Matrix): Promise<Matrix> {
  const fast = await choleskyQr2Rows(backend, Xt);
  if (fast) return fast;
  const { rows: l, cols: dim } = Xt;
  // Rows of Xt are the columns of X: row-major l x dim is column-major dim x l.
  const f64 = Float64Array.from(Xt.data);
  orthonormalizeColumnMajor(f64, dim, l);
  return { rows: l, cols: dim, data: Float32Array.from(f64) };
}

interface Ritz {
  /** All l Ritz values, descending. */
  S: Float64Array;
  /** l x k row-major, column i the i-th eigenvector of C^T C. */
  W: Float64Array;
  /** Short-side vectors C W_k / S (s x k row-major, float64). */
  Us: Float64Array;
  /** Leading values above float32 noise (NULL_RELATIVE s_1), at most k: the vectors with a direction. */
  rank: number;
}

/**
 * Ritz values and vectors from Ct (l x s row-major, the transposed C = A' Qb), all in float64: the Gram
 * matrix C^T C (whose eigenvalues are the squared values) and the vectors C W_k / S are float64 backend
 * products of the exact (widened) C. The convergence test compares iterations to 1e-4 and the shifts are
 * differences of 1e-5 relative, so neither may see a float32 product's rounding (1e-7 s_1 / s_i in vector
 * i); the backend's DGEMM costs a third of a TypeScript loop for the same exact result.
 */
async function ritzOf(backend: ComputeBackend, Ct: Matrix64, k: number): Promise<Ritz> {
  const { rows: l, cols: s } = Ct;
  // Only the top-k vectors are used: inverse iteration for those, not a full eigen-decomposition.
  const eig = symmetricEigenTop((await backend.gram64(Ct, 'AAt')).data, l, k);
  const S = eig.values.map((v) => Math.sqrt(Math.max(v, 0)));
  const W = eig.vectors;
  const floor = S[0] * NULL_RELATIVE;
  let rank = 0;
  while (rank < k && S[rank] > floor && S[rank] > 0) rank++;
  const Us = new Float64Array(s * k);
  if (rank > 0) {
    // (C W_r)^T = W_r^T Ct (rank x s), then Us[r, i] = (C W)[r, i] / S[i].
    const Wrt = new Float64Array(rank * l);
    for (let j = 0; j < l; j++) for (let i = 0; i < rank; i++) Wrt[i * l + j] = W[j * k + i];
    const UsT = await backend.matmul64({ rows: rank, cols: l, data: Wrt }, Ct);
    for (let i = 0; i < rank; i++) {
      const inv = 1 / S[i];
      const o = i * s;
      for (let r = 0; r < s; r++) Us[r * k + i] = UsT.data[o + r] * inv;
    }
  }
  if (rank < k) {
    // Values at float32 noise have no direction: an orthonormal completion keeps the basis a basis (as the
    // exact path does), and the convergence test watches only the `rank` defined ones.
    const cm = new Float64Array(s * k);
    for (let r = 0; r < s; r++) for (let i = 0; i < k; i++) cm[i * s + r] = Us[r * k + i];
    completeOrthonormalColumns(
      cm,
      s,
      k,
      Array.from({ length: k }, (_, i) => i >= rank),
    );
    for (let r = 0; r < s; r++) for (let i = 0; i < k; i++) Us[r * k + i] = cm[i * s + r];
  }
  return { S, W, Us, rank };
}

/** ||sin Theta||_F between the spans of the first r columns of two s x k orthonormal bases: sqrt(r - ||U0_r^T U1_r||_F^2). */
async function subspaceChange(backend: ComputeBackend, U0: Float64Array, U1: Float64Array, s: number, k: number, r: number): Promise<number> {
  const M = (await backend.matmul64({ rows: s, cols: k, data: U0 }, { rows: s, cols: k, data: U1 }, { transA: true })).data; // k x k
  let f = 0;
  for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) f += M[i * k + j] ** 2;
  return Math.sqrt(Math.max(0, r - f));
}

interface Iterated {
  /** The long-side basis of the last iteration (l x b) and C = A' Qb (l x s, transposed). */
  Qbt: Matrix;
  Ct: Matrix;
  ritz: Ritz;
  convergence: SubspaceConvergence;
}

/**
 * Subspace iterations on A' from the long-side basis Qbt until the top-k Ritz subspace settles:
 * C = A' Qb, Ritz, test; Qs = orth(C), Qb = orth(A'^T Qs). `minIt` counts products C = A' Qb.
 */
async function iterate(
  backend: ComputeBackend,
  op: SideOperators,
  start: Matrix,
  k: number,
  minIt: number,
  maxIt: number,
  tol: number,
  timings?: Record<string, number>,
): Promise<Iterated> {
  let Qbt = start;
  let prev: Ritz | null = null;
  let lastChange = Infinity;
  let t = performance.now();
  for (let it = 1; ; it++) {
    const Ct = await op.applyA(Qbt); // l x s
    t = addTime(timings, 'products', t);
    if (it === 1 && !allFinite(Ct.data)) throw new Error('truncatedSvd: matrix has NaN or Inf entries');
    // A test compares two iterations: before the one ahead of the minimum count, no Ritz problem is solved.
    if (it >= minIt - 1) {
      const ritz = await ritzOf(backend, widenMatrix(Ct), k);
      const change = prev ? await subspaceChange(backend, prev.Us, ritz.Us, op.s, k, Math.min(prev.rank, ritz.rank)) : Infinity;
      t = addTime(timings, 'ritz', t);
      const error = remainingError(change, lastChange);
      const converged = it >= minIt && error <= tol;
      if (converged || it >= maxIt) return { Qbt, Ct, ritz, convergence: { iterations: it, change, error, converged } };
      prev = ritz;
      lastChange = change;
    }
    const Qst = await orthRows(backend, Ct);
    t = addTime(timings, 'orth', t);
    const Zt = await op.applyAt(Qst); // l x b
    t = addTime(timings, 'products', t);
    Qbt = await orthRows(backend, Zt);
    t = addTime(timings, 'orth', t);
  }
}

/**
 * The distance still to go, estimated from the last two changes: subspace iteration contracts the
 * error by a factor rho per step, so what remains after a change c is about c rho / (1 - rho), with rho
 * measured as the ratio of the last two changes (capped at 0.95; taken as 1/2, i.e. the change itself,
 * when only one change is known).
 */
function remainingError(change: number, previous: number): number {
  if (!Number.isFinite(change)) return Infinity;
  const rho = Number.isFinite(previous) && previous > 0 ? Math.min(0.95, change / previous) : 0.5;
  return (change * rho) / (1 - rho);
}

/** Singular values of the residual below this are float32 noise, not a direction the other basis lacks. */
const UNION_FLOOR = 1e-5;

/**
 * Rows spanning what Qb0 (l0 x b) adds to Qb1 (l x b), orthonormal and orthogonal to Qb1: the residual
 * X = (I - Qb1 Qb1^T) Qb0 (projected twice), its directions above the noise floor, orthonormalised.
 * null when Qb0 adds nothing.
 */
async function extension(backend: ComputeBackend, Qb1t: Matrix, Qb0t: Matrix): Promise<Matrix | null> {
  const project = async (Xt: Matrix): Promise<Matrix> => {
    const P = await backend.matmul(Xt, Qb1t, { transB: true }); // r x l: X^T Qb1
    const PQ = await backend.matmul(P, Qb1t); // r x b
    const out = new Float32Array(Xt.data.length);
    for (let i = 0; i < out.length; i++) out[i] = Xt.data[i] - PQ.data[i];
    return { rows: Xt.rows, cols: Xt.cols, data: out };
  };
  const Xt = await project(await project(Qb0t));
  const r0 = Xt.rows;
  const G = await backend.gram(Xt, 'AAt'); // r0 x r0
  const eig = symmetricEigen(Float64Array.from(G.data), r0);
  const keep: number[] = [];
  // The largest residuals first, and never more columns than the long side leaves beside Qb1.
  const room = Math.max(0, Qb1t.cols - Qb1t.rows);
  for (let i = 0; i < r0 && keep.length < room; i++) if (eig.values[i] > UNION_FLOOR * UNION_FLOOR) keep.push(i);
  if (keep.length === 0) return null;
  const r = keep.length;
  const T: Matrix = { rows: r, cols: r0, data: new Float32Array(r * r0) };
  keep.forEach((e, row) => {
    const inv = 1 / Math.sqrt(eig.values[e]);
    for (let j = 0; j < r0; j++) T.data[row * r0 + j] = eig.vectors[j * r0 + e] * inv;
  });
  const Yt = await project(await backend.matmul(T, Xt)); // r x b
  return orthRows(backend, Yt);
}

function stackRows(a: Matrix, b: Matrix | null): Matrix {
  if (!b) return a;
  const data = new Float32Array((a.rows + b.rows) * a.cols);
  data.set(a.data);
  data.set(b.data, a.data.length);
  return { rows: a.rows + b.rows, cols: a.cols, data };
}

/** Long-side vectors Qb W_k (b x k row-major, float64) from a backend product. */
async function longVectors(backend: ComputeBackend, Qbt: Matrix, W: Float64Array, l: number, k: number): Promise<Float64Array> {
  const Wkt: Matrix = { rows: k, cols: l, data: new Float32Array(k * l) };
  for (let j = 0; j < l; j++) for (let i = 0; i < k; i++) Wkt.data[i * l + j] = W[j * k + i];
  const Vt = await backend.matmul(Wkt, Qbt); // k x b
  const b = Qbt.cols;
  const V = new Float64Array(b * k);
  for (let i = 0; i < k; i++) for (let r = 0; r < b; r++) V[r * k + i] = Vt.data[i * b + r];
  return V;
}

/**
 * Top-kk singular values and top-k vectors of W0 and W1 = W0 + dW on a shared subspace, with the
 * principal angles between their top-k subspaces. Needs min(m, n) > kk + oversample (the caller takes
 * the exact path otherwise). Throws on non-finite entries.
 *
 * dW given by its factors (a LoRA update) with W1 null: W1 is the operator W0 + L R and neither W1 nor
 * dW is ever formed; E = dW' Q comes from the factors, so the shifts are those of the exact update.
 */
export async function sharedSubspaceSvd(
  backend: ComputeBackend,
  W0: Matrix,
  W1: Matrix | null,
  dW: Matrix | LowRankUpdate,
  opts: SharedSubspaceOptions,
): Promise<SharedSubspaceResult> {
  const op0 = sideOperators(backend, W0);
  const opD = 'data' in dW ? sideOperators(backend, dW) : lowRankSideOperators(backend, dW);
  if (!('data' in dW) && (dW.rows !== W0.rows || dW.cols !== W0.cols))
    throw new Error(`sharedSubspaceSvd: the update is ${dW.rows} x ${dW.cols}, W0 ${W0.rows} x ${W0.cols}`);
  const op1 = W1 ? sideOperators(backend, W1) : sumSideOperators(op0, opD);
  const { s, tall } = op0;
  const kk = Math.min(opts.kk, s);
  const k = Math.min(opts.k, kk);
  const l = sharedBasisWidth(s, kk, opts.oversample);
  if (l >= s) throw new Error(`sharedSubspaceSvd: basis width ${l} reaches the short side ${s}; use the exact path`);
  const tol = opts.tol ?? SUBSPACE_TOLERANCE;
  const maxIt = Math.max(1, opts.maxIterations ?? SUBSPACE_MAX_ITERATIONS);
  const timings = opts.timings;

  let baseBasis: Float32Array;
  let baseConvergence: SubspaceConvergence | null = null;
  if (opts.baseBasis) {
    if (opts.baseBasis.length !== l * s) throw new Error(`sharedSubspaceSvd: the stored base basis has ${opts.baseBasis.length} values, expected ${l} x ${s}`);
    baseBasis = opts.baseBasis;
  } else {
    let t = performance.now();
    const rng = new Rng(opts.seed);
    const omega = new Float32Array(l * s);
    rng.fillGaussian(omega);
    const Zt = await op0.applyAt({ rows: l, cols: s, data: omega }); // l x b: a sketch of the long side
    t = addTime(timings, 'products', t);
    if (!allFinite(Zt.data)) throw new Error('truncatedSvd: matrix has NaN or Inf entries');
    const start = await orthRows(backend, Zt);
    addTime(timings, 'orth', t);
    // The base is iterated to convergence too: it is the start of every checkpoint of this base.
    const q = Math.max(1, Math.floor(opts.powerIterations));
    const it0 = await iterate(backend, op0, start, k, q + 1, Math.max(maxIt, q + 1), tol, timings);
    baseBasis = (await orthRows(backend, it0.Ct)).data;
    baseConvergence = it0.convergence;
  }
  // From here the cached and the cold path are the same computation.
  let t = performance.now();
  const Qb0t = await orthRows(backend, await op0.applyAt({ rows: l, cols: s, data: baseBasis })); // l x b
  addTime(timings, 'products', t);
  // At least two iterations: the first moves off the base's subspace, the second measures the change.
  const it1 = await iterate(backend, op1, Qb0t, k, 2, Math.max(2, maxIt), tol, timings);
  t = performance.now();
  // The shared basis holds the top subspaces of both matrices: W1's, extended by what W0's adds to it.
  const ext = await extension(backend, it1.Qbt, Qb0t);
  const Qt = stackRows(it1.Qbt, ext);
  const L = Qt.rows;
  const C1t = stackRows(it1.Ct, ext ? await op1.applyA(ext) : null); // L x s
  const Et = await opD.applyA(Qt); // L x s: (dW' Q)^T
  t = addTime(timings, 'products', t);
  // C0 = A0' Q = C1 - E, formed in float64, where the difference of two float32 arrays is exact: C0 shares
  // C1's product rounding, which therefore cancels in the shifts to first order.
  const C1 = widenMatrix(C1t);
  const C0: Matrix64 = { rows: L, cols: s, data: new Float64Array(L * s) };
  for (let i = 0; i < C0.data.length; i++) C0.data[i] = C1.data[i] - Et.data[i];
  const r1 = await ritzOf(backend, C1, k);
  const r0 = await ritzOf(backend, C0, k);
  t = addTime(timings, 'finalRitz', t);
  const V0 = await longVectors(backend, Qt, r0.W, L, k);
  const V1 = await longVectors(backend, Qt, r1.W, L, k);
  t = addTime(timings, 'products', t);
  const shortAngles = principalAnglesDeg(r0.Us, r1.Us, s, k);
  const longAngles = principalAnglesDeg(r0.W, r1.W, L, k);
  addTime(timings, 'angles', t);
  const svd = (r: Ritz, V: Float64Array, A: Matrix): SvdResult => {
    const S = r.S.slice(0, kk);
    return tall
      ? { U: V, S, V: r.Us, rows: A.rows, cols: A.cols, k, method: 'randomized' }
      : { U: r.Us, S, V, rows: A.rows, cols: A.cols, k, method: 'randomized' };
  };
  return {
    base: svd(r0, V0, W0),
    checkpoint: svd(r1, V1, W1 ?? W0),
    anglesLeftDeg: tall ? longAngles : shortAngles,
    anglesRightDeg: tall ? shortAngles : longAngles,
    baseBasis,
    l: L,
    baseConvergence,
    checkpointConvergence: it1.convergence,
  };
}
