/**
 * CholeskyQR2 on the compute backend: a cheap orthonormalisation for the *intermediate* long-side
 * sketches of the randomized SVD.
 *
 * Why: the power iteration needs an orthonormal basis of Z = A'^T Q (b x l, e.g. 8960 x 74) between
 * two products. Householder QR in TypeScript costs about 2 b l^2 scalar flops (~50 ms there, twice per
 * SVD: the largest single cost of the whole SVD). CholeskyQR moves that work into two backend calls
 * per pass: G = Z^T Z (the backend's `gram`), a Cholesky factorisation G = L L^T of the small l x l
 * matrix in float64 here, and Q = Z L^-T (one backend product). Two passes ("CholeskyQR2", Fukaya,
 * Nakatsukasa et al. 2014) bring the basis orthonormal to float32 rounding.
 *
 * That precision is enough here and only here: the basis is consumed by a float32 product at once, so
 * float32-level orthonormality adds nothing beyond the rounding the product itself makes. The *final*
 * short-side basis (which becomes U) still comes from the float64 Householder QR.
 *
 * CholeskyQR breaks down when Z is ill-conditioned (cond(Z)^2 near 1/eps_float32), e.g. for a
 * LoRA-merged update of rank below l. Then this returns null and the caller falls back to Householder.
 * A final Gram check rejects any basis that is not orthonormal to 1e-4.
 */
import type { ComputeBackend, Matrix } from '../compute/backend';

/** Pivots below this fraction of the largest diagonal of Z^T Z abort (cond(Z) above ~1000). */
const PIVOT_RELATIVE = 1e-6;
/** Largest accepted |Q^T Q - I| entry after the two passes. */
const ORTHO_TOL = 1e-4;

/**
 * Lower-triangular inverse of the Cholesky factor of the symmetric positive definite l x l matrix G
 * (G = L L^T, returns L^-1 row-major, float64), or null when a pivot is too small.
 *
 * Both halves are written as contiguous dot products, four at a time against one shared row (as in
 * gramRows): four independent sums hide the add latency that a single running sum waits on, which made
 * this l^3/3 step (l = 266: 6 million multiply-adds, four times per subspace iteration) cost 9 ms.
 */
export function choleskyInverseFactor(G: ArrayLike<number>, l: number): Float64Array | null {
  const L = new Float64Array(l * l);
  let maxDiag = 0;
  for (let i = 0; i < l; i++) maxDiag = Math.max(maxDiag, G[i * l + i]);
  if (!(maxDiag > 0) || !Number.isFinite(maxDiag)) return null;
  const floor = PIVOT_RELATIVE * maxDiag;
  // Cholesky-Crout by columns: L[i, j] = (G[i, j] - L[i, :j] . L[j, :j]) / L[j, j] for i > j.
  for (let j = 0; j < l; j++) {
    const oj = j * l;
    let d = G[oj + j];
    for (let k = 0; k < j; k++) d -= L[oj + k] * L[oj + k];
    if (!(d > floor)) return null;
    const ljj = Math.sqrt(d);
    L[oj + j] = ljj;
    const inv = 1 / ljj;
    let i = j + 1;
    for (; i + 4 <= l; i += 4) {
      const o0 = i * l;
      const o1 = o0 + l;
      const o2 = o1 + l;
      const o3 = o2 + l;
      let s0 = G[o0 + j];
      let s1 = G[o1 + j];
      let s2 = G[o2 + j];
      let s3 = G[o3 + j];
      for (let k = 0; k < j; k++) {
        const x = L[oj + k];
        s0 -= L[o0 + k] * x;
        s1 -= L[o1 + k] * x;
        s2 -= L[o2 + k] * x;
        s3 -= L[o3 + k] * x;
      }
      L[o0 + j] = s0 * inv;
      L[o1 + j] = s1 * inv;
      L[o2 + j] = s2 * inv;
      L[o3 + j] = s3 * inv;
    }
    for (; i < l; i++) {
      const oi = i * l;
      let v = G[oi + j];
      for (let k = 0; k < j; k++) v -= L[oi + k] * L[oj + k];
      L[oi + j] = v * inv;
    }
  }
  // Forward substitution for the inverse, row i of L Li = I: Li[i, c] = -(L[i, c:i] . Li[c:i, c]) / L[i, i]
  // for c < i. The column Li[c:i, c] is kept contiguous as row c of the transpose T = Li^T (T[c, k] =
  // Li[k, c]), so every sum is a dot of two rows; T is transposed back at the end.
  const T = new Float64Array(l * l);
  for (let i = 0; i < l; i++) {
    const oi = i * l;
    const inv = 1 / L[oi + i];
    T[oi + i] = inv;
    let c = 0;
    for (; c + 4 <= i; c += 4) {
      const t0 = c * l;
      const t1 = t0 + l;
      const t2 = t1 + l;
      const t3 = t2 + l;
      // T[c + q, k] = 0 for k < c + q (Li is lower triangular), so every sum may start at k = c.
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let k = c; k < i; k++) {
        const x = L[oi + k];
        s0 += x * T[t0 + k];
        s1 += x * T[t1 + k];
        s2 += x * T[t2 + k];
        s3 += x * T[t3 + k];
      }
      T[t0 + i] = -s0 * inv;
      T[t1 + i] = -s1 * inv;
      T[t2 + i] = -s2 * inv;
      T[t3 + i] = -s3 * inv;
    }
    for (; c < i; c++) {
      const tc = c * l;
      let v = 0;
      for (let k = c; k < i; k++) v += L[oi + k] * T[tc + k];
      T[tc + i] = -v * inv;
    }
  }
  const Li = new Float64Array(l * l);
  for (let c = 0; c < l; c++) for (let i = c; i < l; i++) Li[i * l + c] = T[c * l + i];
  return Li;
}

/**
 * Orthonormalises the rows of Zt (l x b row-major, i.e. the columns of Z) on the backend with two
 * CholeskyQR passes. Returns Qt (l x b, float32, rows orthonormal to float32 rounding) spanning the
 * same space, or null when Z is too ill-conditioned for this method.
 */
export async function choleskyQr2Rows(backend: ComputeBackend, Zt: Matrix): Promise<Matrix | null> {
  const l = Zt.rows;
  let X = Zt;
  for (let pass = 0; pass < 2; pass++) {
    const G = await backend.gram(X, 'AAt'); // l x l = Z^T Z
    const Li = choleskyInverseFactor(G.data, l);
    if (!Li) return null;
    // Q^T = L^-1 Z^T: (Z L^-T)^T.
    X = await backend.matmul({ rows: l, cols: l, data: Float32Array.from(Li) }, X);
  }
  const G = await backend.gram(X, 'AAt');
  for (let i = 0; i < l; i++) {
    for (let j = 0; j < l; j++) {
      const target = i === j ? 1 : 0;
      if (!(Math.abs(G.data[i * l + j] - target) <= ORTHO_TOL)) return null;
    }
  }
  return X;
}
