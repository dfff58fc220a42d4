/**
 * Small dense kernels in float64 shared by the linalg modules. Typed arrays, row-major unless a name
 * says otherwise, loops written for V8: unit-stride inner loops, several independent accumulators,
 * no allocation inside loops.
 */

/** Any dense numeric array the kernels read (float32 backend output or float64 work arrays). */
export type NumArray = Float32Array | Float64Array;

/**
 * G = X X^T (r x r, float64) for a row-major r x c matrix X, accumulating in float64 whatever the
 * input precision. Every entry is a dot product of two contiguous rows; four rows are dotted against
 * row i per pass so that row i is loaded once per four outputs and the four sums run in parallel.
 * Cost r^2 c / 2 multiply-adds (the symmetric half only).
 */
export function gramRows(X: NumArray, r: number, c: number): Float64Array {
  if (X.length < r * c) throw new Error(`gramRows: array of ${X.length} < ${r} x ${c}`);
  const G = new Float64Array(r * r);
  for (let i = 0; i < r; i++) {
    const oi = i * c;
    let j = 0;
    for (; j + 3 <= i; j += 4) {
      const o0 = j * c;
      const o1 = o0 + c;
      const o2 = o1 + c;
      const o3 = o2 + c;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let t = 0; t < c; t++) {
        const x = X[oi + t];
        s0 += x * X[o0 + t];
        s1 += x * X[o1 + t];
        s2 += x * X[o2 + t];
        s3 += x * X[o3 + t];
      }
      G[i * r + j] = s0;
      G[i * r + j + 1] = s1;
      G[i * r + j + 2] = s2;
      G[i * r + j + 3] = s3;
    }
    for (; j <= i; j++) {
      G[i * r + j] = dot(X, oi, X, j * c, c);
    }
  }
  for (let i = 0; i < r; i++) for (let j = i + 1; j < r; j++) G[i * r + j] = G[j * r + i];
  return G;
}

/**
 * C = A^T B in float64 for row-major A (r x p) and B (r x q): C is p x q. Streams over the shared
 * rows once (rank-1 updates with a contiguous inner loop), so tall-thin inputs (8960 x 64) stay cheap.
 */
export function crossProduct(A: NumArray, B: NumArray, r: number, p: number, q: number): Float64Array {
  if (A.length < r * p || B.length < r * q) throw new Error('crossProduct: array too short');
  const C = new Float64Array(p * q);
  for (let t = 0; t < r; t++) {
    const oa = t * p;
    const ob = t * q;
    for (let i = 0; i < p; i++) {
      const a = A[oa + i];
      if (a === 0) continue;
      const oc = i * q;
      for (let j = 0; j < q; j++) C[oc + j] += a * B[ob + j];
    }
  }
  return C;
}

/** Frobenius norm of any dense array, in float64 (scaled: no overflow for huge entries). */
export function frobeniusNorm(X: NumArray): number {
  let scale = 0;
  for (let i = 0; i < X.length; i++) {
    const a = Math.abs(X[i]);
    if (a > scale) scale = a;
  }
  if (scale === 0 || !Number.isFinite(scale)) return scale;
  const inv = 1 / scale;
  let s = 0;
  for (let i = 0; i < X.length; i++) {
    const v = X[i] * inv;
    s += v * v;
  }
  return scale * Math.sqrt(s);
}

/** True when every entry is finite (one pass; `x - x` is NaN exactly for NaN and +-Infinity). */
export function allFinite(X: NumArray): boolean {
  let acc = 0;
  for (let i = 0; i < X.length; i++) acc += X[i] - X[i];
  return acc === 0;
}

/**
 * Plane (Givens / Jacobi) rotation of two rows stored at offsets `p` and `q` of `A`, `len` entries each:
 * row_p <- c row_p - s row_q, row_q <- s row_p + c row_q.
 */
export function rotateRows(A: Float64Array, p: number, q: number, len: number, c: number, s: number): void {
  for (let k = 0; k < len; k++) {
    const x = A[p + k];
    const y = A[q + k];
    A[p + k] = c * x - s * y;
    A[q + k] = s * x + c * y;
  }
}

/**
 * Dot product of `len` entries of A from offset `oa` and of B from offset `ob`, with two interleaved
 * accumulators (shorter dependency chains; the summation order every caller relies on).
 */
export function dot(A: NumArray, oa: number, B: NumArray, ob: number, len: number): number {
  let s0 = 0;
  let s1 = 0;
  let i = 0;
  for (; i + 1 < len; i += 2) {
    s0 += A[oa + i] * B[ob + i];
    s1 += A[oa + i + 1] * B[ob + i + 1];
  }
  if (i < len) s0 += A[oa + i] * B[ob + i];
  return s0 + s1;
}
