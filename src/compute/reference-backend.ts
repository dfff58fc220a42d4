/**
 * The TypeScript reference backend: plain loops, float64 accumulation, results rounded to float32
 * once at the end (the float64 products keep all of it). It exists to check the fast backend in tests (and to run linalg tests without
 * native code); it is far too slow for real checkpoints, and nothing in production selects it.
 *
 * Operands are first copied into "op(A) rows" and "op(B) columns" so that every output entry is a
 * dot product of two contiguous float64 vectors: simple to trust, and fast enough for test sizes.
 */
import type { ComputeBackend, MatmulOptions, Matrix, Matrix64 } from './backend';
import { checkMatrix, checkMatrix64, matmulShape } from './backend';

/** op(X) as rows (r x c row-major float64), where op transposes when `trans`. */
function rowsOf(x: Matrix | Matrix64, trans: boolean): Float64Array {
  const { rows, cols, data } = x;
  const out = new Float64Array(rows * cols);
  if (!trans) {
    out.set(data);
    return out;
  }
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = data[i * cols + j];
  return out;
}

/** C (m x n, float64) = L R^T where L is m x k and R is n x k, both row-major. */
function dotAll(L: Float64Array, R: Float64Array, m: number, n: number, k: number): Float64Array {
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const li = i * k;
    for (let j = 0; j < n; j++) {
      const rj = j * k;
      let s = 0;
      for (let t = 0; t < k; t++) s += L[li + t] * R[rj + t];
      C[i * n + j] = s;
    }
  }
  return C;
}

export class ReferenceBackend implements ComputeBackend {
  readonly name = 'reference';
  readonly device = 'cpu' as const;

  /** The product in full float64 (before the final float32 rounding); used by tests for bounds. */
  matmulFloat64(a: Matrix, b: Matrix, opts?: MatmulOptions): { rows: number; cols: number; data: Float64Array } {
    checkMatrix(a, 'matmul A');
    checkMatrix(b, 'matmul B');
    const { m, k, n } = matmulShape(a, b, opts);
    const L = rowsOf(a, !!opts?.transA); // m x k
    const R = rowsOf(b, !opts?.transB); // n x k: columns of op(B)
    return { rows: m, cols: n, data: dotAll(L, R, m, n, k) };
  }

  async matmul(a: Matrix, b: Matrix, opts?: MatmulOptions): Promise<Matrix> {
    const c = this.matmulFloat64(a, b, opts);
    return { rows: c.rows, cols: c.cols, data: Float32Array.from(c.data) };
  }

  async gram(a: Matrix, side: 'AtA' | 'AAt'): Promise<Matrix> {
    return side === 'AtA' ? this.matmul(a, a, { transA: true }) : this.matmul(a, a, { transB: true });
  }

  async matmul64(a: Matrix64, b: Matrix64, opts?: MatmulOptions): Promise<Matrix64> {
    checkMatrix64(a, 'matmul64 A');
    checkMatrix64(b, 'matmul64 B');
    const { m, k, n } = matmulShape(a, b, opts);
    return { rows: m, cols: n, data: dotAll(rowsOf(a, !!opts?.transA), rowsOf(b, !opts?.transB), m, n, k) };
  }

  async gram64(a: Matrix64, side: 'AtA' | 'AAt'): Promise<Matrix64> {
    // dotAll sums (i, j) and (j, i) over the same two rows in the same order: exactly symmetric.
    return side === 'AtA' ? this.matmul64(a, a, { transA: true }) : this.matmul64(a, a, { transB: true });
  }

  async dispose(): Promise<void> {
    // nothing to release
  }
}

export function createReferenceBackend(): ComputeBackend & ReferenceBackend {
  return new ReferenceBackend();
}
