/** Worker-thread entry of the parallel diff pass (bundled to dist/diff-thread.js). */
import { parentPort, workerData } from 'node:worker_threads';
import { Checkpoint } from '../formats/checkpoint';
import { CheckpointFormatError } from '../formats/errors';
import { diffCheckpoints } from './diff';
import type { ThreadJob, ThreadMessage } from './diff-parallel';

async function run(job: ThreadJob): Promise<void> {
  const post = (m: ThreadMessage): void => parentPort!.postMessage(m);
  const base = await Checkpoint.open(job.base);
  let ckpt: Checkpoint | undefined;
  try {
    ckpt = await Checkpoint.open(job.checkpoint);
    const sizes = new Map<string, number>();
    for (const name of job.names) {
      const a = base.tensors.get(name)!.info;
      const b = ckpt.tensors.get(name)!.info;
      sizes.set(name, a.end - a.begin + b.end - b.begin);
    }
    await diffCheckpoints(base, ckpt, {
      eta: job.eta,
      chunkElements: job.chunkElements,
      only: new Set(job.names),
      onTensor: (t) => post({ type: 'tensor', tensor: t, bytes: sizes.get(t.name) ?? 0 }),
    });
    post({ type: 'done' });
  } catch (e) {
    if (e instanceof CheckpointFormatError) post({ type: 'error', message: e.message, format: { file: e.file, problem: e.problem, detail: e.detail, tensor: e.tensor } });
    else post({ type: 'error', message: (e as Error).message ?? String(e) });
  } finally {
    await base.close();
    await ckpt?.close();
  }
}

void run(workerData as ThreadJob);
