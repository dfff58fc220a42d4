/** Worker-thread entry of the parallel diff pass (bundled to dist/diff-thread.js). */
import { parentPort, workerData } from 'node:worker_threads';
import { Checkpoint } from '../formats/checkpoint';
import { CheckpointFormatError } from '../formats/errors';
import { diffCheckpoints, pairTensors } from './diff';
import type { ThreadJob, ThreadMessage } from './diff-parallel';

async function run(job: ThreadJob): Promise<void> {
  const post = (m: ThreadMessage): void => parentPort!.postMessage(m);
  const base = await Checkpoint.open(job.base);
  let ckpt: Checkpoint | undefined;
  try {
    ckpt = await Checkpoint.open(job.checkpoint);
    // The names are the base's; the same pairing as the main thread's finds the checkpoint's tensors.
    const wanted = new Set(job.names);
    const sizes = new Map<string, number>();
    for (const [name, a, b] of pairTensors(base, ckpt).pairs) {
      if (wanted.has(name)) sizes.set(name, a.info.end - a.info.begin + b.info.end - b.info.begin);
    }
    await diffCheckpoints(base, ckpt, {
      eta: job.eta,
      chunkElements: job.chunkElements,
      kernel: job.kernel,
      only: wanted,
      onTensor: (t) => post({ type: 'tensor', tensor: t, bytes: sizes.get(t.name) ?? 0 }),
    });
    post({ type: 'done' });
  } catch (e) {
    if (e instanceof CheckpointFormatError)
      post({ type: 'error', message: e.message, format: { file: e.file, problem: e.problem, detail: e.detail, tensor: e.tensor } });
    else post({ type: 'error', message: (e as Error).message ?? String(e) });
  } finally {
    await base.close();
    await ckpt?.close();
  }
}

void run(workerData as ThreadJob);
