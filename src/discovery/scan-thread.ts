/**
 * The scan as a worker thread (bundled as dist/scan-thread.js): the extension host starts it for each
 * rescan, so header reads and parses (a header may be 100 MB) never run on the host's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { scanFolder } from './scan';
import type { ScanThreadJob, ScanThreadMessage } from './scan-off-thread';

async function main(): Promise<void> {
  const job = workerData as ScanThreadJob;
  let reply: ScanThreadMessage;
  try {
    reply = { type: 'done', result: await scanFolder(job.root, job.options) };
  } catch (e) {
    reply = { type: 'error', message: (e as Error).message };
  }
  parentPort?.postMessage(reply);
}

void main();
