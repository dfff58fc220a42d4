/**
 * Principal angles between two k-dimensional subspaces given by orthonormal bases (spec M5).
 *
 * Definition (spec): cos(theta_i) = sigma_i(U0^T U1), clamped to [0, 1], theta in degrees, ascending.
 *
 * Accuracy: arccos is ill-conditioned near 1, so a cosine known to 1e-16 only fixes an angle of
 * 1e-4 rad to about 1e-12 rad, and the tiniest angles (RL rotations can be tiny) would drown. As in
 * Knyazev & Argentati (2002) and scipy.linalg.subspace_angles, angles below 45 degrees are taken from
 * the sines instead: the singular values of (I - U0 U0^T) U1 = U1 - U0 (U0^T U1), which are sin(theta)
 * and are computed with absolute accuracy. Both give the same angles up to rounding.
 */
import { crossProduct } from './dense';
import { singularValuesJacobi } from './svd';

const RAD_TO_DEG = 180 / Math.PI;

/**
 * Principal angles in degrees (ascending, length k) between span(U0) and span(U1); U0 and U1 are
 * rows x k row-major with orthonormal columns (e.g. the U or V of two SVDs).
 */
export function principalAnglesDeg(U0: Float64Array, U1: Float64Array, rows: number, k: number): Float64Array {
  if (U0.length < rows * k || U1.length < rows * k) {
    throw new Error(`principalAnglesDeg: bases must be ${rows} x ${k} (got ${U0.length} and ${U1.length} values)`);
  }
  if (k === 0) return new Float64Array(0);
  // M = U0^T U1 (k x k), one pass over the rows.
  const M = crossProduct(U0, U1, rows, k, k);
  const cos = singularValuesJacobi(M, k, k); // descending
  // S = U1 - U0 M (rows x k); its singular values are the sines.
  const S = new Float64Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const o = r * k;
    for (let j = 0; j < k; j++) S[o + j] = U1[o + j];
    for (let i = 0; i < k; i++) {
      const u = U0[o + i];
      if (u === 0) continue;
      const mi = i * k;
      for (let j = 0; j < k; j++) S[o + j] -= u * M[mi + j];
    }
  }
  // Sines by QR + one-sided Jacobi (relative accuracy for the tiny ones; never forms S^T S).
  const sin = singularValuesJacobi(S, rows, k); // descending
  const out = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    const c = Math.min(1, Math.max(0, cos[i]));
    if (c * c >= 0.5) {
      // Small angle: the i-th smallest sine is the (k-1-i)-th largest.
      out[i] = Math.asin(Math.min(1, Math.max(0, sin[k - 1 - i]))) * RAD_TO_DEG;
    } else {
      out[i] = Math.acos(c) * RAD_TO_DEG;
    }
  }
  // Ascending (the two sources agree on the order; enforce it against rounding at the 45 deg seam).
  return out.sort();
}
