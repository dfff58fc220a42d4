/** Worker-thread entry of the parallel diff pass (bundled to dist/diff-thread.js). */
import { parentPort, workerData } from 'node:worker_threads';
import { Checkpoint } from '../formats/checkpoint';
import { CheckpointFormatError } from '../formats/errors';
import { diffCheckpoints } from './diff';
import { AnalysisPlan } from './plan';
import { borrowAdapterView } from './adapter';
import type { ThreadJob, ThreadMessage } from './diff-parallel';

async function run(job: ThreadJob): Promise<void> {
  const post = (m: ThreadMessage): void => parentPort!.postMessage(m);
  try {
    // The main thread's open files, borrowed: the same descriptors and headers, and the same pairing.
    const base = Checkpoint.borrow(job.base);
    const ckpt = 'adapter' in job.checkpoint ? borrowAdapterView(base, job.checkpoint.adapter) : Checkpoint.borrow(job.checkpoint);
    const plan = AnalysisPlan.of(base, ckpt, job.passes);
    const wanted = new Set(job.names);
    await diffCheckpoints(plan, {
      eta: job.eta,
      chunkElements: job.chunkElements,
      kernel: job.kernel,
      only: wanted,
      onTensor: (t) => post({ type: 'tensor', tensor: t, bytes: plan.pair(t.name)?.bytes ?? 0 }),
    });
    post({ type: 'done' });
  } catch (e) {
    if (e instanceof CheckpointFormatError)
      post({ type: 'error', message: e.message, format: { file: e.file, problem: e.problem, detail: e.detail, tensor: e.tensor } });
    else post({ type: 'error', message: (e as Error).message ?? String(e) });
  }
}

void run(workerData as ThreadJob);
