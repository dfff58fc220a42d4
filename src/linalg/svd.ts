/**
 * Dense SVD in float64 for small and moderate matrices.
 *
 * {@link jacobiSvd}: one-sided (Hestenes) Jacobi, preceded by a Householder QR when the matrix is not
 * square, so that the sweeps run on the small square R. One-sided Jacobi computes every singular
 * value, small ones included, to high relative accuracy (it never forms A^T A), and its left vectors
 * come out orthonormal to working precision. Cost is several O(n^3) sweeps: fine up to a few hundred
 * columns, which is all we ask of it (small B factors, tests, small models, angles).
 *
 * Layout: input row-major m x n. Output U (m x p), V (n x p) row-major with column i the i-th singular
 * vector, S descending, p = min(m, n).
 */
import { extractR, formQColumnMajor, householderColumnMajor, transposeToColumnMajor } from './qr';
import { dot, rotateRows } from './dense';

export interface DenseSvd {
  /** m x p row-major. Empty when vectors were not requested. */
  U: Float64Array;
  /** Descending, length p. */
  S: Float64Array;
  /** n x p row-major. Empty when vectors were not requested. */
  V: Float64Array;
  rows: number;
  cols: number;
  p: number;
}

export interface JacobiOptions {
  /** Compute U and V (default true). Values only is about twice as fast. */
  vectors?: boolean;
  /** Safety cap on sweeps (default 60; convergence normally takes 5 to 12). */
  maxSweeps?: number;
}

/**
 * One-sided Jacobi on the column-major r x c matrix W (r >= c), in place: afterwards the columns of W
 * are mutually orthogonal (W = A J), and J (c x c column-major, when given) holds the accumulated
 * rotations. Returns the number of sweeps used.
 */
function hestenes(W: Float64Array, r: number, c: number, J: Float64Array | null, maxSweeps: number): number {
  const norms = new Float64Array(c);
  // Relative orthogonality target: |w_p . w_q| <= tol ||w_p|| ||w_q||.
  const tol = Math.max(r, 4) * 2.220446049250313e-16;
  let sweep = 0;
  for (; sweep < maxSweeps; sweep++) {
    for (let j = 0; j < c; j++) {
      norms[j] = dot(W, j * r, W, j * r, r);
    }
    let rotated = false;
    for (let p = 0; p < c - 1; p++) {
      const op = p * r;
      for (let q = p + 1; q < c; q++) {
        const a = norms[p];
        const b = norms[q];
        if (a === 0 || b === 0) continue;
        const oq = q * r;
        const g = dot(W, op, W, oq, r);
        if (Math.abs(g) <= tol * Math.sqrt(a * b)) continue;
        rotated = true;
        const zeta = (b - a) / (2 * g);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const cs = 1 / Math.sqrt(1 + t * t);
        const sn = cs * t;
        for (let k = 0; k < r; k++) {
          const wp = W[op + k];
          const wq = W[oq + k];
          W[op + k] = cs * wp - sn * wq;
          W[oq + k] = sn * wp + cs * wq;
        }
        norms[p] = a - t * g;
        norms[q] = b + t * g;
        if (J) rotateRows(J, p * c, q * c, c, cs, sn);
      }
    }
    if (!rotated) break;
  }
  return sweep;
}

/**
 * Replaces columns flagged in `bad` of the column-major r x c matrix Q by unit vectors orthogonal to
 * all other columns. Used for the singular vectors of zero singular values, which no algorithm
 * determines. Deterministic: each new column starts from the coordinate vector e_i that the columns so
 * far cover least (largest 1 - sum_o Q[i,o]^2), then two Gram-Schmidt passes. The kept columns leave
 * d = r - kept dimensions free, and those residuals sum to d, so the chosen e_i keeps at least d / r of
 * its length: a first-fit rule with a fixed threshold fails when the free direction is spread over many
 * coordinates (the right null vector of a square matrix with a zero row).
 */
export function completeOrthonormalColumns(Q: Float64Array, r: number, c: number, bad: ArrayLike<boolean>): void {
  const kept = Array.from({ length: c }, (_, o) => !bad[o]);
  if (c > r) throw new Error('completeOrthonormalColumns: more columns than dimensions');
  // Squared row norms of the kept columns: how much of e_i they already span.
  const covered = new Float64Array(r);
  for (let o = 0; o < c; o++) {
    if (!kept[o]) continue;
    const oo = o * r;
    for (let i = 0; i < r; i++) covered[i] += Q[oo + i] * Q[oo + i];
  }
  const x = new Float64Array(r);
  for (let j = 0; j < c; j++) {
    if (kept[j]) continue;
    let best = 0;
    for (let i = 1; i < r; i++) if (covered[i] < covered[best]) best = i;
    x.fill(0);
    x[best] = 1;
    for (let pass = 0; pass < 2; pass++) {
      for (let o = 0; o < c; o++) {
        if (!kept[o]) continue;
        const oo = o * r;
        let d = 0;
        for (let i = 0; i < r; i++) d += Q[oo + i] * x[i];
        if (d !== 0) for (let i = 0; i < r; i++) x[i] -= d * Q[oo + i];
      }
    }
    let nn = 0;
    for (let i = 0; i < r; i++) nn += x[i] * x[i];
    // At least (r - kept) / r >= 1 / r is left for orthonormal kept columns; far less means they were not.
    if (!(nn > 1e-3 / r)) throw new Error('completeOrthonormalColumns: the kept columns are not orthonormal');
    const inv = 1 / Math.sqrt(nn);
    const oj = j * r;
    for (let i = 0; i < r; i++) {
      Q[oj + i] = x[i] * inv;
      covered[i] += Q[oj + i] * Q[oj + i];
    }
    kept[j] = true;
  }
}

/**
 * Full SVD by one-sided Jacobi (QR first when m != n). A = U diag(S) V^T, S descending.
 * Zero singular values get orthonormal completions as vectors.
 */
export function jacobiSvd(A: Float64Array, m: number, n: number, opts: JacobiOptions = {}): DenseSvd {
  if (A.length !== m * n) throw new Error(`jacobiSvd: array of ${A.length} is not ${m} x ${n}`);
  for (let i = 0; i < A.length; i++) if (!Number.isFinite(A[i])) throw new Error('jacobiSvd: non-finite entry');
  const wantVectors = opts.vectors ?? true;
  const maxSweeps = opts.maxSweeps ?? 60;
  const tall = m >= n;
  // X (big x small, column-major) is A when tall, A^T when wide; for a wide row-major A the rows of A
  // are already the columns of A^T.
  const big = tall ? m : n;
  const p = tall ? n : m;
  const X = tall ? transposeToColumnMajor(A, m, n) : Float64Array.from(A);
  if (p === 0) {
    return { U: new Float64Array(0), S: new Float64Array(0), V: new Float64Array(0), rows: m, cols: n, p };
  }

  // Precondition: X = Q R, then Jacobi on the p x p R (Q is only needed for vectors).
  let Q: Float64Array | null = null;
  let W: Float64Array;
  if (big > p) {
    const f = householderColumnMajor(X, big, p);
    const R = extractR(f); // p x p row-major
    W = transposeToColumnMajor(R, p, p);
    if (wantVectors) Q = formQColumnMajor(f);
  } else {
    W = X;
  }
  const J = wantVectors ? new Float64Array(p * p) : null;
  if (J) for (let i = 0; i < p; i++) J[i * p + i] = 1;
  hestenes(W, p, p, J, maxSweeps);

  // Singular values = column norms of W; sort descending.
  const sv = new Float64Array(p);
  for (let j = 0; j < p; j++) {
    let s = 0;
    const o = j * p;
    for (let i = 0; i < p; i++) s += W[o + i] * W[o + i];
    sv[j] = Math.sqrt(s);
  }
  const order = Array.from({ length: p }, (_, i) => i).sort((a, b) => sv[b] - sv[a]);
  const S = new Float64Array(p);
  for (let i = 0; i < p; i++) S[i] = sv[order[i]];
  if (!J) return { U: new Float64Array(0), S, V: new Float64Array(0), rows: m, cols: n, p };

  // Left vectors of the small problem: normalized columns of W (column-major p x p, sorted).
  const Lw = new Float64Array(p * p);
  const bad = new Array<boolean>(p).fill(false);
  const tiny = S[0] * 1e-300;
  for (let c = 0; c < p; c++) {
    const src = order[c] * p;
    const s = S[c];
    if (!(s > tiny) || s === 0) {
      bad[c] = true;
      continue;
    }
    const inv = 1 / s;
    for (let i = 0; i < p; i++) Lw[c * p + i] = W[src + i] * inv;
  }
  if (bad.some((b) => b)) completeOrthonormalColumns(Lw, p, p, bad);
  // Right vectors of the small problem: columns of J in the same order.
  const Rw = new Float64Array(p * p);
  for (let c = 0; c < p; c++) Rw.set(J.subarray(order[c] * p, order[c] * p + p), c * p);

  // Left vectors of X: Q Lw (big x p) when preconditioned, else Lw.
  let Lx: Float64Array; // column-major big x p
  if (Q) {
    Lx = new Float64Array(big * p);
    for (let c = 0; c < p; c++) {
      const oc = c * big;
      const lc = c * p;
      for (let j = 0; j < p; j++) {
        const w = Lw[lc + j];
        if (w === 0) continue;
        const qj = j * big;
        for (let i = 0; i < big; i++) Lx[oc + i] += w * Q[qj + i];
      }
    }
  } else {
    Lx = Lw;
  }
  // X = Lx S Rw^T. Tall: A = X. Wide: A = X^T = Rw S Lx^T.
  const Ucm = tall ? Lx : Rw;
  const Vcm = tall ? Rw : Lx;
  return {
    U: transposeToColumnMajor(Ucm, p, m), // column-major m x p -> row-major m x p
    S,
    V: transposeToColumnMajor(Vcm, p, n),
    rows: m,
    cols: n,
    p,
  };
}

/** All singular values (descending) of a row-major m x n matrix, by one-sided Jacobi. */
export function singularValuesJacobi(A: Float64Array, m: number, n: number): Float64Array {
  return jacobiSvd(A, m, n, { vectors: false }).S;
}
