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
  constructor(message: string, readonly incomplete: boolean, readonly problem?: string, readonly file?: string) {
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
  log?: (line: string) => void;
  /** Told once per crash that the engine restarted. */
  onRestart?: (reason: string) => void;
  /** V8 heap cap of the worker in MB: a runaway job fails in the worker, never in the host. */
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
    const child = fork(this.opts.workerPath, [], { execArgv, env: { ...process.env, ORT_DISABLE_TELEMETRY: '1' }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    this.child = child;
    child.stdout?.on('data', (d: Buffer) => this.opts.log?.(d.toString().trimEnd()));
    child.stderr?.on('data', (d: Buffer) => this.opts.log?.(d.toString().trimEnd()));
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
        if (!wasReady) reject(new Error(`engine exited during start (code ${code}, signal ${signal})`));
        this.onExit(code, signal);
      });
    });
    return this.ready;
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.disposed) return;
    const pending = [...this.jobs.values()];
    if (pending.length === 0) return;
    const reason = `the engine process stopped (${signal ?? `exit code ${code}`})`;
    this.opts.log?.(`${reason}; restarting and re-queuing ${pending.length} job(s)`);
    this.opts.onRestart?.(reason);
    for (const job of pending) {
      job.attempts++;
      if (job.attempts > (this.opts.maxAttempts ?? 2)) {
        this.jobs.delete(job.id);
        job.reject(new EngineJobError(`${reason} ${job.attempts - 1} time(s) while running this job; giving up (out of memory?)`, false));
      }
    }
    for (const job of this.jobs.values()) void this.send(job);
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
      const msg: ClientToWorker = { type: 'start', jobId: job.id, spec: job.spec, cacheDir: this.opts.cacheDir };
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
