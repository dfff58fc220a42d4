/**
 * The worker's memory guard. The V8 heap cap (--max-old-space-size) does not cover typed-array buffers,
 * and those hold the tensor data: the spectral pass holds two whole matrices and their derived arrays at
 * once, and the diff pass one counter per row and column. A tensor too big for the engine's memory cap
 * would be allocated anyway, and the worker killed by the system (after pushing the machine into swap).
 * Before a job runs, the guard estimates the largest per-tensor allocation of each pass from the headers
 * alone and refuses the job, naming the tensor, its size and the cap, when it does not fit.
 */
import * as os from 'node:os';
import { Checkpoint } from '../formats/checkpoint';
import { bytesPerElement } from '../formats/dtype';
import { pairTensors } from '../analysis/diff';
import { classifyModule, isLinearWeight } from '../core/names';
import type { JobSpec } from './messages';

export class MemoryBudgetError extends Error {
  override readonly name = 'MemoryBudgetError';
  constructor(
    message: string,
    readonly tensor: string,
    readonly neededBytes: number,
    readonly budgetBytes: number,
  ) {
    super(message);
  }
}

export interface MemoryBudget {
  bytes: number;
  /** Where the number comes from, for the message. */
  source: string;
}

/** GATESCOPE_MAX_MEMORY_MB (the client's maxMemoryMb), else three quarters of the machine's memory. */
export function memoryBudget(env: NodeJS.ProcessEnv = process.env): MemoryBudget {
  const mb = Number(env.GATESCOPE_MAX_MEMORY_MB);
  if (Number.isFinite(mb) && mb > 0) return { bytes: mb * 2 ** 20, source: 'the engine memory cap' };
  return { bytes: Math.floor(os.totalmem() * 0.75), source: "three quarters of this machine's memory" };
}

/**
 * Bytes per element the spectral pass holds at once for one matrix pair, besides the raw data of both:
 * float32 copies of W0 and W1 (8), dW (4), the rank-k reconstruction (4), the magnitude selection's scratch
 * (8), and the changed, principal, low-magnitude, principal-not-low and exponent-group masks (5).
 */
export const SPECTRAL_BYTES_PER_ELEMENT = 45;

export interface TensorNeed {
  tensor: string;
  shape: number[];
  dtype: string;
  pass: 'diff' | 'spectral';
  bytes: number;
}

/** The largest per-tensor allocation of an analysis of `ckptPath` against `basePath`, from the headers. */
export async function largestNeed(basePath: string, ckptPath: string, passes: 'diff' | 'full'): Promise<TensorNeed | undefined> {
  const base = await Checkpoint.open(basePath);
  let ckpt: Checkpoint | undefined;
  try {
    ckpt = await Checkpoint.open(ckptPath);
    let worst: TensorNeed | undefined;
    const consider = (n: TensorNeed): void => {
      if (!worst || n.bytes > worst.bytes) worst = n;
    };
    for (const [name, a, b] of pairTensors(base, ckpt).pairs) {
      const shape = a.info.shape;
      const dtype = a.info.dtype === b.info.dtype ? a.info.dtype : `${a.info.dtype}->${b.info.dtype}`;
      // The diff pass streams the data; per tensor it keeps a changed counter per row and per column.
      if (shape.length === 2) consider({ tensor: name, shape, dtype, pass: 'diff', bytes: (shape[0] + shape[1]) * 4 });
      if (passes === 'full' && isLinearWeight(name, shape, classifyModule(name)) && Math.min(shape[0], shape[1]) >= 2) {
        const numel = a.info.numel;
        const bytes = numel * (bytesPerElement(a.info.dtype) + bytesPerElement(b.info.dtype) + SPECTRAL_BYTES_PER_ELEMENT);
        consider({ tensor: name, shape, dtype, pass: 'spectral', bytes });
      }
    }
    return worst;
  } finally {
    await base.close();
    await ckpt?.close();
  }
}

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0);
}

/** Refuses an analysis whose largest tensor does not fit the budget, before anything big is allocated. */
export async function assertFitsMemory(spec: JobSpec, budget: MemoryBudget = memoryBudget()): Promise<void> {
  if (spec.kind === 'compare' && spec.settings) {
    for (const c of spec.checkpoints)
      await assertFitsMemory(
        { kind: 'analyze', base: spec.base, checkpoint: c, passes: 'full', settings: spec.settings, device: spec.device ?? 'auto' },
        budget,
      );
    return;
  }
  if (spec.kind !== 'analyze') return;
  const need = await largestNeed(spec.base, spec.checkpoint, spec.passes);
  if (!need || need.bytes <= budget.bytes) return;
  const advice = need.pass === 'spectral' ? 'run the diff pass only, or raise the cap' : 'the tensor shape is implausible for a model weight';
  throw new MemoryBudgetError(
    `tensor ${JSON.stringify(need.tensor)} (${need.shape.join(' x ')}, ${need.dtype}) needs about ${mb(need.bytes)} MB in the ${need.pass} pass, ` +
      `over ${budget.source} of ${mb(budget.bytes)} MB: ${advice}`,
    need.tensor,
    need.bytes,
    budget.bytes,
  );
}
