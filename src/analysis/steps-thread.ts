/** Worker-thread entry of the step-to-step pass (bundled to dist/steps-thread.js): walks its share of the chains. */
import { parentPort, workerData } from 'node:worker_threads';
import { Checkpoint } from '../formats/checkpoint';
import { CheckpointFormatError } from '../formats/errors';
import { pairRun, walkChains, type StepsThreadJob, type StepsThreadMessage } from './steps';

async function run(job: StepsThreadJob): Promise<void> {
  const post = (m: StepsThreadMessage): void => parentPort!.postMessage(m);
  const ckpts: Checkpoint[] = [];
  try {
    for (const p of job.paths) ckpts.push(await Checkpoint.open(p));
    // The same pairing as the main thread's finds the same chains in the same order.
    const { chains } = pairRun(ckpts);
    let bytes = 0;
    await walkChains(chains, job.chains, {
      eta: job.eta,
      onBytes: (b) => {
        bytes += b;
        // Progress in steps of 64 MiB: a message per block would cost more than it tells.
        if (bytes >= 1 << 26) {
          post({ type: 'bytes', bytes });
          bytes = 0;
        }
      },
      onChain: (result) => post({ type: 'chain', result }),
    });
    if (bytes > 0) post({ type: 'bytes', bytes });
    for (const c of ckpts) await c.assertUnchanged();
    post({ type: 'done' });
  } catch (e) {
    const err = e as Error;
    if (e instanceof CheckpointFormatError)
      post({ type: 'error', name: err.name, message: err.message, format: { file: e.file, problem: e.problem, detail: e.detail, tensor: e.tensor } });
    else post({ type: 'error', name: err.name ?? 'Error', message: err.message ?? String(e) });
  } finally {
    for (const c of ckpts) await c.close();
  }
}

void run(workerData as StepsThreadJob);
