/**
 * The onnxruntime implementation of {@link ComputeBackend}: the fast path for every large product.
 *
 * - One InferenceSession per graph kind and precision (see onnx-graphs.ts), created on first use and cached on the
 *   backend instance: session creation (graph parse, optimisation, kernel selection) costs
 *   milliseconds, a product of a 74 x 8960 panel with a 8960 x 1536 weight costs about as much, so
 *   sessions must be reused.
 * - Symbolic shapes: one session serves all sizes.
 * - `intraOpNumThreads` comes from the caller (`threads`), graph optimisation is 'all', execution is
 *   sequential (one node per graph: inter-op threads would only idle).
 * - Inputs are wrapped, not copied (ort.Tensor over the caller's Float32Array); the output buffer is
 *   the one onnxruntime returns.
 *
 * CUDA: `createOrtBackend({ device: 'cuda' })` builds a session with the CUDA execution provider and
 * runs a 1 x 1 probe product; any failure there becomes one clear error. `auto` does the same and on
 * failure logs one line with the reason and returns the CPU backend.
 */
import * as ort from 'onnxruntime-node';
import type { ComputeBackend, CreateBackendOptions } from './backend';
import { checkMatrix, checkMatrix64, matmulShape, type MatmulOptions, type Matrix, type Matrix64 } from './matrix';
import { DeviceUnavailableError } from './errors';
import { GraphKind, GraphPrecision, INPUT_A, INPUT_B, OUTPUT_C, buildGraph, matmulKind } from './onnx-graphs';

// Keep onnxruntime from phoning home, before any session exists.
process.env.ORT_DISABLE_TELEMETRY = '1';
// onnxruntime's process-wide logger writes straight to stderr, and a failed CUDA probe (the normal case
// on a machine without a GPU) would print two red native lines there. Every failure also reaches us as
// an exception, which we report once in our own words, so the native logger is limited to fatal
// errors. (Set before the first session: onnxruntime reads it once, at initialisation.)
ort.env.logLevel = 'fatal';

type Provider = 'cpu' | 'cuda';

function sessionOptions(
  provider: Provider,
  threads: number | undefined,
  quiet: boolean,
  spinning = process.env.GATESCOPE_ORT_SPIN === '1',
): ort.InferenceSession.SessionOptions {
  const executionProviders: ort.InferenceSession.ExecutionProviderConfig[] = provider === 'cuda' ? [{ name: 'cuda', deviceId: 0 }] : [{ name: 'cpu' }];
  return {
    executionProviders,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads !== undefined && threads > 0 ? Math.floor(threads) : 0,
    interOpNumThreads: 1,
    // 3 = errors only; the CUDA probe is fully quiet (4 = fatal) because its failure is expected on
    // machines without a GPU and is reported once, in our own words.
    logSeverityLevel: quiet ? 4 : 3,
    // No busy-waiting between products: our products are issued one at a time with TypeScript work in
    // between, and on a shared machine (the extension host, other jobs) spinning pool threads steal the
    // cores that TypeScript work and the next product need. Measured on 2 shared cores: the 1536 x 8960
    // SVD took 2x longer with spinning on. GATESCOPE_ORT_SPIN=1 turns spinning back on (benchmarks).
    extra: { session: { intra_op: { allow_spinning: spinning ? '1' : '0' } } },
  };
}

export class OrtBackend implements ComputeBackend {
  readonly name: string;
  readonly device: Provider;
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();
  private disposed = false;

  constructor(
    provider: Provider,
    private readonly threads: number | undefined,
  ) {
    this.device = provider;
    this.name = `onnxruntime-${provider}`;
  }

  /** The cached session for a graph kind and precision (created on first use, shared by concurrent callers). */
  session(kind: GraphKind, quiet = false, precision: GraphPrecision = 'float32'): Promise<ort.InferenceSession> {
    if (this.disposed) return Promise.reject(new Error(`${this.name}: backend used after dispose()`));
    const key = `${kind}:${precision}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = ort.InferenceSession.create(buildGraph(kind, precision), sessionOptions(this.device, this.threads, quiet));
      // A failed creation must not poison the cache.
      s.catch(() => this.sessions.delete(key));
      this.sessions.set(key, s);
    }
    return s;
  }

  async matmul(a: Matrix, b: Matrix, opts?: MatmulOptions): Promise<Matrix> {
    checkMatrix(a, 'matmul A');
    checkMatrix(b, 'matmul B');
    const { m, k, n } = matmulShape(a, b, opts);
    // Empty products: onnxruntime kernels are not guaranteed to accept zero-sized dims.
    if (m === 0 || n === 0 || k === 0) return { rows: m, cols: n, data: new Float32Array(m * n) };
    const kind = matmulKind(!!opts?.transA, !!opts?.transB);
    const session = await this.session(kind);
    const out = await session.run({ [INPUT_A]: toTensor(a), [INPUT_B]: toTensor(b) });
    return fromTensor(out[OUTPUT_C], m, n);
  }

  async gram(a: Matrix, side: 'AtA' | 'AAt'): Promise<Matrix> {
    checkMatrix(a, 'gram A');
    const d = side === 'AtA' ? a.cols : a.rows;
    const r = side === 'AtA' ? a.rows : a.cols;
    if (d === 0 || r === 0) return { rows: d, cols: d, data: new Float32Array(d * d) };
    const session = await this.session(side === 'AtA' ? 'gram_AtA' : 'gram_AAt');
    const out = await session.run({ [INPUT_A]: toTensor(a) });
    return fromTensor(out[OUTPUT_C], d, d);
  }

  async matmul64(a: Matrix64, b: Matrix64, opts?: MatmulOptions): Promise<Matrix64> {
    checkMatrix64(a, 'matmul64 A');
    checkMatrix64(b, 'matmul64 B');
    const { m, k, n } = matmulShape(a, b, opts);
    if (m === 0 || n === 0 || k === 0) return { rows: m, cols: n, data: new Float64Array(m * n) };
    const session = await this.session(matmulKind(!!opts?.transA, !!opts?.transB), false, 'float64');
    const out = await session.run({ [INPUT_A]: toTensor64(a), [INPUT_B]: toTensor64(b) });
    return fromTensor64(out[OUTPUT_C], m, n);
  }

  async gram64(a: Matrix64, side: 'AtA' | 'AAt'): Promise<Matrix64> {
    checkMatrix64(a, 'gram64 A');
    const d = side === 'AtA' ? a.cols : a.rows;
    const r = side === 'AtA' ? a.rows : a.cols;
    if (d === 0 || r === 0) return { rows: d, cols: d, data: new Float64Array(d * d) };
    const session = await this.session(side === 'AtA' ? 'gram_AtA' : 'gram_AAt', false, 'float64');
    const out = await session.run({ [INPUT_A]: toTensor64(a) });
    const g = fromTensor64(out[OUTPUT_C], d, d);
    // A blocked GEMM need not sum entry (i, j) in the same order as (j, i): the eigen-solvers downstream
    // want an exactly symmetric matrix, so the two halves are averaged (a change at rounding level).
    symmetrize(g.data, d);
    return g;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const p of all) {
      try {
        await (await p).release();
      } catch {
        // a session that failed to build has nothing to release
      }
    }
  }
}

function toTensor(m: Matrix): ort.Tensor {
  return new ort.Tensor('float32', m.data, [m.rows, m.cols]);
}

function fromTensor(t: ort.Tensor | undefined, rows: number, cols: number): Matrix {
  return { rows, cols, data: outputData(t, Float32Array, 'float32', rows, cols) };
}

function toTensor64(m: Matrix64): ort.Tensor {
  return new ort.Tensor('float64', m.data, [m.rows, m.cols]);
}

function fromTensor64(t: ort.Tensor | undefined, rows: number, cols: number): Matrix64 {
  return { rows, cols, data: outputData(t, Float64Array, 'float64', rows, cols) };
}

/** The output's data, checked to be of the graph's element type and rows x cols long. */
function outputData<T extends Float32Array | Float64Array>(
  t: ort.Tensor | undefined,
  type: new (n: number) => T,
  typeName: string,
  rows: number,
  cols: number,
): T {
  if (!t) throw new Error('onnxruntime returned no output');
  const data = t.data;
  if (!(data instanceof type)) throw new Error(`onnxruntime returned ${t.type}, expected ${typeName}`);
  if (data.length !== rows * cols) {
    throw new Error(`onnxruntime returned ${data.length} values, expected ${rows} x ${cols}`);
  }
  return data;
}

/** Makes the square d x d row-major matrix G exactly symmetric by averaging mirrored entries. */
function symmetrize(G: Float64Array, d: number): void {
  for (let i = 0; i < d; i++) {
    for (let j = i + 1; j < d; j++) {
      const v = 0.5 * (G[i * d + j] + G[j * d + i]);
      G[i * d + j] = v;
      G[j * d + i] = v;
    }
  }
}

/** One line of text for an unknown thrown value (first line only: native errors can be long). */
function reason(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const first = msg.split('\n').find((l) => l.trim().length > 0) ?? 'unknown error';
  return first.trim();
}

/** Builds a CUDA backend and proves it works with a 1 x 1 product; throws with the reason otherwise. */
async function tryCuda(threads: number | undefined): Promise<OrtBackend> {
  const backend = new OrtBackend('cuda', threads);
  try {
    await backend.session('matmul_nn', true);
    const one: Matrix = { rows: 1, cols: 1, data: new Float32Array([2]) };
    const c = await backend.matmul(one, one);
    if (c.data[0] !== 4) throw new Error(`probe product returned ${c.data[0]}, expected 4`);
    return backend;
  } catch (err) {
    await backend.dispose();
    throw err;
  }
}

/** See {@link createBackend} in backend.ts (the public entry point; this is its lazy half). */
export async function createOrtBackend(opts: CreateBackendOptions): Promise<ComputeBackend> {
  const threads = opts.threads;
  switch (opts.device) {
    case 'cpu':
      return new OrtBackend('cpu', threads);
    case 'cuda':
      try {
        return await tryCuda(threads);
      } catch (err) {
        throw new DeviceUnavailableError(
          `CUDA compute was requested (device 'cuda') but onnxruntime could not use it: ${reason(err)}. ` +
            `It needs an NVIDIA GPU, a matching CUDA/cuDNN runtime and the onnxruntime-node CUDA provider ` +
            `(install with ONNXRUNTIME_NODE_INSTALL=cuda12). Use device 'auto' or 'cpu' to run on the CPU.`,
          { cause: err },
        );
      }
    case 'auto':
      try {
        return await tryCuda(threads);
      } catch (err) {
        opts.log?.(`compute: CUDA not available (${reason(err)}); using onnxruntime on the CPU.`);
        return new OrtBackend('cpu', threads);
      }
    default: {
      const never: never = opts.device;
      throw new Error(`unknown compute device setting: ${String(never)}`);
    }
  }
}
