/**
 * The engine client: starts the worker process (child_process.fork of dist/worker.js), queues jobs,
 * relays progress, cancels, and restarts the worker when it dies (re-queuing the job it was running).
 * Used by the extension host; plain Node, no vscode.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { ClientToWorker, JobResult, JobSpec, WorkerToClient } from './messages';
import { isWorkerMessage } from './messages';
import type { TensorDiff } from '../report/schema';

export type EngineState = 'stopped' | 'starting' | 'idle' | 'busy';

export interface JobHandlers {
  onProgress?: (p: { phase: string; tensor: string; index: number; total: number; fraction: number }) => void;
  onPartial?: (t: TensorDiff) => void;
}

export class EngineJobError extends Error {
  constructor(
    message: string,
    readonly incomplete: boolean,
    readonly problem?: string,
    readonly file?: string,
  ) {
    super(message);
  }
}

export class JobCancelledError extends Error {
  override readonly name = 'AbortError';
  constructor() {
    super('cancelled');
  }
}

interface Job {
  id: string;
  spec: JobSpec;
  handlers: JobHandlers;
  resolve: (r: { result: JobResult; fromCache: boolean }) => void;
  reject: (e: Error) => void;
  attempts: number;
}

export interface EngineClientOptions {
  workerPath: string;
  cacheDir: string | null;
  /** Size limit of the base-subspace cache, read at each job start (settings can change). */
  baseCacheBytes?: () => number;
  /** Size limit of the result cache, read at each job start. */
  resultCacheBytes?: () => number;
  log?: (line: string) => void;
  /** Told once per crash that the engine restarted. */
  onRestart?: (reason: string) => void;
  /**
   * Memory cap of the worker in MB: its V8 heap limit, and the budget of the worker's guard that refuses,
   * before allocating, a tensor whose buffers would exceed it. A runaway job fails in the worker, never in the host.
   */
  maxMemoryMb?: number;
  /** How many times one job may be re-queued after a crash. */
  maxAttempts?: number;
}

export class EngineClient {
  private child: ChildProcess | undefined;
  private ready: Promise<void> | undefined;
  private readonly jobs = new Map<string, Job>();
  private readonly listeners = new Set<(s: EngineState) => void>();
  private disposed = false;
  private _state: EngineState = 'stopped';

  constructor(private readonly opts: EngineClientOptions) {}

  get state(): EngineState {
    return this._state;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  onDidChangeState(fn: (s: EngineState) => void): { dispose(): void } {
    this.listeners.add(fn);
    return { dispose: () => this.listeners.delete(fn) };
  }

  private setState(s: EngineState): void {
    if (s === this._state) return;
    this._state = s;
    for (const l of this.listeners) l(s);
  }

  private start(): Promise<void> {
    if (this.ready) return this.ready;
    this.setState('starting');
    const execArgv = [`--max-old-space-size=${this.opts.maxMemoryMb ?? 4096}`];
    const env: NodeJS.ProcessEnv = { ...process.env, ORT_DISABLE_TELEMETRY: '1' };
    if (this.opts.maxMemoryMb !== undefined) env.GATESCOPE_MAX_MEMORY_MB = String(this.opts.maxMemoryMb);
    const child = fork(this.opts.workerPath, [], { execArgv, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    this.child = child;
    // The last few KB this worker wrote on stderr: tells an out-of-memory death from other crashes.
    let stderrTail = '';
    child.stdout?.on('data', (d: Buffer) => this.opts.log?.(d.toString().trimEnd()));
    child.stderr?.on('data', (d: Buffer) => {
      const text = d.toString();
      stderrTail = (stderrTail + text).slice(-8192);
      this.opts.log?.(text.trimEnd());
    });
    // 'exit' can come before the last stderr output has been read: wait for its end, briefly.
    const stderrDone = new Promise<void>((resolve) => {
      if (!child.stderr) return resolve();
      child.stderr.once('end', resolve);
      child.stderr.once('close', resolve);
      child.stderr.once('error', () => resolve());
    });
    this.ready = new Promise<void>((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        if (!isWorkerMessage(m)) return;
        if (m.type === 'ready') {
          this.opts.log?.(`engine started (pid ${m.pid})`);
          this.setState(this.jobs.size ? 'busy' : 'idle');
          resolve();
        }
        this.handle(m);
      };
      child.on('message', onMessage);
      child.once('error', (e) => reject(e));
      child.once('exit', (code, signal) => {
        const wasReady = this._state !== 'starting';
        this.child = undefined;
        this.ready = undefined;
        this.setState('stopped');
        // The jobs this worker held (a job started after this point goes to a new worker and is not touched).
        const pending = [...this.jobs.values()];
        let settled = false;
        const settle = (): void => {
          if (settled) return;
          settled = true;
          const reason = this.crashReason(code, signal, stderrTail);
          if (!wasReady) {
            // The jobs waiting for this start are rejected by send(); re-queuing them here as well would
            // start a second worker for jobs that have already failed.
            const hint = /\w*Error: .*/.exec(stderrTail)?.[0];
            reject(new EngineJobError(`the engine could not start: ${reason}${hint ? ` (${hint.trim()})` : ''}`, false, 'start'));
            return;
          }
          this.onExit(reason, pending);
        };
        const timer = setTimeout(settle, 500);
        void stderrDone.then(() => {
          clearTimeout(timer);
          settle();
        });
      });
    });
    return this.ready;
  }

  /** Why the worker died, in words: out of memory (V8's fatal heap message on stderr) or the exit code / signal. */
  private crashReason(code: number | null, signal: NodeJS.Signals | null, stderrTail: string): string {
    const how = signal ?? `exit code ${code}`;
    if (/JavaScript heap out of memory|Reached heap limit|Fatal process out of memory/i.test(stderrTail)) {
      return `the engine process ran out of memory (${how}; its memory cap is ${this.opts.maxMemoryMb ?? 4096} MB)`;
    }
    return `the engine process stopped (${how})`;
  }

  /** Re-queues the jobs the dead worker held, each up to maxAttempts times; the others fail with the reason. */
  private onExit(reason: string, held: Job[]): void {
    if (this.disposed) return;
    const pending = held.filter((job) => this.jobs.get(job.id) === job);
    if (pending.length === 0) return;
    const oom = reason.includes('ran out of memory');
    const requeue: Job[] = [];
    for (const job of pending) {
      job.attempts++;
      if (job.attempts > (this.opts.maxAttempts ?? 2)) {
        this.jobs.delete(job.id);
        const advice = oom ? 'giving up: analyse fewer or smaller tensors, or raise the memory cap' : 'giving up (out of memory?)';
        job.reject(
          new EngineJobError(`${reason}; it stopped ${job.attempts} time(s) while running this job, ${advice}`, false, oom ? 'out-of-memory' : 'crash'),
        );
      } else requeue.push(job);
    }
    if (requeue.length === 0) {
      this.opts.log?.(`${reason}; no job left to re-queue`);
      return;
    }
    this.opts.log?.(`${reason}; restarting and re-queuing ${requeue.length} job(s)`);
    this.opts.onRestart?.(reason);
    for (const job of requeue) void this.send(job);
  }

  private handle(m: WorkerToClient): void {
    if (m.type === 'log') {
      this.opts.log?.(m.line);
      return;
    }
    if (m.type === 'ready') return;
    const job = this.jobs.get(m.jobId);
    if (!job) return;
    switch (m.type) {
      case 'progress':
        job.handlers.onProgress?.(m);
        return;
      case 'partial':
        job.handlers.onPartial?.(m.tensor);
        return;
      case 'done':
        this.finish(job);
        job.resolve({ result: m.result, fromCache: m.fromCache });
        return;
      case 'error':
        this.finish(job);
        job.reject(new EngineJobError(m.message, m.incomplete, m.problem, m.file));
        return;
      case 'cancelled':
        this.finish(job);
        job.reject(new JobCancelledError());
        return;
    }
  }

  private finish(job: Job): void {
    this.jobs.delete(job.id);
    if (this.child) this.setState(this.jobs.size ? 'busy' : 'idle');
  }

  private async send(job: Job): Promise<void> {
    try {
      await this.start();
      this.setState('busy');
      const msg: ClientToWorker = {
        type: 'start',
        jobId: job.id,
        spec: job.spec,
        cacheDir: this.opts.cacheDir,
        baseCacheBytes: this.opts.baseCacheBytes?.(),
        resultCacheBytes: this.opts.resultCacheBytes?.(),
      };
      this.child?.send(msg);
    } catch (e) {
      this.jobs.delete(job.id);
      job.reject(e as Error);
    }
  }

  /** Runs a job in the worker. Aborting the signal cancels it (the promise rejects with an AbortError). */
  run(spec: JobSpec, handlers: JobHandlers = {}, signal?: AbortSignal): Promise<{ result: JobResult; fromCache: boolean }> {
    if (this.disposed) return Promise.reject(new Error('the engine has been shut down'));
    return new Promise((resolve, reject) => {
      const job: Job = { id: randomUUID(), spec, handlers, resolve, reject, attempts: 0 };
      if (signal?.aborted) {
        reject(new JobCancelledError());
        return;
      }
      signal?.addEventListener('abort', () => this.cancel(job.id), { once: true });
      this.jobs.set(job.id, job);
      void this.send(job);
    });
  }

  cancel(jobId: string): void {
    if (!this.jobs.has(jobId)) return;
    const msg: ClientToWorker = { type: 'cancel', jobId };
    this.child?.send(msg);
  }

  cancelAll(): void {
    for (const id of this.jobs.keys()) this.cancel(id);
  }

  /** For tests and "restart engine": kill the worker as a crash would. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child?.kill(signal);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    for (const job of this.jobs.values()) job.reject(new Error('the engine was shut down'));
    this.jobs.clear();
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const msg: ClientToWorker = { type: 'shutdown' };
    child.send(msg);
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  }
}
