/**
 * The extension's model: discovered runs (from src/discovery), the state of every checkpoint's analysis,
 * and the background engine that computes them. The host never computes a number itself: every report
 * comes from the engine worker process (src/engine/client.ts), which keeps its own cache on disk.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { DiscoveredCheckpoint, DiscoveredRun } from '../discovery/scan';
import { scanFolderInThread } from '../discovery/scan-off-thread';
import { EngineClient, EngineJobError, JobCancelledError, type EngineState, type JobHandlers } from '../engine/client';
import type { JobResult, JobSpec } from '../engine/messages';
import type { CheckpointReport, ConsistencyReport } from '../report/schema';
import type { StepsReport } from '../report/steps-schema';
import type { JobState } from '../ui-model/tree';
import { readSettings, type GatescopeSettings } from './settings';

const EXTRA_ROOTS_KEY = 'gatescope.extraRoots';
const RETRY_INCOMPLETE_MS = 20_000;

export interface Progress {
  fraction: number;
  phase: string;
}

/** A run's step-to-step walk: what the Step to Step panel shows. */
export type StepsJob =
  | { kind: 'none' }
  | { kind: 'running'; fraction: number; phase: string }
  | { kind: 'done'; report: StepsReport }
  | { kind: 'error'; message: string }
  | { kind: 'cancelled' };

export interface CurrentJob {
  label: string;
  checkpoint: string | null;
  fraction: number;
}

export class Controller implements vscode.Disposable {
  readonly engine: EngineClient;
  runs: DiscoveredRun[] = [];
  scanned = false;
  scanning = false;
  /** Consistency reports by base path. */
  readonly consistency = new Map<string, ConsistencyReport>();
  current: CurrentJob | null = null;
  private settings: GatescopeSettings;
  private readonly jobs = new Map<string, JobState>();
  private readonly stepsJobs = new Map<string, StepsJob>();
  private readonly stepsInflight = new Map<string, { key: string; job: Promise<StepsReport> }>();
  /** Learning rates the user gave per run (for the Gate III prediction when the run's files name none). */
  private readonly stepsLearningRates = new Map<string, number>();
  private readonly analysedMtime = new Map<string, number>();
  private readonly aborts = new Map<string, AbortController>();
  private readonly runQueues = new Map<string, Promise<unknown>>();
  private readonly emitter = new vscode.EventEmitter<void>();
  readonly onDidChange = this.emitter.event;
  private rescanTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private scanAgain = false;
  private scanPromise: Promise<void> | undefined;
  /** The user asked for a scan (a command): in an untrusted workspace nothing reads a checkpoint before that. */
  private scanAsked = false;
  /** Stops a running scan thread when the extension is disposed. */
  private readonly scanAbort = new AbortController();
  /** Analyses queued or running, by checkpoint: a second request with the same inputs joins the first. */
  private readonly inflight = new Map<string, { key: string; job: Promise<CheckpointReport>; listeners: Set<(p: Progress) => void> }>();
  private disposed = false;
  private jobSeq = 0;

  constructor(
    private readonly context: vscode.ExtensionContext,
    readonly log: vscode.LogOutputChannel,
  ) {
    this.settings = readSettings();
    const storage = context.globalStorageUri.fsPath;
    this.engine = new EngineClient({
      workerPath: context.asAbsolutePath(path.join('dist', 'worker.js')),
      // The cache lives in the extension's global storage, never inside a checkpoint folder.
      cacheDir: path.join(storage, 'cache'),
      baseCacheBytes: () => this.settings.baseCacheSizeLimitMB * 1024 * 1024,
      // The worker alone evicts both caches, each at the limit the settings give.
      resultCacheBytes: () => this.settings.cacheSizeLimitMB * 1024 * 1024,
      log: (line) => log.info(line),
      onRestart: (reason) => {
        log.warn(`engine restarted: ${reason}`);
        void vscode.window.showWarningMessage(`Gatescope: ${reason}; the engine was restarted and the job re-queued.`);
      },
      maxMemoryMb: this.settings.maxMemoryMB > 0 ? this.settings.maxMemoryMB : undefined,
    });
  }

  private get scanThreadScript(): string {
    return this.context.asAbsolutePath(path.join('dist', 'scan-thread.js'));
  }

  get config(): GatescopeSettings {
    return this.settings;
  }

  reloadSettings(): void {
    this.settings = readSettings();
  }

  get trusted(): boolean {
    return vscode.workspace.isTrusted;
  }

  get autoAnalyzeEnabled(): boolean {
    return this.trusted && this.settings.autoAnalyze;
  }

  onEngineState(fn: (s: EngineState) => void): vscode.Disposable {
    const d = this.engine.onDidChangeState(fn);
    return new vscode.Disposable(() => d.dispose());
  }

  private changed(): void {
    if (!this.disposed) this.emitter.fire();
  }

  // ---- roots and discovery -------------------------------------------------------------------

  get extraRoots(): string[] {
    const v = this.context.workspaceState.get<unknown>(EXTRA_ROOTS_KEY, []);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  }

  get roots(): string[] {
    const ws = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
    return [...new Set([...ws, ...this.extraRoots])];
  }

  async addRoot(dir: string): Promise<void> {
    const roots = this.extraRoots;
    if (!roots.includes(dir)) await this.context.workspaceState.update(EXTRA_ROOTS_KEY, [...roots, dir]);
    await this.rescan();
  }

  /**
   * Whether checkpoints may be read now. A trusted workspace: always. An untrusted one: once the user has
   * asked (Rescan, Add Folder, an analysis command); watchers and activation then read nothing by themselves.
   */
  get scanPermitted(): boolean {
    return this.trusted || this.scanAsked;
  }

  /** An automatic rescan (watchers, activation, settings): debounced, and nothing at all while not permitted. */
  rescanSoon(delayMs = 1500): void {
    if (!this.scanPermitted) {
      this.changed();
      return;
    }
    if (this.rescanTimer) clearTimeout(this.rescanTimer);
    this.rescanTimer = setTimeout(() => {
      this.rescanTimer = undefined;
      void this.scanNow();
    }, delayMs);
  }

  /** A scan the user asked for: it also lifts the untrusted-workspace hold for this session. */
  rescan(): Promise<void> {
    this.scanAsked = true;
    return this.scanNow();
  }

  /** Scans the roots. A call during a scan asks for one more pass and waits for it (never returns early). */
  private scanNow(): Promise<void> {
    if (!this.scanPermitted || this.disposed) return Promise.resolve();
    if (this.scanPromise) {
      this.scanAgain = true;
      return this.scanPromise;
    }
    this.scanPromise = this.scanLoop().finally(() => {
      this.scanPromise = undefined;
    });
    return this.scanPromise;
  }

  private async scanLoop(): Promise<void> {
    this.scanning = true;
    this.changed();
    try {
      do {
        this.scanAgain = false;
        const runs = new Map<string, DiscoveredRun>();
        for (const root of this.roots) {
          try {
            // In a thread of its own: header reads and parses never run on the extension host's event loop.
            const r = await scanFolderInThread(this.scanThreadScript, root, { baseOverrides: this.settings.baseOverrides }, this.scanAbort.signal);
            for (const w of r.warnings) this.log.warn(`scan: ${w}`);
            for (const run of r.runs) if (!runs.has(run.id)) runs.set(run.id, run);
          } catch (e) {
            this.log.error(`scan of ${root} failed: ${(e as Error).message}`);
          }
        }
        this.runs = [...runs.values()].sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
        this.forgetRewritten();
      } while (this.scanAgain && !this.disposed);
    } finally {
      this.scanning = false;
      this.scanned = true;
      this.changed();
    }
    this.autoAnalyze();
    this.scheduleRetry();
  }

  /** A checkpoint rewritten since it was analysed is analysed again. */
  private forgetRewritten(): void {
    for (const run of this.runs) {
      for (const c of run.checkpoints) {
        const seen = this.analysedMtime.get(c.path);
        if (seen !== undefined && seen !== c.mtimeMs && !this.aborts.has(c.path)) {
          this.jobs.delete(c.path);
          this.analysedMtime.delete(c.path);
        }
      }
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || !this.autoAnalyzeEnabled) return;
    const waiting = this.runs.some((r) => r.checkpoints.some((c) => c.state === 'incomplete'));
    if (!waiting) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.scanNow();
    }, RETRY_INCOMPLETE_MS);
  }

  findRun(id: string): DiscoveredRun | undefined {
    return this.runs.find((r) => r.id === id);
  }

  locate(checkpoint: string): { run: DiscoveredRun; ckpt: DiscoveredCheckpoint } | undefined {
    for (const run of this.runs) {
      const ckpt = run.checkpoints.find((c) => c.path === checkpoint);
      if (ckpt) return { run, ckpt };
    }
    return undefined;
  }

  /** Runs whose checkpoints can be analysed (they have a base and are not only a base). */
  get trainingRuns(): DiscoveredRun[] {
    return this.runs.filter((r) => r.base.resolved !== null || r.baseOf.length === 0);
  }

  // ---- analysis state ------------------------------------------------------------------------

  job(checkpoint: string): JobState {
    return this.jobs.get(checkpoint) ?? { kind: 'none' };
  }

  report(checkpoint: string): CheckpointReport | undefined {
    const j = this.jobs.get(checkpoint);
    return j?.kind === 'done' ? j.report : undefined;
  }

  /** The run's analysed reports, in step order. */
  reports(run: DiscoveredRun): CheckpointReport[] {
    return run.checkpoints.map((c) => this.report(c.path)).filter((r): r is CheckpointReport => r !== undefined);
  }

  /** A report computed elsewhere (the shards of a Slurm job, merged) shown as this checkpoint's analysis. */
  adoptReport(checkpoint: string, report: CheckpointReport): void {
    this.aborts.get(checkpoint)?.abort();
    this.setJob(checkpoint, { kind: 'done', report, fromCache: false });
  }

  private setJob(checkpoint: string, state: JobState): void {
    this.jobs.set(checkpoint, state);
    this.changed();
  }

  /** Drops the shown reports (after a settings change): they are recomputed, mostly from the engine's cache. */
  invalidateReports(): void {
    for (const [p, j] of this.jobs) if (j.kind === 'done' || j.kind === 'error') this.jobs.delete(p);
    this.analysedMtime.clear();
    this.changed();
    this.autoAnalyze();
  }

  autoAnalyze(): void {
    if (!this.autoAnalyzeEnabled) return;
    for (const run of this.runs) {
      if (!run.base.resolved) continue;
      for (const c of run.checkpoints) {
        if (c.state !== 'complete' || path.resolve(c.path) === path.resolve(run.base.resolved)) continue;
        if (this.job(c.path).kind !== 'none') continue;
        this.analyze(run, c, { auto: true }).catch(() => undefined);
      }
    }
  }

  /**
   * Analyses one checkpoint against its run's base in the engine. Jobs of one run run one at a time,
   * in the order asked. A checkpoint already queued or running with the same base and settings returns
   * the same promise (a manual request joins an automatic one instead of cancelling it); with other
   * inputs the old job is cancelled and a new one queued.
   */
  analyze(
    run: DiscoveredRun,
    ckpt: DiscoveredCheckpoint,
    opts: { auto?: boolean; onProgress?: (p: Progress) => void; signal?: AbortSignal; base?: string } = {},
  ): Promise<CheckpointReport> {
    const base = opts.base ?? run.base.resolved;
    if (!base) return Promise.reject(new Error(`no base model for run ${run.name}: use "Gatescope: Set Base Model for Run"`));
    if (ckpt.state !== 'complete') return Promise.reject(new Error(`${ckpt.path} is ${ckpt.state}${ckpt.reason ? `: ${ckpt.reason}` : ''}`));
    const key = JSON.stringify([base, this.settings.passes, this.settings.device, this.settings.analysis]);
    const running = this.inflight.get(ckpt.path);
    if (running && running.key === key) {
      const listener = opts.onProgress;
      if (listener) running.listeners.add(listener);
      opts.signal?.addEventListener('abort', () => this.aborts.get(ckpt.path)?.abort(), { once: true });
      return running.job;
    }
    const listeners = new Set<(p: Progress) => void>();
    if (opts.onProgress) listeners.add(opts.onProgress);
    const ac = new AbortController();
    this.aborts.get(ckpt.path)?.abort();
    this.aborts.set(ckpt.path, ac);
    opts.signal?.addEventListener('abort', () => ac.abort(), { once: true });
    this.setJob(ckpt.path, { kind: 'queued' });
    const label = `${run.name} ${ckpt.step !== null ? `step ${ckpt.step}` : path.basename(ckpt.path)}`;
    const s = this.settings;
    const prev = this.runQueues.get(run.id) ?? Promise.resolve();
    const job = prev.then(async (): Promise<CheckpointReport> => {
      if (ac.signal.aborted) throw new JobCancelledError();
      this.setJob(ckpt.path, { kind: 'running', fraction: 0 });
      this.current = { label, checkpoint: ckpt.path, fraction: 0 };
      this.log.info(`analysing ${ckpt.path} against ${base} (${s.passes}, k=${s.analysis.k}, device ${s.device})${opts.auto ? ' [auto]' : ''}`);
      const { result, fromCache } = await this.engine.run(
        { kind: 'analyze', base, checkpoint: ckpt.path, passes: s.passes, settings: s.analysis, device: s.device },
        {
          onProgress: (p) => {
            this.current = { label, checkpoint: ckpt.path, fraction: p.fraction };
            this.setJob(ckpt.path, { kind: 'running', fraction: p.fraction, phase: p.phase });
            for (const l of listeners) l({ fraction: p.fraction, phase: p.phase });
          },
        },
        ac.signal,
      );
      if (result.kind !== 'gatescope.checkpoint-report') throw new Error('the engine returned an unexpected result');
      this.log.info(`done ${ckpt.path}${fromCache ? ' (from cache)' : ` in ${(result.durationMs / 1000).toFixed(1)} s`}`);
      this.analysedMtime.set(ckpt.path, ckpt.mtimeMs);
      this.setJob(ckpt.path, { kind: 'done', report: result, fromCache });
      return result;
    });
    const settled = job
      .then(
        () => undefined,
        (e: unknown) => {
          if (e instanceof JobCancelledError || ac.signal.aborted) {
            this.setJob(ckpt.path, { kind: 'cancelled' });
          } else if (e instanceof EngineJobError && e.incomplete) {
            // Still being written: forget the attempt, the next scan retries it.
            this.log.info(`${ckpt.path} is not complete yet (${e.message}); retrying later`);
            this.jobs.delete(ckpt.path);
            this.changed();
            this.scheduleRetry();
          } else {
            const msg = (e as Error).message ?? String(e);
            this.log.error(`analysis of ${ckpt.path} failed: ${msg}`);
            this.setJob(ckpt.path, { kind: 'error', message: msg });
          }
        },
      )
      .finally(() => {
        if (this.aborts.get(ckpt.path) === ac) this.aborts.delete(ckpt.path);
        if (this.inflight.get(ckpt.path)?.job === job) this.inflight.delete(ckpt.path);
        if (this.current?.checkpoint === ckpt.path) this.current = null;
        this.changed();
      });
    this.runQueues.set(run.id, settled);
    this.inflight.set(ckpt.path, { key, job, listeners });
    return job;
  }

  /**
   * One engine job outside the per-checkpoint queues (comparisons, scrambled copies, masks) with the
   * controller's policy: Cancel reaches it, the status bar shows its progress, the engine runs it.
   */
  async runJob(
    label: string,
    spec: JobSpec,
    opts: { onProgress?: JobHandlers['onProgress']; signal?: AbortSignal } = {},
  ): Promise<{ result: JobResult; fromCache: boolean }> {
    const ac = new AbortController();
    const key = `job:${++this.jobSeq}`;
    this.aborts.set(key, ac);
    opts.signal?.addEventListener('abort', () => ac.abort(), { once: true });
    const mine = { label, checkpoint: null, fraction: 0 };
    this.current = mine;
    this.changed();
    try {
      return await this.engine.run(
        spec,
        {
          onProgress: (p) => {
            mine.fraction = p.fraction;
            this.current = mine;
            this.changed();
            opts.onProgress?.(p);
          },
        },
        ac.signal,
      );
    } finally {
      this.aborts.delete(key);
      if (this.current === mine) this.current = null;
      this.changed();
    }
  }

  async compare(base: string, checkpoints: string[], labels: string[], onProgress?: (p: Progress) => void, signal?: AbortSignal): Promise<ConsistencyReport> {
    this.log.info(`comparing ${labels.join(', ')} against ${base}`);
    const { result } = await this.runJob(
      `comparing ${labels.length} runs`,
      { kind: 'compare', base, checkpoints, labels, eta: this.settings.analysis.eta, settings: this.settings.analysis, device: this.settings.device },
      { onProgress: (p) => onProgress?.({ fraction: p.fraction, phase: p.phase }), signal },
    );
    if (result.kind !== 'gatescope.consistency-report') throw new Error('the engine returned an unexpected result');
    this.consistency.set(base, result);
    return result;
  }

  // ---- step to step ---------------------------------------------------------------------------

  stepsJob(runId: string): StepsJob {
    return this.stepsJobs.get(runId) ?? { kind: 'none' };
  }

  stepsLearningRate(runId: string): number | null {
    return this.stepsLearningRates.get(runId) ?? null;
  }

  /**
   * Walks a run step to step in the engine (each checkpoint read once), from its base when it has one.
   * A walk already running with the same inputs is joined; a learning rate given here is kept for the
   * run's later walks. Queued behind the run's analyses, as they read the same files.
   */
  steps(run: DiscoveredRun, opts: { learningRate?: number | null } = {}): Promise<StepsReport> {
    if (opts.learningRate !== undefined) {
      if (opts.learningRate === null) this.stepsLearningRates.delete(run.id);
      else this.stepsLearningRates.set(run.id, opts.learningRate);
    }
    const lr = this.stepsLearningRates.get(run.id);
    const base = run.base.resolved;
    const eta = this.settings.analysis.eta;
    const key = JSON.stringify([base, lr ?? null, eta, run.checkpoints.map((c) => [c.path, c.state, c.mtimeMs])]);
    const abortKey = `steps:${run.id}`;
    const running = this.stepsInflight.get(run.id);
    if (running && running.key === key) return running.job;
    this.aborts.get(abortKey)?.abort();
    const ac = new AbortController();
    this.aborts.set(abortKey, ac);
    const label = `${run.name}: step to step`;
    const set = (j: StepsJob): void => {
      this.stepsJobs.set(run.id, j);
      this.changed();
    };
    set({ kind: 'running', fraction: 0, phase: 'queued' });
    const prev = this.runQueues.get(run.id) ?? Promise.resolve();
    const job = prev.then(async (): Promise<StepsReport> => {
      if (ac.signal.aborted) throw new JobCancelledError();
      this.current = { label, checkpoint: null, fraction: 0 };
      set({ kind: 'running', fraction: 0, phase: 'steps' });
      this.log.info(`walking ${run.root} step to step${base ? ` from ${base}` : ''}${lr !== undefined ? ` (learning rate ${lr})` : ''}`);
      const { result } = await this.engine.run(
        {
          kind: 'steps',
          root: run.root,
          base,
          eta,
          ...(lr !== undefined ? { learningRate: lr, learningRateSource: 'the learning rate given in Gatescope' } : {}),
        },
        {
          onProgress: (p) => {
            this.current = { label, checkpoint: null, fraction: p.fraction };
            set({ kind: 'running', fraction: p.fraction, phase: p.phase });
          },
        },
        ac.signal,
      );
      if (result.kind !== 'gatescope.steps') throw new Error('the engine returned an unexpected result');
      this.log.info(`done ${run.root} step to step: ${result.steps.length} step(s) in ${(result.durationMs / 1000).toFixed(1)} s`);
      set({ kind: 'done', report: result });
      return result;
    });
    const settled = job
      .then(
        () => undefined,
        (e: unknown) => {
          if (e instanceof JobCancelledError || ac.signal.aborted) set({ kind: 'cancelled' });
          else {
            const msg = (e as Error).message ?? String(e);
            this.log.error(`step to step of ${run.root} failed: ${msg}`);
            set({ kind: 'error', message: msg });
          }
        },
      )
      .finally(() => {
        if (this.aborts.get(abortKey) === ac) this.aborts.delete(abortKey);
        if (this.stepsInflight.get(run.id)?.job === job) this.stepsInflight.delete(run.id);
        if (this.current?.label === label) this.current = null;
        this.changed();
      });
    this.runQueues.set(run.id, settled);
    this.stepsInflight.set(run.id, { key, job });
    return job;
  }

  /** Cancels every queued and running job. */
  cancelAll(): number {
    const n = this.aborts.size;
    for (const ac of this.aborts.values()) ac.abort();
    this.engine.cancelAll();
    return n;
  }

  dispose(): void {
    this.disposed = true;
    this.scanAbort.abort();
    if (this.rescanTimer) clearTimeout(this.rescanTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const ac of this.aborts.values()) ac.abort();
    this.emitter.dispose();
    void this.engine.dispose();
  }
}
