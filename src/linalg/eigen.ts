/**
 * Symmetric eigen-decomposition in float64, eigenvalues sorted descending.
 *
 * Two solvers:
 * - {@link symmetricEigen}: Householder tridiagonalisation + implicit QL with Wilkinson-type shifts
 *   (the EISPACK tred2/tql2 pair, as in the public-domain JAMA library). About 9 n^3 flops with
 *   vectors: the default, because the randomized SVD needs it for l x l matrices up to a few hundred
 *   (k = 256 plus oversampling), where Jacobi's ~6 n^3 flops *per sweep*, times 6 to 10 sweeps, costs
 *   seconds in TypeScript.
 * - {@link symmetricEigenJacobi}: cyclic Jacobi. Slower, but simple and accurate to high relative
 *   precision; kept to cross-check the QL solver and for tiny matrices.
 *
 * Conventions: input row-major n x n (only symmetric input is meaningful; the solvers read the whole
 * matrix and assume symmetry), output `vectors` row-major n x n whose column i is the unit eigenvector
 * of `values[i]`.
 */
import { rotateRows } from './dense';
import { Rng } from './random';

export interface EigenResult {
  /** Eigenvalues, descending. */
  values: Float64Array;
  /** n x n row-major; column i is the eigenvector of values[i]. */
  vectors: Float64Array;
  n: number;
}

function checkSquare(A: Float64Array, n: number, what: string): void {
  if (A.length !== n * n) throw new Error(`${what}: array of ${A.length} is not ${n} x ${n}`);
  for (let i = 0; i < A.length; i++) {
    if (!Number.isFinite(A[i])) throw new Error(`${what}: matrix has a non-finite entry at ${i}`);
  }
}

/**
 * Sorts eigenpairs descending. `Vt` holds eigenvectors as rows (row i = vector of d[i]); the result
 * has them as columns (row-major n x n).
 */
function sortDescending(d: Float64Array, Vt: Float64Array, n: number): EigenResult {
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => d[b] - d[a]);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    const src = order[c];
    values[c] = d[src];
    const so = src * n;
    for (let r = 0; r < n; r++) vectors[r * n + c] = Vt[so + r];
  }
  return { values, vectors, n };
}

/**
 * Eigen-decomposition of a symmetric n x n matrix (tridiagonal QL). Throws on non-finite input or if
 * the QL iteration fails to converge (it does not happen for finite symmetric input in practice; the
 * cap only guards against an endless loop).
 */
export function symmetricEigen(A: Float64Array, n: number): EigenResult {
  checkSquare(A, n, 'symmetricEigen');
  if (n === 0) return { values: new Float64Array(0), vectors: new Float64Array(0), n };
  // Work on the transpose (equal to A for symmetric input, but take it explicitly so that a slightly
  // asymmetric input is treated exactly as JAMA would treat it).
  const Vt = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) Vt[j * n + i] = A[i * n + j];
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  tred2(Vt, d, e, n, true);
  // tql2 rotates pairs of eigenvectors; stored as rows of Vt they are two contiguous rows.
  tql2(Vt, d, e, n);
  return sortDescending(d, Vt, n);
}

/** Eigenvalues only (descending) of a symmetric matrix: the same QL path without vector work. */
export function symmetricEigenvalues(A: Float64Array, n: number): Float64Array {
  checkSquare(A, n, 'symmetricEigenvalues');
  if (n === 0) return new Float64Array(0);
  const T = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) T[j * n + i] = A[i * n + j];
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  tred2(T, d, e, n, false);
  tql2(null, d, e, n);
  return d.sort().reverse();
}

/**
 * Householder reduction to tridiagonal form (JAMA tred2), in place. JAMA indexes V[row][col] with the
 * inner loops running down columns; here the array holds T = V^T, so that those loops run along
 * contiguous memory (a 512 x 512 reduction went from 0.9 s to a fraction of that). For symmetric input
 * T = A on entry; on exit T = V^T, i.e. the rows of T are the basis vectors that tql2 rotates.
 */
function tred2(T: Float64Array, d: Float64Array, e: Float64Array, n: number, vectors: boolean, reflectorScales?: Float64Array): void {
  for (let j = 0; j < n; j++) d[j] = T[j * n + (n - 1)];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = T[j * n + (i - 1)];
        T[j * n + i] = 0;
        T[i * n + j] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        T[i * n + j] = f;
        g = e[j] + T[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          const vkj = T[j * n + k];
          g += vkj * d[k];
          e[k] += vkj * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) T[j * n + k] -= f * e[k] + g * d[k];
        d[j] = T[j * n + (i - 1)];
        T[j * n + i] = 0;
      }
    }
    d[i] = h;
  }
  if (!vectors) {
    // The Householder vectors stay in the rows of T (row i + 1, entries 0..i) and their scales h in d.
    reflectorScales?.set(d);
    // Values only: the tridiagonal's diagonal sits on the diagonal of T; skip the accumulation.
    for (let j = 0; j < n; j++) d[j] = T[j * n + j];
    e[0] = 0;
    return;
  }
  // Accumulate the transformations.
  for (let i = 0; i < n - 1; i++) {
    T[i * n + (n - 1)] = T[i * n + i];
    T[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = T[(i + 1) * n + k] / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += T[(i + 1) * n + k] * T[j * n + k];
        for (let k = 0; k <= i; k++) T[j * n + k] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) T[(i + 1) * n + k] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = T[j * n + (n - 1)];
    T[j * n + (n - 1)] = 0;
  }
  T[(n - 1) * n + (n - 1)] = 1;
  e[0] = 0;
}

/**
 * Implicit QL on the tridiagonal (d, e) (JAMA tql2), rotating the eigenvectors held as ROWS of Vt.
 */
function tql2(Vt: Float64Array | null, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  const maxIter = 60;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n - 1) {
      if (Math.abs(e[m]) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > maxIter) throw new Error(`symmetricEigen: QL iteration did not converge (index ${l})`);
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          if (!Vt) continue;
          // Rotate eigenvectors i and i+1 (rows of Vt: contiguous).
          const ri = i * n;
          const ri1 = ri + n;
          for (let k = 0; k < n; k++) {
            const vk1 = Vt[ri1 + k];
            const vk = Vt[ri + k];
            Vt[ri1 + k] = s * vk + c * vk1;
            Vt[ri + k] = c * vk - s * vk1;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
}

/**
 * Cyclic Jacobi eigen-decomposition (row-cyclic sweeps with a threshold, until the off-diagonal mass
 * is at rounding level). O(n^3) per sweep, typically 6 to 10 sweeps: use for small n or to check.
 */
export function symmetricEigenJacobi(A: Float64Array, n: number, maxSweeps = 100): EigenResult {
  checkSquare(A, n, 'symmetricEigenJacobi');
  const a = Float64Array.from(A);
  // Symmetrize (the algorithm reads the upper triangle and keeps both halves in sync).
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (a[i * n + j] + a[j * n + i]);
      a[i * n + j] = v;
      a[j * n + i] = v;
    }
  }
  // Vt: eigenvectors as rows (rotation of two rows is contiguous).
  const Vt = new Float64Array(n * n);
  for (let i = 0; i < n; i++) Vt[i * n + i] = 1;
  let frob = 0;
  for (let i = 0; i < n * n; i++) frob += a[i] * a[i];
  const tol = 1e-30 * frob + Number.MIN_VALUE;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) off += a[i * n + j] * a[i * n + j];
    if (off <= tol) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const app = a[p * n + p];
        const aqq = a[q * n + q];
        // Skip rotations that cannot change anything in float64.
        if (Math.abs(apq) < 1e-18 * Math.sqrt(Math.abs(app * aqq)) && sweep > 3) {
          a[p * n + q] = 0;
          a[q * n + p] = 0;
          continue;
        }
        const theta = (aqq - app) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        // A <- J^T A J on rows/cols p, q.
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        rotateRows(a, p * n, q * n, n, c, s);
        a[p * n + q] = 0;
        a[q * n + p] = 0;
        rotateRows(Vt, p * n, q * n, n, c, s);
      }
    }
  }
  const d = new Float64Array(n);
  for (let i = 0; i < n; i++) d[i] = a[i * n + i];
  return sortDescending(d, Vt, n);
}

/**
 * All eigenvalues (descending) and the eigenvectors of the `kv` largest, for symmetric n x n input:
 * the Householder tridiagonalisation of {@link symmetricEigen}, eigenvalues by QL without vector work,
 * then each wanted vector by inverse iteration on the tridiagonal (LAPACK dstein: LU with partial
 * pivoting, vectors of close eigenvalues re-orthogonalised against each other) and one transformation
 * back. About (8/3) n^3 + 2 n^2 kv flops instead of ~9 n^3: the Ritz steps of the spectral pass need a
 * few dozen vectors of a few hundred.
 */
export function symmetricEigenTop(A: Float64Array, n: number, kv: number): EigenResult {
  checkSquare(A, n, 'symmetricEigenTop');
  const want = Math.max(0, Math.min(Math.floor(kv), n));
  if (n === 0) return { values: new Float64Array(0), vectors: new Float64Array(0), n };
  const Vt = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) Vt[j * n + i] = A[i * n + j];
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const h = new Float64Array(n);
  // No accumulation of the transformations (a third of the cost): the wanted vectors go back through the reflectors.
  tred2(Vt, d, e, n, false, h);
  // The tridiagonal: diagonal d, off-diagonal e[i] = T(i - 1, i) for i >= 1 (JAMA's layout before tql2).
  const diag = Float64Array.from(d);
  const off = new Float64Array(Math.max(0, n - 1));
  for (let i = 1; i < n; i++) off[i - 1] = e[i];
  const values = Float64Array.from(d);
  const ev = Float64Array.from(e);
  tql2(null, values, ev, n);
  values.sort().reverse();
  let tnorm = 0;
  for (let i = 0; i < n; i++) tnorm = Math.max(tnorm, Math.abs(diag[i]) + (i > 0 ? Math.abs(off[i - 1]) : 0) + (i < n - 1 ? Math.abs(off[i]) : 0));
  const eps = 2 ** -52;
  const ortol = 1e-3 * tnorm;
  const ys: Float64Array[] = [];
  let clusterStart = 0;
  let prevShift = Infinity;
  // Start vectors as dstein's: pseudo-random, a different one per eigenvalue (equal eigenvalues from equal
  // starts would give the same direction), from a fixed seed so results repeat.
  const rng = new Rng(0x7ea7);
  for (let j = 0; j < want; j++) {
    let lambda = values[j];
    if (j > 0 && values[j - 1] - values[j] >= ortol) clusterStart = j;
    // Equal eigenvalues get shifts a little apart, so that their solves differ (dstein's pertol).
    const pertol = 10 * eps * Math.max(Math.abs(lambda), tnorm * eps);
    if (prevShift - lambda < pertol) lambda = prevShift - pertol;
    prevShift = lambda;
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) y[i] = rng.nextUniform() - 0.5;
    for (let it = 0; it < 4; it++) {
      tridiagonalSolve(diag, off, lambda, y, tnorm, eps);
      for (let pass = 0; pass < 2; pass++) {
        for (let c = clusterStart; c < j; c++) {
          const yc = ys[c];
          let dotv = 0;
          for (let i = 0; i < n; i++) dotv += yc[i] * y[i];
          for (let i = 0; i < n; i++) y[i] -= dotv * yc[i];
        }
      }
      let nn = 0;
      for (let i = 0; i < n; i++) nn += y[i] * y[i];
      const inv = nn > 0 ? 1 / Math.sqrt(nn) : 0;
      for (let i = 0; i < n; i++) y[i] *= inv;
    }
    ys.push(y);
  }
  // Back to the original basis: x = V y with V = H_{n-1} ... H_1 (JAMA's accumulation order), H_{i+1} =
  // I - u u^T / h acting on entries 0..i, u in row i + 1 of Vt.
  const vectors = new Float64Array(n * want);
  for (let j = 0; j < want; j++) {
    const y = ys[j];
    for (let i = 0; i < n - 1; i++) {
      const hi = h[i + 1];
      if (hi === 0) continue;
      const uo = (i + 1) * n;
      let g = 0;
      for (let k = 0; k <= i; k++) g += Vt[uo + k] * y[k];
      const f = g / hi;
      for (let k = 0; k <= i; k++) y[k] -= f * Vt[uo + k];
    }
    for (let r = 0; r < n; r++) vectors[r * want + j] = y[r];
  }
  return { values, vectors, n: want };
}

/**
 * Solves (T - lambda I) x = b in place for the symmetric tridiagonal T (diagonal `diag`, off-diagonal
 * `off`) by Gaussian elimination with partial pivoting (LAPACK dgttrf + dgtts2); a zero pivot is
 * replaced by eps * ||T||, as inverse iteration wants.
 */
function tridiagonalSolve(diag: Float64Array, off: Float64Array, lambda: number, b: Float64Array, tnorm: number, eps: number): void {
  const n = diag.length;
  const dd = new Float64Array(n);
  const dl = new Float64Array(Math.max(0, n - 1));
  const du = new Float64Array(Math.max(0, n - 1));
  const du2 = new Float64Array(Math.max(0, n - 2));
  const swap = new Uint8Array(Math.max(0, n - 1));
  for (let i = 0; i < n; i++) dd[i] = diag[i] - lambda;
  for (let i = 0; i < n - 1; i++) {
    dl[i] = off[i];
    du[i] = off[i];
  }
  const tiny = eps * tnorm || Number.MIN_VALUE;
  for (let i = 0; i < n - 1; i++) {
    if (Math.abs(dd[i]) >= Math.abs(dl[i])) {
      if (dd[i] === 0) dd[i] = tiny;
      const fact = dl[i] / dd[i];
      dl[i] = fact;
      dd[i + 1] -= fact * du[i];
    } else {
      const fact = dd[i] / dl[i];
      dd[i] = dl[i];
      dl[i] = fact;
      const temp = du[i];
      du[i] = dd[i + 1];
      dd[i + 1] = temp - fact * dd[i + 1];
      if (i < n - 2) {
        du2[i] = du[i + 1];
        du[i + 1] = -fact * du[i + 1];
      }
      swap[i] = 1;
    }
  }
  if (dd[n - 1] === 0) dd[n - 1] = tiny;
  for (let i = 0; i < n - 1; i++) {
    if (!swap[i]) {
      b[i + 1] -= dl[i] * b[i];
    } else {
      const temp = b[i];
      b[i] = b[i + 1];
      b[i + 1] = temp - dl[i] * b[i];
    }
  }
  b[n - 1] /= dd[n - 1];
  if (n > 1) b[n - 2] = (b[n - 2] - du[n - 2] * b[n - 1]) / dd[n - 2];
  for (let i = n - 3; i >= 0; i--) b[i] = (b[i] - du[i] * b[i + 1] - du2[i] * b[i + 2]) / dd[i];
  // Inverse iteration grows the vector by 1/|lambda_error|: rescale so repeated solves cannot overflow.
  let max = 0;
  for (let i = 0; i < n; i++) max = Math.max(max, Math.abs(b[i]));
  if (max > 0 && Number.isFinite(max)) for (let i = 0; i < n; i++) b[i] /= max;
}
