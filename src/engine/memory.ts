/**
 * The worker's memory guard. The V8 heap cap (--max-old-space-size) does not cover typed-array buffers,
 * and those hold the tensor data: the spectral pass holds two whole matrices and their derived arrays at
 * once, and the diff pass one counter per row and column. A tensor too big for the engine's memory cap
 * would be allocated anyway, and the worker killed by the system (after pushing the machine into swap).
 * Before a job runs, the guard takes the largest per-tensor allocation of each pass from the job's analysis
 * plan (the headers alone, see analysis/plan.ts) and refuses the job, naming the tensor, its size and the cap, when it does not fit.
 */
import * as os from 'node:os';
import type { AnalysisPlan } from '../analysis/plan';

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

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0);
}

/**
 * Refuses an analysis whose largest tensor does not fit the budget, before anything big is allocated.
 * The plans are the job's own (one per checkpoint analysed): what each pass takes and needs comes from them.
 */
export function assertFitsMemory(plans: readonly AnalysisPlan[], budget: MemoryBudget = memoryBudget()): void {
  for (const plan of plans) {
    const need = plan.largestNeed();
    if (!need || need.bytes <= budget.bytes) continue;
    const advice = need.pass === 'spectral' ? 'run the diff pass only, or raise the cap' : 'the tensor shape is implausible for a model weight';
    throw new MemoryBudgetError(
      `tensor ${JSON.stringify(need.tensor)} (${need.shape.join(' x ')}, ${need.dtype}) needs about ${mb(need.bytes)} MB in the ${need.pass} pass, ` +
        `over ${budget.source} of ${mb(budget.bytes)} MB: ${advice}`,
      need.tensor,
      need.bytes,
      budget.bytes,
    );
  }
}
