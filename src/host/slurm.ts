/**
 * "Analyze Run on Slurm": the run's complete checkpoints as Slurm job arrays of shards (src/cluster/slurm.ts),
 * submitted from the (remote) extension host when `sbatch` is on its PATH. The jobs' state shows under the
 * run in the tree; each merged report joins the dashboards when it lands; a failed task is named with its log.
 * Submissions survive a reload (workspace state) and are polled again.
 */
import * as vscode from 'vscode';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import {
  cancelDoomed,
  failureLines,
  ownFailures,
  readManifest,
  slugs,
  sbatchAvailable,
  status,
  submit,
  type CheckpointStatus,
  type Manifest,
  type SlurmRequest,
} from '../cluster/slurm';
import type { DiscoveredRun } from '../discovery/scan';
import type { CheckpointReport } from '../report/schema';
import { withCheckpointPathsFrom } from '../report/paths';
import { checkpointLabel } from '../ui-model/tree';
import type { Controller } from './controller';

const STATE_KEY = 'gatescope.slurmSubmissions';
const POLL_MS = 5000;

export interface SlurmSubmission {
  runId: string;
  manifest: Manifest;
  statuses: CheckpointStatus[];
  /** Checkpoints whose merged report was taken into the dashboards. */
  adopted: Set<string>;
  failed: boolean;
}

/** The flags of the extension's analysis settings, for every shard's `gatescope analyze`. */
function analyzeArgs(c: Controller): string[] {
  const s = c.config;
  const a = s.analysis;
  return [
    '--eta',
    String(a.eta),
    '--k',
    String(a.k),
    '--alpha',
    String(a.alpha),
    '--k-spectrum',
    String(a.kSpectrum),
    '--power-iterations',
    String(a.powerIterations),
    '--oversample',
    String(a.oversample),
    '--device',
    s.device,
  ];
}

function stamp(d = new Date()): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
}

export class SlurmRuns implements vscode.Disposable {
  private readonly submissions: SlurmSubmission[] = [];
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private remembered: string | undefined;
  private readonly emitter = new vscode.EventEmitter<void>();
  readonly onDidChange = this.emitter.event;
  available = false;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly c: Controller,
    private readonly openDashboard: (runId: string, checkpoint: string) => void,
  ) {}

  /** Looks for sbatch once, off the activation path, and picks up the submissions of an earlier session. */
  async start(): Promise<void> {
    this.available = await sbatchAvailable();
    await vscode.commands.executeCommand('setContext', 'gatescope.slurmAvailable', this.available);
    for (const s of this.context.workspaceState.get<{ runId: string; out: string }[]>(STATE_KEY, [])) {
      const manifest = await readManifest(s.out).catch(() => undefined);
      if (manifest) this.submissions.push({ runId: s.runId, manifest, statuses: [], adopted: new Set(), failed: false });
    }
    if (this.submissions.length) this.schedule(0);
  }

  of(runId: string): SlurmSubmission[] {
    return this.submissions.filter((s) => s.runId === runId);
  }

  /** Submits every complete checkpoint of `run` (but its base). */
  async submit(run: DiscoveredRun, req: SlurmRequest): Promise<SlurmSubmission> {
    if (!this.available && !(this.available = await sbatchAvailable()))
      throw new Error('sbatch is not on the PATH of this extension host: open the workspace on a Slurm login node (Remote-SSH)');
    const base = run.base.resolved;
    if (!base) throw new Error(`no base model for run ${run.name}: use "Gatescope: Set Base Model for Run"`);
    const ckpts = run.checkpoints.filter((k) => k.state === 'complete' && path.resolve(k.path) !== path.resolve(base));
    if (!ckpts.length) throw new Error(`run ${run.name} has no complete checkpoint to analyse`);
    const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const configured = vscode.workspace.getConfiguration('gatescope').get<string>('slurm.outputFolder', '');
    const parent = configured || (root ? path.join(root, '.gatescope', 'slurm') : path.join(this.context.globalStorageUri.fsPath, 'slurm'));
    const out = req.out ?? path.join(parent, `${slugs([run.name])[0]}-${stamp()}`);
    const manifest = await submit({
      base,
      checkpoints: ckpts.map((k) => ({ path: k.path, label: `${run.name} ${checkpointLabel(k)}` })),
      tasks: req.tasks,
      out,
      partition: req.partition,
      sbatchArgs: req.sbatchArgs,
      analyzeArgs: analyzeArgs(this.c),
      gatescope: [process.execPath, path.join(this.context.extensionPath, 'dist', 'cli.js')],
    });
    this.c.log.info(
      `slurm: submitted ${run.name} (${manifest.checkpoints.map((k) => `${k.label}: array ${k.arrayJob}, merge ${k.mergeJob}`).join('; ')}) into ${out}`,
    );
    const sub: SlurmSubmission = { runId: run.id, manifest, statuses: [], adopted: new Set(), failed: false };
    this.submissions.push(sub);
    await this.remember();
    this.schedule(0);
    return sub;
  }

  /** Keeps the unfinished submissions in the workspace state, written only when that list changes. */
  private async remember(): Promise<void> {
    const live = this.submissions
      .filter((s) => !s.failed && s.adopted.size < s.manifest.checkpoints.length)
      .map((s) => ({ runId: s.runId, out: s.manifest.out }));
    const text = JSON.stringify(live);
    if (text === this.remembered) return;
    this.remembered = text;
    await this.context.workspaceState.update(STATE_KEY, live);
  }

  private schedule(ms = POLL_MS): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.poll(), ms);
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    let pending = false;
    try {
      for (const sub of this.submissions) {
        if (sub.failed || sub.adopted.size === sub.manifest.checkpoints.length) continue;
        try {
          sub.statuses = await status(sub.manifest);
        } catch (e) {
          this.c.log.warn(`slurm: ${(e as Error).message}`);
          pending = true;
          continue;
        }
        for (const [i, st] of sub.statuses.entries()) {
          const k = sub.manifest.checkpoints[i];
          if (st.state === 'done' && st.landed && !sub.adopted.has(k.checkpoint)) await this.adopt(sub, k.checkpoint, k.report);
        }
        if (sub.statuses.some((s) => s.state === 'failed')) {
          sub.failed = true;
          await cancelDoomed(sub.manifest, sub.statuses).catch((e: Error) => this.c.log.warn(`slurm: scancel: ${e.message}`));
          void this.reportFailure(sub);
        } else if (sub.adopted.size < sub.manifest.checkpoints.length) {
          pending = true;
        }
      }
      await this.remember();
    } finally {
      this.polling = false;
      this.emitter.fire();
    }
    if (pending) this.schedule();
  }

  /** A merged report joins the controller's reports (as the engine's would) and the run's dashboard opens. */
  private async adopt(sub: SlurmSubmission, checkpoint: string, file: string): Promise<void> {
    const report = withCheckpointPathsFrom(JSON.parse(await fsp.readFile(file, 'utf8')) as CheckpointReport, file);
    this.c.adoptReport(checkpoint, report);
    sub.adopted.add(checkpoint);
    this.c.log.info(
      `slurm: ${report.label ?? checkpoint} landed (${report.shards?.count ?? 1} shards, longest ${(report.durationMs / 1000).toFixed(1)} s): ${file}`,
    );
    if (sub.adopted.size === sub.manifest.checkpoints.length) this.openDashboard(sub.runId, checkpoint);
  }

  private async reportFailure(sub: SlurmSubmission): Promise<void> {
    const lines = await failureLines(sub.statuses);
    for (const l of lines) this.c.log.error(`slurm: ${l}`);
    const failed = sub.statuses.flatMap(ownFailures)[0];
    const pick = await vscode.window.showErrorMessage(`Gatescope: ${lines[0] ?? 'a Slurm job failed'}`, ...(failed ? ['Open Log'] : []));
    if (pick === 'Open Log' && failed) await vscode.window.showTextDocument(vscode.Uri.file(failed.log));
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.emitter.dispose();
  }
}
