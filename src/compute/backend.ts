/**
 * The compute backend: the one narrow door through which heavy numeric work (large matrix products)
 * leaves TypeScript. The analysis code asks for products and Gram matrices; whether they run on the
 * onnxruntime CPU provider, on CUDA, or in the slow TypeScript reference (tests only) is decided here,
 * so CPU and GPU share one code path (see the architecture notes in the README).
 *
 * Products are float32 and row-major, like the checkpoints themselves and like the tensors
 * onnxruntime takes without a copy. The float64 products (`matmul64`, `gram64`) serve the small side of
 * the spectral pass, whose inputs are already exact float64 and must stay so (Gram matrices of the Ritz
 * problems, their vectors): there the backend's blocked DGEMM is 3-5x faster than a TypeScript loop and
 * exactly as accurate. Precision-sensitive small algebra (QR, eigen, SVD of small factors) lives in
 * `src/linalg/` in float64.
 *
 * No file under src/compute may import `vscode`: the CLI, the worker and the unit tests load it.
 */

import type { MatmulOptions, Matrix, Matrix64 } from './matrix';

// The matrix helpers live in ./matrix (no imports of their own), so that the onnxruntime backend and the
// linear algebra use them without importing this module back.
export * from './matrix';

/** User setting for where heavy products run. `auto` = CUDA when it works, else CPU (logged once). */
export type DeviceSetting = 'auto' | 'cpu' | 'cuda';

export interface ComputeBackend {
  /** e.g. 'onnxruntime-cpu', 'onnxruntime-cuda', 'reference'. */
  readonly name: string;
  readonly device: 'cpu' | 'cuda';
  /** C = op(A) op(B), op = transpose when asked. Throws on a shape mismatch. */
  matmul(a: Matrix, b: Matrix, opts?: MatmulOptions): Promise<Matrix>;
  /** A^T A (side 'AtA', cols x cols) or A A^T (side 'AAt', rows x rows). */
  gram(a: Matrix, side: 'AtA' | 'AAt'): Promise<Matrix>;
  /** {@link matmul} in float64 throughout (inputs, accumulation, output). */
  matmul64(a: Matrix64, b: Matrix64, opts?: MatmulOptions): Promise<Matrix64>;
  /** {@link gram} in float64 throughout; the result is exactly symmetric. */
  gram64(a: Matrix64, side: 'AtA' | 'AAt'): Promise<Matrix64>;
  /** Releases sessions and native memory. The backend must not be used afterwards. */
  dispose(): Promise<void>;
}

export interface CreateBackendOptions {
  device: DeviceSetting;
  /**
   * Threads for one product (onnxruntime intraOpNumThreads). Omitted or 0: onnxruntime's default
   * (one per physical core). Set it lower when other work shares the machine.
   */
  threads?: number;
  /** Receives human-readable lines (e.g. why `auto` fell back to the CPU). */
  log?: (line: string) => void;
}

/**
 * Creates the fast backend for a device setting.
 *
 * - `cpu`: onnxruntime with the CPU execution provider.
 * - `cuda`: onnxruntime with the CUDA execution provider; rejects with a clear error when CUDA cannot
 *   be used (provider library missing, no GPU, driver mismatch...).
 * - `auto`: tries CUDA, and when that fails uses the CPU, logging exactly one line that says why.
 *
 * onnxruntime-node is loaded lazily, so that importing this module costs nothing until a backend is
 * really needed (the CLI's table-only commands never pay for the native module).
 */
export async function createBackend(opts: CreateBackendOptions): Promise<ComputeBackend> {
  const { createOrtBackend } = await import('./ort-backend');
  return createOrtBackend(opts);
}
