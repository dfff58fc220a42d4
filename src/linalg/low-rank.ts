/**
 * An update given by its factors, dW = L R (L: m x r, R: r x n, r small), as a LoRA adapter stores it.
 * Everything the spectral pass needs from dW comes from the factors without forming the m x n product:
 * its exact norms (r x r problems), its energy inside given subspaces (k x r products), its products with
 * a basis (two thin products, for the shared-subspace iteration of W0 + dW), and its inner product with
 * W0 (one r x n product).
 */
import type { ComputeBackend, Matrix } from '../compute/backend';
import { crossProduct, gramRows } from './dense';
import { symmetricEigen } from './eigen';
import type { SideOperators } from './truncated-svd';

export interface LowRankUpdate {
  rows: number;
  cols: number;
  rank: number;
  /** rows x rank, row-major (any scale folded in). */
  left: Float64Array;
  /** rank x cols, row-major. */
  right: Float64Array;
}

/** The factors times a constant (the left one scaled). */
export function scaleLowRank(u: LowRankUpdate, c: number): LowRankUpdate {
  return c === 1 ? u : { ...u, left: u.left.map((x) => x * c) };
}

/** G_L = L^T L and G_R = R R^T (both r x r, float64). */
function grams(u: LowRankUpdate): { gl: Float64Array; gr: Float64Array } {
  return { gl: crossProduct(u.left, u.left, u.rows, u.rank, u.rank), gr: gramRows(u.right, u.rank, u.cols) };
}

/** Exact ||L R||_F and ||L R||_2 from the r x r Gram matrices: sigma_i(L R)^2 are the eigenvalues of G_R^(1/2) G_L G_R^(1/2). */
export function lowRankNorms(u: LowRankUpdate): { fro: number; spectral: number } {
  const r = u.rank;
  const { gl, gr } = grams(u);
  const e = symmetricEigen(gr, r);
  const half = new Float64Array(r * r);
  for (let p = 0; p < r; p++)
    for (let q = 0; q < r; q++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += e.vectors[p * r + k] * Math.sqrt(Math.max(0, e.values[k])) * e.vectors[q * r + k];
      half[p * r + q] = s;
    }
  // half and gl are symmetric: (half gl)^T = gl half, so half gl half = (gl half)^T half.
  const m = crossProduct(crossProduct(gl, half, r, r, r), half, r, r, r);
  for (let p = 0; p < r; p++) for (let q = 0; q < p; q++) m[p * r + q] = m[q * r + p] = (m[p * r + q] + m[q * r + p]) / 2;
  const sig2 = symmetricEigen(m, r).values;
  // ||L R||_F^2 = tr(L^T L R R^T) = sum of G_L .* G_R (both symmetric).
  let fro2 = 0;
  for (let i = 0; i < r * r; i++) fro2 += gl[i] * gr[i];
  return { fro: Math.sqrt(Math.max(0, fro2)), spectral: Math.sqrt(Math.max(0, sig2[0] ?? 0)) };
}

/** Energy of dW inside subspaces, exact from the factors. */
export interface LowRankProjections {
  /** U^T dW V (k x k, row-major): its diagonal is the first-order shifts u_i^T dW v_i. */
  twoSided: Float64Array;
  /** ||U^T dW||_F^2 and ||dW V||_F^2. */
  leftFro2: number;
  rightFro2: number;
  /** ||dW||_F^2. */
  fro2: number;
}

/**
 * Projections of dW on orthonormal bases U (m x k) and V (n x k), both row-major float64:
 * U^T dW V = (U^T L)(R V), ||U^T dW||_F^2 = tr((U^T L) G_R (U^T L)^T), ||dW V||_F^2 = tr((R V)^T G_L (R V)).
 */
export function lowRankProjections(u: LowRankUpdate, U: Float64Array, V: Float64Array, k: number): LowRankProjections {
  const r = u.rank;
  const UL = crossProduct(U, u.left, u.rows, k, r); // k x r
  const RVt = new Float64Array(r * k); // R V, r x k
  for (let p = 0; p < r; p++) {
    const o = p * u.cols;
    for (let j = 0; j < u.cols; j++) {
      const x = u.right[o + j];
      if (x === 0) continue;
      const ov = j * k;
      for (let c = 0; c < k; c++) RVt[p * k + c] += x * V[ov + c];
    }
  }
  const twoSided = new Float64Array(k * k);
  for (let i = 0; i < k; i++)
    for (let p = 0; p < r; p++) {
      const a = UL[i * r + p];
      if (a === 0) continue;
      for (let c = 0; c < k; c++) twoSided[i * k + c] += a * RVt[p * k + c];
    }
  const { gl, gr } = grams(u);
  // tr(X G X^T) for X (rows x r): sum over rows of x^T G x.
  const quad = (X: Float64Array, rows: number, G: Float64Array): number => {
    let s = 0;
    for (let i = 0; i < rows; i++)
      for (let p = 0; p < r; p++) {
        const xp = X[i * r + p];
        if (xp === 0) continue;
        for (let q = 0; q < r; q++) s += xp * G[p * r + q] * X[i * r + q];
      }
    return s;
  };
  // R V as k x r rows for the quadratic form: (R V)^T G_L (R V) summed over its k columns.
  const VR = new Float64Array(k * r);
  for (let p = 0; p < r; p++) for (let c = 0; c < k; c++) VR[c * r + p] = RVt[p * k + c];
  let fro2 = 0;
  for (let i = 0; i < r * r; i++) fro2 += gl[i] * gr[i];
  return { twoSided, leftFro2: Math.max(0, quad(UL, k, gr)), rightFro2: Math.max(0, quad(VR, k, gl)), fro2: Math.max(0, fro2) };
}

/**
 * Adds entries [start, start + count) of L R (row-major; out[0] takes entry `start`) to `out`. Each entry's
 * r terms are summed in float64 first and added once, as a dense float64 product would; four rows of R
 * are taken per pass over a row segment, a quarter of the loads and stores of the running sums.
 */
export function addLowRankEntries(u: LowRankUpdate, start: number, count: number, out: Float64Array): void {
  const { cols, rank: r, left: L, right: R } = u;
  const d = new Float64Array(cols);
  for (let idx = start; idx < start + count;) {
    const i = Math.floor(idx / cols);
    const j0 = idx - i * cols;
    const j1 = Math.min(cols, j0 + (start + count - idx));
    const li = i * r;
    d.fill(0, j0, j1);
    let p = 0;
    for (; p + 4 <= r; p += 4) {
      const c0 = L[li + p];
      const c1 = L[li + p + 1];
      const c2 = L[li + p + 2];
      const c3 = L[li + p + 3];
      const r0 = p * cols;
      const r1 = r0 + cols;
      const r2 = r1 + cols;
      const r3 = r2 + cols;
      for (let j = j0; j < j1; j++) d[j] += c0 * R[r0 + j] + c1 * R[r1 + j] + c2 * R[r2 + j] + c3 * R[r3 + j];
    }
    for (; p < r; p++) {
      const c = L[li + p];
      const row = p * cols;
      for (let j = j0; j < j1; j++) d[j] += c * R[row + j];
    }
    const o = idx - start - j0;
    for (let j = j0; j < j1; j++) out[o + j] += d[j];
    idx += j1 - j0;
  }
}

/** The dense product L R as float32 (rows x cols): for matrices small enough to take the exact SVD path. */
export function lowRankDense(u: LowRankUpdate): Float32Array {
  const d = new Float64Array(u.rows * u.cols);
  addLowRankEntries(u, 0, d.length, d);
  return Float32Array.from(d);
}

/** <W, L R> = sum_p (L^T W)[p, :] . R[p, :], with L^T W (r x n) as a backend product (float32, ~1e-7 relative). */
export async function lowRankInner(backend: ComputeBackend, W: Matrix, u: LowRankUpdate): Promise<number> {
  const Lt: Matrix = { rows: u.rank, cols: u.rows, data: new Float32Array(u.rank * u.rows) };
  for (let i = 0; i < u.rows; i++) for (let p = 0; p < u.rank; p++) Lt.data[p * u.rows + i] = u.left[i * u.rank + p];
  const LtW = await backend.matmul(Lt, W); // r x n
  let s = 0;
  for (let i = 0; i < LtW.data.length; i++) s += LtW.data[i] * u.right[i];
  return s;
}

/**
 * The side operators of dW (see {@link SideOperators}: A' is dW or dW^T, whichever is short x long),
 * as two thin backend products each, never the m x n product.
 */
export function lowRankSideOperators(backend: ComputeBackend, u: LowRankUpdate): SideOperators {
  const tall = u.rows > u.cols;
  const s = Math.min(u.rows, u.cols);
  const b = Math.max(u.rows, u.cols);
  const r = u.rank;
  // A' = P Q with P (s x r) and Q (r x b): dW = L R, or dW^T = R^T L^T when tall.
  const P: Matrix = { rows: s, cols: r, data: new Float32Array(s * r) };
  const Q: Matrix = { rows: r, cols: b, data: new Float32Array(r * b) };
  if (!tall) {
    P.data.set(u.left);
    Q.data.set(u.right);
  } else {
    for (let j = 0; j < u.cols; j++) for (let p = 0; p < r; p++) P.data[j * r + p] = u.right[p * u.cols + j];
    for (let i = 0; i < u.rows; i++) for (let p = 0; p < r; p++) Q.data[p * u.rows + i] = u.left[i * r + p];
  }
  return {
    s,
    b,
    tall,
    // (A' Z)^T = Z^T Q^T P^T, from Zt (l x b).
    applyA: async (Zt) => backend.matmul(await backend.matmul(Zt, Q, { transB: true }), P, { transB: true }),
    // (A'^T X)^T = X^T P Q, from Xt (l x s).
    applyAt: async (Xt) => backend.matmul(await backend.matmul(Xt, P), Q),
  };
}

/** The side operators of A + B (both the same shape and orientation): each product is the sum of the two. */
export function sumSideOperators(a: SideOperators, b: SideOperators): SideOperators {
  if (a.s !== b.s || a.b !== b.b || a.tall !== b.tall) throw new Error('sumSideOperators: the operators differ in shape');
  const add = (x: Matrix, y: Matrix): Matrix => {
    const out = new Float32Array(x.data.length);
    for (let i = 0; i < out.length; i++) out[i] = x.data[i] + y.data[i];
    return { rows: x.rows, cols: x.cols, data: out };
  };
  return {
    s: a.s,
    b: a.b,
    tall: a.tall,
    applyA: async (Zt) => add(await a.applyA(Zt), await b.applyA(Zt)),
    applyAt: async (Xt) => add(await a.applyAt(Xt), await b.applyAt(Xt)),
  };
}
