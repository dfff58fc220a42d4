/**
 * The bf16 diff kernel in WebAssembly SIMD (`kernels/bf16-diff.ts`, built to `dist/bf16-diff.wasm`). It
 * computes what `accumulateBf16Js` computes, eight entries per instruction, and is what the diff and
 * step-to-step passes use for bf16 pairs. Counts, the ULP histogram and the largest update are identical
 * to the reference; the sums of squares are added in a different order (float64 either way).
 *
 * Each pass makes its own instance whose memory also holds the pass's read buffers, so chunks are read
 * straight into the kernel's memory and never copied. The memory is sized once and never grows (growing
 * would detach the buffers while reads are in flight). Arrays outside that memory (tests, small callers)
 * are copied in, in pieces.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { TensorAccumulator } from './diff';

const PAGE = 65536;
/** The first page is the kernel module's (it has no data, but the stub runtime's heap base points there). */
const BASE = PAGE;
const OUT_BYTES = 64;
/** Four copies of the 65536-bin histogram (see the kernel); the accumulator's travels in and out of the first. */
const HIST_BYTES = 4 * 65536 * 4;
/** Entries copied in per call for arrays outside the kernel's memory. */
const SCRATCH_ENTRIES = 1 << 16;
/** Columns the kernel counts itself; wider 2-D tensors (none in a transformer) use the reference kernel. */
export const MAX_KERNEL_COLUMNS = 1 << 20;

type AccumulateFn = (
  p0: number,
  p1: number,
  n: number,
  col0: number,
  ncols: number,
  lines: number,
  cols: number,
  rows: number,
  hist: number,
  out: number,
) => void;

let compiled: WebAssembly.Module | null | undefined;
let compileProblem: string | undefined;

/** Beside the bundle (dist/*.js), or the build's dist/ for the compiled sources (out/src/analysis). */
function wasmFile(): string | undefined {
  const candidates = [path.join(__dirname, 'bf16-diff.wasm'), path.join(__dirname, '..', '..', '..', 'dist', 'bf16-diff.wasm')];
  return candidates.find((p) => existsSync(p));
}

function module(): WebAssembly.Module | null {
  if (compiled !== undefined) return compiled;
  const file = wasmFile();
  if (!file) {
    compileProblem = 'dist/bf16-diff.wasm was not found (run the build)';
    compiled = null;
    return null;
  }
  try {
    compiled = new WebAssembly.Module(readFileSync(file));
  } catch (e) {
    // A runtime without WebAssembly SIMD rejects the module at compile time.
    compileProblem = `${file}: ${(e as Error).message}`;
    compiled = null;
  }
  return compiled;
}

/** Which kernel bf16 pairs get in this thread, and why not the SIMD one when it is not. */
export function bf16KernelKind(): { kind: 'wasm-simd' | 'js'; reason?: string } {
  return module() ? { kind: 'wasm-simd' } : { kind: 'js', reason: compileProblem };
}

export class Bf16Kernel {
  /** Read buffers inside the kernel's memory, as asked for at creation. */
  readonly buffers: Uint8Array[];
  private readonly memory: WebAssembly.Memory;
  private readonly fn: AccumulateFn;
  private readonly out: Float64Array;
  private readonly hist: Uint32Array;
  private readonly cols: Uint32Array;
  private readonly rows: Uint32Array;
  private readonly scratch: [Uint16Array, Uint16Array];
  private readonly maxEntries: number;
  private readonly at: { out: number; hist: number; cols: number; rows: number };

  /** A kernel whose memory holds buffers of these sizes (bytes); undefined where WebAssembly SIMD is not available. */
  static create(bufferBytes: readonly number[] = []): Bf16Kernel | undefined {
    const m = module();
    return m ? new Bf16Kernel(m, bufferBytes) : undefined;
  }

  private constructor(m: WebAssembly.Module, bufferBytes: readonly number[]) {
    const align = (x: number): number => Math.ceil(x / 64) * 64;
    this.maxEntries = Math.max(SCRATCH_ENTRIES, ...bufferBytes.map((b) => Math.floor(b / 2)));
    let p = BASE;
    const out = p;
    p = align(p + OUT_BYTES);
    const hist = p;
    p = align(p + HIST_BYTES);
    const cols = p;
    p = align(p + MAX_KERNEL_COLUMNS * 4);
    const rows = p;
    p = align(p + (this.maxEntries + 2) * 4);
    const scratch = [p, align(p + SCRATCH_ENTRIES * 2)];
    p = align(scratch[1] + SCRATCH_ENTRIES * 2);
    const bufferAt: number[] = [];
    for (const b of bufferBytes) {
      bufferAt.push(p);
      p = align(p + b);
    }
    const pages = Math.ceil(p / PAGE);
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
    const instance = new WebAssembly.Instance(m, {
      env: {
        memory: this.memory,
        abort: () => {
          throw new Error('bf16 kernel aborted');
        },
      },
    });
    this.fn = instance.exports.accumulate as AccumulateFn;
    const buf = this.memory.buffer;
    this.at = { out, hist, cols, rows };
    this.out = new Float64Array(buf, out, 8);
    this.hist = new Uint32Array(buf, hist, 65536);
    this.cols = new Uint32Array(buf, cols, MAX_KERNEL_COLUMNS);
    this.rows = new Uint32Array(buf, rows, this.maxEntries + 2);
    this.scratch = [new Uint16Array(buf, scratch[0], SCRATCH_ENTRIES), new Uint16Array(buf, scratch[1], SCRATCH_ENTRIES)];
    this.buffers = bufferBytes.map((b, i) => new Uint8Array(buf, bufferAt[i], b));
  }

  /** Whether this kernel can take the tensor of `acc` (2-D tensors up to MAX_KERNEL_COLUMNS wide). */
  accepts(acc: TensorAccumulator): boolean {
    return !acc.is2d || acc.ncols <= MAX_KERNEL_COLUMNS;
  }

  /** Adds the entry pairs of b0/b1, whose first entry is entry `startIndex` of the tensor, to `acc`. */
  accumulate(acc: TensorAccumulator, b0: Uint16Array, b1: Uint16Array, startIndex: number): void {
    const n = b0.length;
    const resident = b0.buffer === this.memory.buffer && b1.buffer === this.memory.buffer && n <= this.maxEntries;
    if (resident) {
      this.run(acc, b0.byteOffset, b1.byteOffset, n, startIndex);
      return;
    }
    for (let s = 0; s < n; s += SCRATCH_ENTRIES) {
      const e = Math.min(n, s + SCRATCH_ENTRIES);
      this.scratch[0].set(b0.subarray(s, e));
      this.scratch[1].set(b1.subarray(s, e));
      this.run(acc, this.scratch[0].byteOffset, this.scratch[1].byteOffset, e - s, startIndex + s);
    }
  }

  private run(acc: TensorAccumulator, p0: number, p1: number, n: number, startIndex: number): void {
    if (n === 0) return;
    const lines = acc.is2d ? 1 : 0;
    const ncols = acc.ncols;
    const col0 = startIndex % ncols;
    const row0 = (startIndex - col0) / ncols;
    // The accumulator's counters travel in and out: a pass interleaves the tensors of several accumulators.
    const cols = lines ? this.cols.subarray(0, ncols) : undefined;
    if (cols) cols.set(acc.cols);
    this.hist.set(acc.hist.counts);
    this.fn(p0, p1, n, col0, ncols, lines, this.at.cols, this.at.rows, this.at.hist, this.at.out);
    acc.hist.counts.set(this.hist);
    const o = this.out;
    if (cols) {
      acc.cols.set(cols);
      const touched = o[6];
      const rows = acc.rows;
      for (let r = 0; r < touched; r++) rows[row0 + r] += this.rows[r];
    } else {
      acc.rows[0] += o[0];
    }
    const changed = o[0];
    const nonFinite = o[1];
    const finite = n - nonFinite;
    acc.changed += changed;
    acc.nonFinite += nonFinite;
    acc.finite += finite;
    acc.unchangedAbs += finite - o[2];
    acc.dSq += o[3];
    acc.baseSq += o[4];
    acc.maxAbs = Math.max(acc.maxAbs, o[5]);
    acc.hist.total += changed;
  }
}

let shared: Bf16Kernel | null | undefined;

/** The thread's kernel for arrays that live elsewhere (copied in); undefined without WebAssembly SIMD. */
export function sharedBf16Kernel(): Bf16Kernel | undefined {
  if (shared === undefined) shared = Bf16Kernel.create() ?? null;
  return shared ?? undefined;
}
