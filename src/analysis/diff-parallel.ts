/**
 * The diff pass on several threads: tensors are shared out between worker threads by size, each thread
 * opens the checkpoints read-only itself and streams its tensors; results come back in tensor order.
 * The pass is compute-bound in one thread (see BENCHMARKS.md), so two threads on two cores nearly halve it.
 */
import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import type { Checkpoint } from '../formats/checkpoint';
import { CheckpointFormatError, type FormatProblem } from '../formats/errors';
import { assertPairing, diffCheckpoints, pairTensors, type DiffOptions, type DiffResult } from './diff';
import type { TensorDiff } from '../report/schema';

export interface ThreadJob {
  base: string;
  checkpoint: string;
  names: string[];
  eta: number;
  chunkElements?: number;
}

export type ThreadMessage =
  | { type: 'tensor'; tensor: TensorDiff; bytes: number }
  | { type: 'done' }
  | { type: 'error'; message: string; format?: { file: string; problem: FormatProblem; detail: string; tensor?: string } };

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

export async function diffCheckpointsParallel(base: Checkpoint, ckpt: Checkpoint, opts: DiffOptions & { threads?: number; threadScript?: string }): Promise<DiffResult> {
  const threads = opts.threads ?? defaultThreads();
  const script = opts.threadScript ?? defaultThreadScript();
  const paired = pairTensors(base, ckpt);
  assertPairing(base, ckpt, paired);
  const { pairs, mismatches, pairing } = paired;
  if (threads <= 1 || !script || pairs.length < 2) return diffCheckpoints(base, ckpt, opts);
  const sizes: [string, number][] = pairs.map(([name, a, b]) => [name, a.info.end - a.info.begin + b.info.end - b.info.begin]);
  const bytesTotal = sizes.reduce((s, [, b]) => s + b, 0);
  const groups = shareOut(sizes, threads);
  const results = new Map<string, TensorDiff>();
  let bytesDone = 0;
  const workers: Worker[] = [];
  const abort = (): void => {
    for (const w of workers) void w.terminate();
  };
  opts.signal?.addEventListener('abort', abort, { once: true });
  try {
    await Promise.all(groups.map((names) => new Promise<void>((resolve, reject) => {
      const job: ThreadJob = { base: base.path, checkpoint: ckpt.path, names, eta: opts.eta, chunkElements: opts.chunkElements };
      const w = new Worker(script, { workerData: job });
      workers.push(w);
      let finished = false;
      w.on('message', (m: ThreadMessage) => {
        if (m.type === 'tensor') {
          results.set(m.tensor.name, m.tensor);
          bytesDone += m.bytes;
          opts.onTensor?.(m.tensor);
          opts.onProgress?.({ tensor: m.tensor.name, index: results.size, total: pairs.length, bytesDone, bytesTotal });
        } else if (m.type === 'done') {
          finished = true;
          resolve();
        } else {
          finished = true;
          reject(m.format ? new CheckpointFormatError(m.format.file, m.format.problem, m.format.detail, m.format.tensor) : new Error(m.message));
        }
      });
      w.on('error', (e) => {
        finished = true;
        reject(e);
      });
      w.on('exit', (code) => {
        if (finished) return;
        if (opts.signal?.aborted) reject(opts.signal.reason ?? new Error('aborted'));
        else reject(new Error(`diff thread exited with code ${code}`));
      });
    })));
  } catch (e) {
    abort();
    opts.signal?.throwIfAborted();
    // A thread opens the files after this thread did: a checkpoint rewritten in between can look
    // malformed to it. A file that changed since it was opened here explains any error: say so.
    await base.assertUnchanged();
    await ckpt.assertUnchanged();
    throw e;
  } finally {
    opts.signal?.removeEventListener('abort', abort);
  }
  // The same files, unchanged since this thread opened them: the threads checked theirs at their end.
  await base.assertUnchanged();
  await ckpt.assertUnchanged();
  return { tensors: pairs.map(([name]) => results.get(name)!), mismatches, pairing };
}
