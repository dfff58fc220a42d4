/**
 * Dense float32 row-major matrices and the helpers to make and check them: a leaf module (it imports
 * nothing), shared by the backends (./backend, ./ort-backend, ./reference-backend) and src/linalg.
 */

/** A dense float32 matrix, row-major: element (i, j) is `data[i * cols + j]`. */
export interface Matrix {
  rows: number;
  cols: number;
  data: Float32Array;
}

/**
 * A dense float64 matrix, row-major: for the small-side algebra whose inputs must not be rounded (the
 * Ritz problems' Gram matrices and vectors), where a float32 product's 1e-7 would show in the answer.
 */
export interface Matrix64 {
  rows: number;
  cols: number;
  data: Float64Array;
}

export interface MatmulOptions {
  /** Use A^T instead of A. */
  transA?: boolean;
  /** Use B^T instead of B. */
  transB?: boolean;
}

// Helpers to make and check matrices. They allocate once per matrix, never per element.

/** Throws unless `m` is a well-formed matrix (integer non-negative dims, data length rows*cols). */
export function checkMatrix(m: Matrix, what = 'matrix'): void {
  checkShape(m, Float32Array, what);
}

/** {@link checkMatrix} for a float64 matrix. */
export function checkMatrix64(m: Matrix64, what = 'matrix'): void {
  checkShape(m, Float64Array, what);
}

function checkShape(m: Matrix | Matrix64, type: Float32ArrayConstructor | Float64ArrayConstructor, what: string): void {
  if (!Number.isInteger(m.rows) || !Number.isInteger(m.cols) || m.rows < 0 || m.cols < 0) {
    throw new Error(`${what}: invalid shape ${m.rows} x ${m.cols}`);
  }
  if (!(m.data instanceof type)) throw new Error(`${what}: data must be a ${type.name}`);
  if (m.data.length !== m.rows * m.cols) {
    throw new Error(`${what}: data length ${m.data.length} does not match shape ${m.rows} x ${m.cols}`);
  }
}

/** A matrix over existing data (no copy) or a new zero matrix when `data` is omitted. */
export function createMatrix(rows: number, cols: number, data?: Float32Array): Matrix {
  const m: Matrix = { rows, cols, data: data ?? new Float32Array(rows * cols) };
  checkMatrix(m);
  return m;
}

/** Rounds a float64 row-major array to a float32 matrix (one copy). */
export function matrixFromFloat64(rows: number, cols: number, data: Float64Array): Matrix {
  if (data.length !== rows * cols) throw new Error(`matrixFromFloat64: length ${data.length} != ${rows} x ${cols}`);
  return { rows, cols, data: Float32Array.from(data) };
}

/** Builds a matrix from nested rows (tests, small constants). */
export function matrixFromRows(rowsIn: ArrayLike<ArrayLike<number>>): Matrix {
  const rows = rowsIn.length;
  const cols = rows === 0 ? 0 : rowsIn[0].length;
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const r = rowsIn[i];
    if (r.length !== cols) throw new Error(`matrixFromRows: row ${i} has ${r.length} entries, expected ${cols}`);
    for (let j = 0; j < cols; j++) data[i * cols + j] = r[j];
  }
  return { rows, cols, data };
}

/** Widens a matrix to float64 (one copy), for the float64 algebra of src/linalg. */
export function matrixToFloat64(m: Matrix): Float64Array {
  return Float64Array.from(m.data);
}

/** The same matrix as a float64 {@link Matrix64} (one exact copy). */
export function widenMatrix(m: Matrix): Matrix64 {
  return { rows: m.rows, cols: m.cols, data: Float64Array.from(m.data) };
}

/**
 * Explicit transpose (one copy), blocked so that both the reads and the writes stay in cache for
 * large matrices. The backends never need it (they take transpose flags); it is for callers that
 * must hand a transposed layout onwards.
 */
export function transposeMatrix(m: Matrix): Matrix {
  const { rows, cols, data } = m;
  const out = new Float32Array(rows * cols);
  const B = 32;
  for (let i0 = 0; i0 < rows; i0 += B) {
    const i1 = Math.min(rows, i0 + B);
    for (let j0 = 0; j0 < cols; j0 += B) {
      const j1 = Math.min(cols, j0 + B);
      for (let i = i0; i < i1; i++) {
        const ri = i * cols;
        for (let j = j0; j < j1; j++) out[j * rows + i] = data[ri + j];
      }
    }
  }
  return { rows: cols, cols: rows, data: out };
}

/** Output shape of op(A) op(B); throws a clear error when the inner dimensions disagree. */
export function matmulShape(a: Matrix | Matrix64, b: Matrix | Matrix64, opts?: MatmulOptions): { m: number; k: number; n: number } {
  const m = opts?.transA ? a.cols : a.rows;
  const ka = opts?.transA ? a.rows : a.cols;
  const kb = opts?.transB ? b.cols : b.rows;
  const n = opts?.transB ? b.rows : b.cols;
  if (ka !== kb) {
    throw new Error(
      `matmul: inner dimensions differ: op(A) is ${m} x ${ka}, op(B) is ${kb} x ${n}` +
        ` (A ${a.rows} x ${a.cols}${opts?.transA ? ' transposed' : ''}, B ${b.rows} x ${b.cols}${opts?.transB ? ' transposed' : ''})`,
    );
  }
  return { m, k: ka, n };
}
