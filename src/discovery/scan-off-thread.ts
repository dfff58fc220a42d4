/**
 * Runs `scanFolder` in a worker thread of its own (dist/scan-thread.js) and returns its result.
 * The caller's event loop only receives the finished result; the thread's heap is capped, so a
 * pathological header costs the scan, never the caller's memory.
 */
import { Worker } from 'node:worker_threads';
import type { ScanOptions, ScanResult } from './scan';

export interface ScanThreadJob {
  root: string;
  options: ScanOptions;
}

export type ScanThreadMessage = { type: 'done'; result: ScanResult } | { type: 'error'; message: string };

/** Room for the largest valid header (100 MB of JSON, about a million entries) with margin. */
const SCAN_HEAP_MB = 2048;

export function scanFolderInThread(script: string, root: string, options: ScanOptions = {}, signal?: AbortSignal): Promise<ScanResult> {
  return new Promise<ScanResult>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new Error('scan cancelled'));
      return;
    }
    const job: ScanThreadJob = { root, options };
    const worker = new Worker(script, { workerData: job, resourceLimits: { maxOldGenerationSizeMb: SCAN_HEAP_MB } });
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      f();
    };
    const onAbort = (): void => {
      void worker.terminate();
      settle(() => reject(new Error('scan cancelled')));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: ScanThreadMessage) => {
      settle(() => (m.type === 'done' ? resolve(m.result) : reject(new Error(m.message))));
      void worker.terminate();
    });
    worker.on('error', (e: Error & { code?: string }) => {
      const why =
        e.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? `the scan of ${root} ran out of its ${SCAN_HEAP_MB} MB (a checkpoint header too large to list?)`
          : `the scan of ${root} failed: ${e.message}`;
      settle(() => reject(new Error(why)));
    });
    worker.on('exit', (code) => settle(() => reject(new Error(`the scan of ${root} stopped (thread exit code ${code})`))));
  });
}
