/**
 * The diff pass on several threads: tensors are shared out between worker threads by size; each thread
 * borrows the plan's open files (their descriptors and parsed headers: nothing is opened or parsed again)
 * and streams its tensors; results come back in tensor order.
 * The pass is compute-bound in one thread (see BENCHMARKS.md), so two threads on two cores nearly halve it.
 */
import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import type { SharedCheckpoint } from '../formats/checkpoint';
import { CheckpointFormatError, type FormatProblem } from '../formats/errors';
import { diffCheckpoints, type DiffKernelChoice, type DiffOptions, type DiffResult } from './diff';
import type { AnalysisPlan } from './plan';
import { MergedWeight, shareAdapterView, type SharedAdapterView } from './adapter';
import type { TensorDiff } from '../report/schema';

export interface ThreadJob {
  /** The plan's checkpoints, borrowed: the main thread keeps them open until every thread has ended. */
  base: SharedCheckpoint;
  /** The checkpoint's files, or for a LoRA adapter the view to build over the borrowed base. */
  checkpoint: SharedCheckpoint | { adapter: SharedAdapterView };
  passes: 'diff' | 'full';
  names: string[];
  eta: number;
  chunkElements?: number;
  kernel?: DiffKernelChoice;
}

/** How a thread ends: every pass's thread script posts one of these last. */
export type ThreadEnd =
  { type: 'done' } | { type: 'error'; message: string; name?: string; format?: { file: string; problem: FormatProblem; detail: string; tensor?: string } };

export type ThreadMessage = { type: 'tensor'; tensor: TensorDiff; bytes: number } | ThreadEnd;

/** A thread's error as this thread's error: a format problem keeps its file and problem. */
function errorOfThread(m: Extract<ThreadEnd, { type: 'error' }>): Error {
  return m.format ? new CheckpointFormatError(m.format.file, m.format.problem, m.format.detail, m.format.tensor) : new Error(m.message);
}

/**
 * One worker thread of `script` per job, all at once; every message but the last goes to `onMessage`.
 * Resolves when every thread has posted 'done'; the first failure (or an abort) terminates them all.
 */
export async function runThreads<M extends { type: string }>(
  script: string,
  jobs: readonly unknown[],
  what: string,
  onMessage: (m: M) => void,
  signal?: AbortSignal,
  errorOf: (m: Extract<ThreadEnd, { type: 'error' }>) => Error = errorOfThread,
): Promise<void> {
  const workers: Worker[] = [];
  const terminating: Promise<number>[] = [];
  const abort = (): void => {
    for (const w of workers) terminating.push(w.terminate());
  };
  signal?.addEventListener('abort', abort, { once: true });
  try {
    await Promise.all(
      jobs.map(
        (job) =>
          new Promise<void>((resolve, reject) => {
            const w = new Worker(script, { workerData: job });
            workers.push(w);
            let finished = false;
            w.on('message', (m: M | ThreadEnd) => {
              if (m.type === 'done') {
                finished = true;
                resolve();
              } else if (m.type === 'error' && 'message' in m) {
                finished = true;
                reject(errorOf(m));
              } else {
                onMessage(m as M);
              }
            });
            w.on('error', (e) => {
              finished = true;
              reject(e);
            });
            w.on('exit', (code) => {
              if (finished) return;
              if (signal?.aborted) reject(signal.reason ?? new Error('aborted'));
              else reject(new Error(`${what} thread exited with code ${code}`));
            });
          }),
      ),
    );
  } catch (e) {
    abort();
    // A thread may hold a descriptor its caller is about to close: return only once every thread has stopped.
    await Promise.allSettled(terminating);
    signal?.throwIfAborted();
    throw e;
  } finally {
    signal?.removeEventListener('abort', abort);
  }
}

/** The bundled thread script next to the running bundle (dist/diff-thread.js), if there is one. */
export function defaultThreadScript(): string | undefined {
  const p = path.join(__dirname, 'diff-thread.js');
  return existsSync(p) ? p : undefined;
}

export function defaultThreads(): number {
  return Math.max(1, Math.min(4, os.availableParallelism?.() ?? os.cpus().length));
}

/** Greedy split by bytes: the largest tensors first, each to the least loaded thread. */
export function shareOut(sizes: [string, number][], threads: number): string[][] {
  const groups = Array.from({ length: threads }, () => ({ names: [] as string[], bytes: 0 }));
  for (const [name, bytes] of [...sizes].sort((a, b) => b[1] - a[1])) {
    const g = groups.reduce((x, y) => (y.bytes < x.bytes ? y : x));
    g.names.push(name);
    g.bytes += bytes;
  }
  return groups.map((g) => g.names).filter((n) => n.length > 0);
}

export async function diffCheckpointsParallel(plan: AnalysisPlan, opts: DiffOptions & { threads?: number; threadScript?: string }): Promise<DiffResult> {
  const threads = opts.threads ?? defaultThreads();
  const script = opts.threadScript ?? defaultThreadScript();
  const { base, checkpoint: ckpt } = plan;
  const { mismatches, pairing } = plan.pairing;
  const pairs = opts.only ? plan.pairs.filter((p) => opts.only!.has(p.name)) : plan.pairs;
  if (threads <= 1 || !script || pairs.length < 2) return diffCheckpoints(plan, opts);
  // Shared out by cost: a merged adapter weight computes its r update terms per entry on read, which costs
  // about r + 1 plain entries (BENCHMARKS.md, "LoRA adapters"); other tensors cost their bytes.
  const cost = (p: (typeof pairs)[number]): number => {
    const src = p.checkpoint.file;
    return src instanceof MergedWeight ? p.bytes * (1 + src.target.rank) : p.bytes;
  };
  const bytesTotal = pairs.reduce((s, p) => s + p.bytes, 0);
  const groups = shareOut(
    pairs.map((p) => [p.name, cost(p)]),
    threads,
  );
  const results = new Map<string, TensorDiff>();
  let bytesDone = 0;
  // An adapter view is rebuilt in each thread over the borrowed base (its merged weights decode the factors there).
  const shared = { base: base.share(), checkpoint: ckpt.adapter ? { adapter: shareAdapterView(ckpt) } : ckpt.share() };
  const jobs = groups.map((names): ThreadJob => ({
    ...shared,
    passes: plan.passes,
    names,
    eta: opts.eta,
    chunkElements: opts.chunkElements,
    kernel: opts.kernel,
  }));
  try {
    await runThreads<ThreadMessage>(
      script,
      jobs,
      'diff',
      (m) => {
        if (m.type !== 'tensor') return;
        results.set(m.tensor.name, m.tensor);
        bytesDone += m.bytes;
        opts.onTensor?.(m.tensor);
        opts.onProgress?.({ tensor: m.tensor.name, index: results.size, total: pairs.length, bytesDone, bytesTotal });
      },
      opts.signal,
    );
  } catch (e) {
    opts.signal?.throwIfAborted();
    // A file that changed since the plan opened it explains any error: say so.
    await base.assertUnchanged();
    await ckpt.assertUnchanged();
    throw e;
  }
  // The threads checked the files at their end; the same descriptors, so the same files.
  return { tensors: pairs.map((p) => results.get(p.name)!), mismatches, pairing };
}
