/** The `gatescope.*` commands: palette, tree context menus, CodeLens and webview actions. */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { DiscoveredCheckpoint, DiscoveredRun } from '../discovery/scan';
import { JobCancelledError } from '../engine/client';
import { reportsToCsv } from '../report/csv';
import { reportsToMarkdown } from '../report/markdown';
import { reportsToHtml } from '../report/html';
import { SCHEMA_VERSION, type CheckpointReport } from '../report/schema';
import { withPathsRelativeTo } from '../report/paths';
import { writeFileAtomic } from '../report/write';
import { OutputPathError, checkOutputPath } from '../formats/output-guard';
import { LayerListError, parseLayerList } from '../transform/layers';
import type { ExportFormat } from '../protocol/messages';
import { checkpointLabel, headline } from '../ui-model/tree';
import type { Controller, Progress } from './controller';
import type { LensArgs } from './codelens';
import type { Panels } from './panels';
import { isNode, type Node } from './tree';
import { stepsToCsv, stepsToMarkdown } from '../report/steps-format';
import { walkIsCurrent } from '../ui-model/steps';
import { MAX_TASKS, parseSlurmRequest } from '../cluster/slurm';
import type { SlurmRuns } from './slurm';

type RunCkpt = { run: DiscoveredRun; ckpt: DiscoveredCheckpoint };

/**
 * A cancellable notification whose bar follows a job's fraction (whole percents only, so a job that
 * reports often does not flood the window). The one progress rule of the commands.
 */
function withJobProgress<T>(
  title: string,
  run: (onProgress: (fraction: number, message?: (percent: number) => string) => void, signal: AbortSignal) => Promise<T>,
): Thenable<T> {
  return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, async (progress, token) => {
    const ac = new AbortController();
    token.onCancellationRequested(() => ac.abort());
    let shown = 0;
    return run((fraction, message) => {
      const now = Math.round(fraction * 100);
      if (now > shown) {
        progress.report({ increment: now - shown, ...(message ? { message: message(now) } : {}) });
        shown = now;
      }
    }, ac.signal);
  });
}

export class Commands {
  constructor(
    private readonly c: Controller,
    private readonly panels: () => Panels,
    private readonly slurm?: () => SlurmRuns,
  ) {}

  register(context: vscode.ExtensionContext): void {
    const reg = (id: string, fn: (...args: unknown[]) => unknown): void => {
      context.subscriptions.push(
        vscode.commands.registerCommand(id, async (...args: unknown[]) => {
          try {
            await fn(...args);
          } catch (e) {
            if (e instanceof JobCancelledError) return;
            this.c.log.error(`${id}: ${(e as Error).message}`);
            void vscode.window.showErrorMessage(`Gatescope: ${(e as Error).message}`);
          }
        }),
      );
    };
    reg('gatescope.analyzeCheckpoint', (a) => this.analyzeCommand(a));
    reg('gatescope.compareRuns', (a) => this.compareRuns(typeof a === 'string' ? a : undefined, isNode(a) ? a : undefined));
    reg('gatescope.showDashboard', (a) => this.showDashboard(a));
    reg('gatescope.showLayerDetail', (a) => this.showLayerDetail(a));
    reg('gatescope.showSteps', (a) => this.showSteps(a));
    reg('gatescope.setBaseModel', (a) => this.setBaseModel(a));
    reg('gatescope.exportReport', (a, f) => this.exportCommand(a, f));
    reg('gatescope.cancelAnalysis', () => this.cancel());
    reg('gatescope.showLog', () => this.c.log.show(true));
    reg('gatescope.selectDevice', () => this.selectDevice());
    reg('gatescope.addFolder', () => this.addFolder());
    reg('gatescope.refresh', () => this.c.rescan());
    reg('gatescope.explainLens', (a) => this.explainLens(a));
    reg('gatescope.scrambleCopy', (a) => this.scrambleCopy(a));
    reg('gatescope.exportMask', (a) => this.exportMask(a));
    reg('gatescope.analyzeRunOnSlurm', (a, req) => this.analyzeOnSlurm(a, req));
  }

  // ---- pickers ---------------------------------------------------------------------------------

  private async ensureScanned(): Promise<void> {
    if (!this.c.scanned) await this.c.rescan();
  }

  private async pickRun(placeHolder: string, filter: (r: DiscoveredRun) => boolean = () => true): Promise<DiscoveredRun | undefined> {
    await this.ensureScanned();
    const runs = this.c.runs.filter(filter);
    if (runs.length === 0) {
      const pick = await vscode.window.showWarningMessage('Gatescope found no matching run in this workspace.', 'Add Folder...');
      if (pick) await this.addFolder();
      return undefined;
    }
    if (runs.length === 1) return runs[0];
    const item = await vscode.window.showQuickPick(
      runs.map((r) => ({ label: r.name, description: `${r.checkpoints.length} checkpoint(s)`, detail: r.root, run: r })),
      { placeHolder },
    );
    return item?.run;
  }

  private async pickCheckpoint(
    run: DiscoveredRun,
    placeHolder: string,
    filter: (c: DiscoveredCheckpoint) => boolean,
  ): Promise<DiscoveredCheckpoint | undefined> {
    const list = run.checkpoints.filter(filter);
    if (list.length === 0) {
      void vscode.window.showWarningMessage(`Gatescope: no matching checkpoint in ${run.name}.`);
      return undefined;
    }
    if (list.length === 1) return list[0];
    const item = await vscode.window.showQuickPick(
      [...list].reverse().map((c) => {
        const r = this.c.report(c.path);
        return { label: checkpointLabel(c), description: r ? headline(r) : c.state, detail: c.path, ckpt: c };
      }),
      { placeHolder },
    );
    return item?.ckpt;
  }

  /**
   * The run's complete checkpoints as Slurm job arrays. A second argument ({ tasks, partition?, sbatchArgs?,
   * out? }) skips the questions, for keybindings and automation; it is checked like anything typed.
   */
  private async analyzeOnSlurm(a: unknown, req: unknown): Promise<void> {
    const slurm = this.slurm?.();
    if (!slurm) throw new Error('Slurm is not available in this window');
    const run = this.runOf(a) ?? (await this.pickRun('Analyze which run on Slurm?', (r) => r.base.resolved !== null));
    if (!run) return;
    const cfg = vscode.workspace.getConfiguration('gatescope');
    const given = parseSlurmRequest(req);
    let tasks = given?.tasks;
    if (tasks === undefined) {
      const typed = await vscode.window.showInputBox({
        title: `Analyze ${run.name} on Slurm`,
        prompt: 'Shards (array tasks) per checkpoint',
        value: String(cfg.get<number>('slurm.tasks', 4)),
        validateInput: (v) => (/^\d+$/.test(v.trim()) && Number(v) >= 1 && Number(v) <= MAX_TASKS ? null : `a whole number from 1 to ${MAX_TASKS}`),
      });
      if (typed === undefined) return;
      tasks = Number(typed.trim());
    }
    const partition = given?.partition ?? (cfg.get<string>('slurm.partition', '') || undefined);
    const sbatchArgs = given?.sbatchArgs ?? cfg.get<string[]>('slurm.sbatchArgs', []).filter((x) => typeof x === 'string' && x.length > 0);
    const sub = await slurm.submit(run, { tasks, partition, sbatchArgs, out: given?.out });
    const jobs = sub.manifest.checkpoints.map((k) => k.arrayJob).join(', ');
    void vscode.window.showInformationMessage(
      `Gatescope: ${run.name} submitted to Slurm (${sub.manifest.checkpoints.length} checkpoint${sub.manifest.checkpoints.length > 1 ? 's' : ''} x ${tasks} shards; array job${sub.manifest.checkpoints.length > 1 ? 's' : ''} ${jobs}). The reports open when they land.`,
    );
  }

  private runOf(a: unknown): DiscoveredRun | undefined {
    if (typeof a === 'string') return this.c.findRun(a) ?? this.c.locate(a)?.run;
    if (isNode(a) && a.kind !== 'info') return this.c.findRun(a.run.id) ?? a.run;
    return undefined;
  }

  private async resolveCheckpoint(a: unknown, filter: (c: DiscoveredCheckpoint) => boolean, placeHolder: string): Promise<RunCkpt | undefined> {
    if (typeof a === 'string') {
      const loc = this.c.locate(a);
      if (loc) return loc;
    }
    if (isNode(a) && (a.kind === 'checkpoint' || a.kind === 'module' || a.kind === 'tensor')) return this.c.locate(a.ckpt.path) ?? { run: a.run, ckpt: a.ckpt };
    const run = this.runOf(a) ?? (await this.pickRun('Which run?', (r) => r.checkpoints.some(filter)));
    if (!run) return undefined;
    const ckpt = await this.pickCheckpoint(run, placeHolder, filter);
    return ckpt ? { run, ckpt } : undefined;
  }

  // ---- analysis --------------------------------------------------------------------------------

  private async analyzeCommand(a: unknown): Promise<void> {
    const loc = await this.resolveCheckpoint(a, (c) => c.state === 'complete', 'Analyse which checkpoint against its base?');
    if (!loc) return;
    let { run } = loc;
    if (!run.base.resolved) {
      const choice = await vscode.window.showWarningMessage(`Gatescope: no base model for ${run.name}. ${run.base.problem ?? ''}`, 'Set Base Model...');
      if (!choice) return;
      const updated = await this.setBaseModel(run);
      if (!updated?.base.resolved) return;
      run = updated;
    }
    await this.analyzeWithProgress(run, run.checkpoints.find((c) => c.path === loc.ckpt.path) ?? loc.ckpt);
  }

  /** The webview's "Analyse" button. */
  analyzeFromPanel(checkpoint: string): void {
    const loc = this.c.locate(checkpoint);
    if (loc)
      void this.analyzeWithProgress(loc.run, loc.ckpt).catch((e: unknown) => {
        if (!(e instanceof JobCancelledError)) void vscode.window.showErrorMessage(`Gatescope: ${(e as Error).message}`);
      });
  }

  private async analyzeWithProgress(run: DiscoveredRun, ckpt: DiscoveredCheckpoint): Promise<CheckpointReport | undefined> {
    const title = `Gatescope: analysing ${run.name} ${checkpointLabel(ckpt)}`;
    const report = await withJobProgress(title, (tick, signal) =>
      this.c.analyze(run, ckpt, { onProgress: (p: Progress) => tick(p.fraction, (now) => `${p.phase} ${now}%`), signal }),
    );
    // Not awaited: the command is done when the report is; the notification stays until the user acts.
    void vscode.window.showInformationMessage(`Gatescope: ${run.name} ${checkpointLabel(ckpt)}: ${headline(report)}.`, 'Open Dashboard').then((pick) => {
      if (pick) this.panels().showDashboard(run.id, ckpt.path);
    });
    return report;
  }

  private async compareRuns(baseArg?: string, node?: Node): Promise<void> {
    await this.ensureScanned();
    const byBase = new Map<string, DiscoveredRun[]>();
    for (const r of this.c.runs) {
      if (!r.base.resolved || !r.checkpoints.some((c) => c.state === 'complete')) continue;
      const list = byBase.get(r.base.resolved) ?? [];
      list.push(r);
      byBase.set(r.base.resolved, list);
    }
    let base = baseArg && byBase.has(baseArg) ? baseArg : node && node.kind !== 'info' ? (node.run.base.resolved ?? undefined) : undefined;
    if (!base || !byBase.has(base)) {
      const bases = [...byBase.keys()];
      if (bases.length === 0) {
        void vscode.window.showWarningMessage('Gatescope: comparing runs needs complete checkpoints of runs that share a base model.');
        return;
      }
      base =
        bases.length === 1
          ? bases[0]
          : (
              await vscode.window.showQuickPick(
                bases.map((b) => ({
                  label: path.basename(b),
                  description: byBase
                    .get(b)!
                    .map((r) => r.name)
                    .join(', '),
                  detail: b,
                  b,
                })),
                { placeHolder: 'Compare the runs of which base model?' },
              )
            )?.b;
      if (!base) return;
    }
    const runs = byBase.get(base)!;
    const items = runs.flatMap((r) => {
      const complete = r.checkpoints.filter((c) => c.state === 'complete' && c.path !== base);
      return complete.map((c, i) => ({
        label: `${r.name} ${checkpointLabel(c)}`,
        detail: c.path,
        picked: i === complete.length - 1,
        path: c.path,
        labelShort: `${r.name}${c.step !== null ? `@${c.step}` : ''}`,
      }));
    });
    const picked = await vscode.window.showQuickPick(items, {
      canPickMany: true,
      placeHolder: 'Compare which checkpoints (two or more)? Their changed masks are compared entry by entry (M2, M3).',
    });
    if (!picked) return;
    if (picked.length < 2) {
      void vscode.window.showWarningMessage('Gatescope: pick at least two checkpoints to compare.');
      return;
    }
    const b = base;
    await withJobProgress(`Gatescope: comparing ${picked.length} checkpoints`, (tick, signal) =>
      this.c.compare(
        b,
        picked.map((p) => p.path),
        picked.map((p) => p.labelShort),
        (p) => tick(p.fraction),
        signal,
      ),
    );
    this.panels().showCompare(b);
  }

  private cancel(): void {
    const n = this.c.cancelAll();
    void vscode.window.showInformationMessage(n ? `Gatescope: cancelled ${n} job(s).` : 'Gatescope: nothing is running.');
  }

  // ---- views -----------------------------------------------------------------------------------

  private async showDashboard(a: unknown): Promise<void> {
    const run = this.runOf(a) ?? (await this.pickRun('Show the dashboard of which run?'));
    if (!run) return;
    const ckpt = isNode(a) && a.kind === 'checkpoint' ? a.ckpt.path : typeof a === 'string' && this.c.locate(a) ? a : null;
    this.panels().showDashboard(run.id, ckpt);
  }

  /** The Step to Step panel of a run; the walk starts when the run has none yet, or its checkpoints changed since. */
  private async showSteps(a: unknown): Promise<void> {
    const run =
      this.runOf(a) ??
      (await this.pickRun('Walk which run step to step?', (r) => r.checkpoints.filter((c) => c.state === 'complete').length + (r.base.resolved ? 1 : 0) >= 2));
    if (!run) return;
    this.panels().showSteps(run.id);
    const j = this.c.stepsJob(run.id);
    const complete = run.checkpoints.filter((c) => c.state === 'complete').map((c) => c.path);
    if (j.kind === 'none' || (j.kind === 'done' && !walkIsCurrent(j.report, complete, run.base.resolved))) this.walkSteps(run, undefined);
  }

  /** Starts (or joins) a walk; its state, progress and errors show in the panel and the status bar. */
  private walkSteps(run: DiscoveredRun, learningRate: number | null | undefined): void {
    this.c.steps(run, { learningRate }).catch(() => undefined);
  }

  /** The panel's "Walk again" and "Set learning rate..." buttons. */
  async runStepsFromPanel(runId: string, askLearningRate: boolean): Promise<void> {
    const run = this.c.findRun(runId);
    if (!run) return;
    if (!askLearningRate) {
      this.walkSteps(run, undefined);
      return;
    }
    const current = this.c.stepsLearningRate(runId);
    const text = await vscode.window.showInputBox({
      title: `Learning rate of ${run.name}`,
      prompt: "The peak learning rate of the optimizer (e.g. 1e-6), for Gate III's bf16 prediction. Empty: read it from the run's files again.",
      value: current !== null ? String(current) : '',
      validateInput: (v) => {
        if (v.trim() === '') return null;
        const x = Number(v.trim());
        return Number.isFinite(x) && x > 0 && x < 1 ? null : 'a learning rate in (0, 1), e.g. 3e-6';
      },
    });
    if (text === undefined) return;
    this.walkSteps(run, text.trim() === '' ? null : Number(text.trim()));
  }

  async exportSteps(runId: string, format: 'json' | 'csv' | 'md'): Promise<void> {
    const run = this.c.findRun(runId);
    const j = this.c.stepsJob(runId);
    if (!run || j.kind !== 'done') return;
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri ?? vscode.Uri.file(path.dirname(run.root));
    const name = `gatescope-steps-${run.name.replace(/[^\w.-]+/g, '_')}.${format}`;
    const uri = await vscode.window.showSaveDialog({
      defaultUri: vscode.Uri.joinPath(folder, name),
      filters: { [format.toUpperCase()]: [format] },
      saveLabel: 'Export Step Report',
    });
    if (!uri) return;
    const target = await this.checkedOutput(path.resolve(uri.fsPath), false, 'the step report');
    if (!target) return;
    const shown = withPathsRelativeTo(j.report, path.dirname(target));
    await writeFileAtomic(target, format === 'csv' ? stepsToCsv(shown) : format === 'md' ? stepsToMarkdown(shown) : JSON.stringify(shown, null, 2) + '\n');
    const pick = await vscode.window.showInformationMessage(`Gatescope: exported the step report of ${run.name} to ${path.basename(target)}.`, 'Open');
    if (pick) await vscode.window.showTextDocument(uri);
  }

  private async showLayerDetail(a: unknown): Promise<void> {
    if (isNode(a) && a.kind === 'tensor' && a.tensor.layer !== null) {
      this.panels().showLayer(a.run.id, a.ckpt.path, a.tensor.layer, a.tensor.name);
      return;
    }
    const loc = await this.resolveCheckpoint(a, (c) => this.c.report(c.path) !== undefined, 'Show a layer of which analysed checkpoint?');
    if (!loc) return;
    const report = this.c.report(loc.ckpt.path)!;
    const layers = [...new Set(report.tensors.map((t) => t.layer).filter((l): l is number => l !== null))].sort((x, y) => x - y);
    if (layers.length === 0) {
      void vscode.window.showWarningMessage('Gatescope: this checkpoint has no layered tensors.');
      return;
    }
    const pick = await vscode.window.showQuickPick(
      layers.map((l) => {
        const g = report.summary.byLayer[String(l)];
        return { label: `layer ${l}`, description: g ? `${(g.unchanged * 100).toFixed(1)}% unchanged` : '', l };
      }),
      { placeHolder: 'Which layer?' },
    );
    if (pick) this.panels().showLayer(loc.run.id, loc.ckpt.path, pick.l, null);
  }

  // ---- settings-backed actions -----------------------------------------------------------------

  /** Stores a base override for the run in `gatescope.baseOverrides` and rescans. Returns the updated run. */
  async setBaseModel(a: unknown): Promise<DiscoveredRun | undefined> {
    const run = this.runOf(a) ?? (await this.pickRun('Set the base model of which run?'));
    if (!run) return undefined;
    const known = this.c.runs.flatMap((r) =>
      r.checkpoints
        .filter((c) => c.state === 'complete' && r.id !== run.id)
        .map((c) => ({ label: `${r.name} ${checkpointLabel(c)}`, detail: c.path, p: c.path })),
    );
    const browse = {
      label: '$(folder-opened) Browse...',
      detail: 'A model folder (safetensors, sharded or not) or one .safetensors file',
      p: null as string | null,
    };
    const pick = await vscode.window.showQuickPick([browse, ...known], { placeHolder: `Base model of ${run.name}` });
    if (!pick) return undefined;
    let chosen = pick.p;
    if (!chosen) {
      const uris = await vscode.window.showOpenDialog({
        canSelectFiles: true,
        canSelectFolders: true,
        canSelectMany: false,
        openLabel: 'Use as Base Model',
        filters: { 'Model folder or safetensors': ['safetensors', 'json'] },
      });
      if (!uris?.[0]) return undefined;
      chosen = uris[0].fsPath;
      if (path.basename(chosen).endsWith('.json')) chosen = path.dirname(chosen);
    }
    const root = this.c.roots.filter((r) => run.root === r || run.root.startsWith(r + path.sep)).sort((x, y) => y.length - x.length)[0];
    const rel = root ? path.relative(root, chosen) : chosen;
    const value = root && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel.split(path.sep).join('/') || '.' : chosen;
    const cfg = vscode.workspace.getConfiguration('gatescope');
    const current = { ...(cfg.get<Record<string, string>>('baseOverrides') ?? {}) };
    current[run.name] = value;
    const target = vscode.workspace.workspaceFolders?.length ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
    await cfg.update('baseOverrides', current, target);
    this.c.reloadSettings();
    await this.c.rescan();
    this.c.invalidateReports();
    const updated = this.c.findRun(run.id);
    if (updated && !updated.base.resolved) void vscode.window.showWarningMessage(`Gatescope: ${updated.base.problem ?? 'that base could not be read'}`);
    return updated;
  }

  private async selectDevice(): Promise<void> {
    const cur = this.c.config.device;
    const items = [
      { label: 'auto', description: 'CUDA when it works, else the CPU (logged once)' },
      { label: 'cpu', description: 'onnxruntime on the CPU' },
      { label: 'cuda', description: 'onnxruntime on an NVIDIA GPU; fails clearly when CUDA is unusable' },
    ].map((i) => ({ ...i, picked: i.label === cur, label: i.label === cur ? `$(check) ${i.label}` : i.label, value: i.label }));
    const pick = await vscode.window.showQuickPick(items, { placeHolder: `Compute device for the spectral pass (now: ${cur})` });
    if (pick) await vscode.workspace.getConfiguration('gatescope').update('device', pick.value, vscode.ConfigurationTarget.Global);
  }

  private async addFolder(): Promise<void> {
    const uris = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, canSelectMany: false, openLabel: 'Scan for Checkpoints' });
    if (uris?.[0]) await this.c.addRoot(uris[0].fsPath);
  }

  private async explainLens(a: unknown): Promise<void> {
    if (typeof a !== 'object' || a === null) return;
    const l = a as Partial<LensArgs>;
    if (typeof l.title !== 'string' || typeof l.detail !== 'string') return;
    const runId = typeof l.runId === 'string' && this.c.findRun(l.runId) ? l.runId : null;
    const actions = runId ? ['Open Dashboard'] : [];
    const show = l.severity === 'warning' ? vscode.window.showWarningMessage : vscode.window.showInformationMessage;
    const pick = await show(`${l.title.replace(/^Gatescope: /, '')}. ${l.detail}`, ...actions);
    if (pick && runId) this.panels().showDashboard(runId);
  }

  // ---- export ----------------------------------------------------------------------------------

  private async exportCommand(a: unknown, f: unknown): Promise<void> {
    const run = this.runOf(a) ?? (await this.pickRun('Export the reports of which run?', (r) => this.c.reports(r).length > 0));
    if (!run) return;
    const format =
      f === 'json' || f === 'csv' || f === 'md' || f === 'html'
        ? f
        : (
            await vscode.window.showQuickPick(
              [
                { label: 'HTML', description: 'one self-contained file with charts, no network', value: 'html' as const },
                { label: 'Markdown', value: 'md' as const },
                { label: 'CSV', value: 'csv' as const },
                { label: 'JSON', value: 'json' as const },
              ],
              { placeHolder: 'Export format' },
            )
          )?.value;
    if (format) await this.exportRun(run, format);
  }

  async exportRun(run: DiscoveredRun, format: ExportFormat): Promise<void> {
    const reports = this.c.reports(run);
    if (reports.length === 0) {
      void vscode.window.showWarningMessage(`Gatescope: ${run.name} has no analysed checkpoint to export.`);
      return;
    }
    // Checkpoint paths relative to the exported file's folder, as the CLI writes them: a shared file does not carry the home folder.
    const render = (rs: CheckpointReport[]): string =>
      format === 'csv'
        ? reportsToCsv(rs)
        : format === 'md'
          ? reportsToMarkdown(rs)
          : format === 'html'
            ? reportsToHtml(rs, { title: `Gatescope: ${run.name}` })
            : JSON.stringify({ schemaVersion: SCHEMA_VERSION, kind: 'gatescope.report-set', reports: rs }, null, 2) + '\n';
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri ?? vscode.Uri.file(path.dirname(run.root));
    const name = `gatescope-${run.name.replace(/[^\w.-]+/g, '_')}.${format}`;
    const uri = await vscode.window.showSaveDialog({
      defaultUri: vscode.Uri.joinPath(folder, name),
      filters: { [format.toUpperCase()]: [format] },
      saveLabel: 'Export Report',
    });
    if (!uri) return;
    const target = await this.checkedOutput(path.resolve(uri.fsPath), false, 'the report');
    if (!target) return;
    await writeFileAtomic(target, render(withPathsRelativeTo(reports, path.dirname(target))));
    const pick = await vscode.window.showInformationMessage(`Gatescope: exported ${reports.length} report(s) to ${path.basename(target)}.`, 'Open');
    if (pick) await vscode.window.showTextDocument(uri);
  }

  /**
   * The one output guard (the CLI's too): nothing is ever written inside a folder that holds weights,
   * symlinks resolved. Returns the real path to write, or undefined after saying why not.
   */
  private async checkedOutput(target: string, mustBeNew: boolean, what: string): Promise<string | undefined> {
    try {
      const inputs = this.c.runs.flatMap((r) => r.checkpoints.map((c) => c.path));
      return await checkOutputPath(target, { inputs, mustBeNew, mkdir: true, what });
    } catch (e) {
      if (!(e instanceof OutputPathError)) throw e;
      void vscode.window.showErrorMessage(`Gatescope: ${e.message}.`);
      return undefined;
    }
  }

  // ---- geometry scrambling and sparse-RL masks (run in the engine process) ---------------------

  private async pickModel(a: unknown, placeHolder: string): Promise<string | undefined> {
    if (typeof a === 'string') return a;
    if (isNode(a) && a.kind === 'checkpoint') return a.ckpt.path;
    await this.ensureScanned();
    const models = this.c.runs.flatMap((r) =>
      r.checkpoints
        .filter((c) => c.state === 'complete')
        .map((c) => ({ label: `${r.name} ${checkpointLabel(c)}`, description: r.baseOf.length ? 'base model' : '', detail: c.path, p: c.path })),
    );
    const browse = { label: '$(folder-opened) Browse...', description: '', detail: 'A model folder or a .safetensors file', p: '' };
    const pick = await vscode.window.showQuickPick([...models, browse], { placeHolder });
    if (!pick) return undefined;
    if (pick.p) return pick.p;
    const uris = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectFolders: true, canSelectMany: false, openLabel: 'Use This Model' });
    return uris?.[0]?.fsPath;
  }

  private async runEngineJob(title: string, spec: Parameters<Controller['engine']['run']>[0]): Promise<unknown> {
    return withJobProgress(title, async (tick, signal) => {
      const { result } = await this.c.runJob(title.replace(/^Gatescope: /, ''), spec, { onProgress: (p) => tick(p.fraction, () => p.tensor), signal });
      return result;
    });
  }

  /** The paper's Gate II experiment: a function-preserving copy whose chosen layers have scrambled geometry. */
  private async scrambleCopy(a: unknown): Promise<void> {
    const base = await this.pickModel(a, 'Scramble the geometry of which model (a new copy is written)?');
    if (!base) return;
    // The CLI's parser: a reversed range or an empty entry is refused in the box, never silently dropped.
    const problem = (v: string): string | null => {
      try {
        parseLayerList(v);
        return null;
      } catch (e) {
        return e instanceof LayerListError ? e.message : String(e);
      }
    };
    const layersText = await vscode.window.showInputBox({ prompt: 'Layers to scramble (e.g. 20,25 or 0-3)', validateInput: problem });
    if (!layersText) return;
    const layers = parseLayerList(layersText);
    const how = await vscode.window.showQuickPick(
      [
        { label: 'Rotate and permute', description: 'per-head orthogonal rotation of v/o and a permutation of heads', rotate: true, permute: true },
        { label: 'Rotate', description: 'per-head orthogonal rotation of v/o (Haar-random)', rotate: true, permute: false },
        { label: 'Permute', description: 'a consistent permutation of heads across q/k/v/o (exact)', rotate: false, permute: true },
      ],
      { placeHolder: 'Which transform? The copy computes the same function.' },
    );
    if (!how) return;
    const parent = path.dirname(path.resolve(base.endsWith('.safetensors') ? path.dirname(base) : base));
    const uri = await vscode.window.showSaveDialog({
      defaultUri: vscode.Uri.file(path.join(parent, `${path.basename(base)}-scrambled`)),
      saveLabel: 'Write Scrambled Copy Here',
    });
    if (!uri) return;
    const out = await this.checkedOutput(path.resolve(uri.fsPath), true, 'the scrambled checkpoint');
    if (!out) return;
    const seed = Math.floor(Math.random() * 2 ** 31);
    await this.runEngineJob(`Gatescope: writing a scrambled copy of ${path.basename(base)}`, {
      kind: 'scramble',
      base,
      out,
      layers,
      rotate: how.rotate,
      permute: how.permute,
      rotation: 'haar',
      seed,
    });
    void vscode.window.showInformationMessage(
      `Gatescope: wrote ${path.basename(out)} (layers ${layers.join(', ')}, seed ${seed}; see SCRAMBLE.json). Train from it to test Gate II on your model.`,
    );
    await this.c.rescan();
  }

  /** Sparse-RL masks (principal / non-principal / low-magnitude / union) as a safetensors file. */
  private async exportMask(a: unknown): Promise<void> {
    const base = await this.pickModel(a, 'Export sparse-RL masks of which base model?');
    if (!base) return;
    const kind = await vscode.window.showQuickPick(
      [
        { label: 'union', description: "low-magnitude or non-principal (the paper's best sparse mask, about 74% of weights)", value: 'union' as const },
        { label: 'low', description: 'bottom alpha of |W0|', value: 'low' as const },
        { label: 'nonprincipal', description: 'not in the top alpha of the rank-k reconstruction', value: 'nonprincipal' as const },
        { label: 'principal', description: 'top alpha of |rank-k reconstruction of W0| (for comparison: it hurts RL)', value: 'principal' as const },
      ],
      { placeHolder: 'Which mask?' },
    );
    if (!kind) return;
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri ?? vscode.Uri.file(path.dirname(path.resolve(base)));
    const uri = await vscode.window.showSaveDialog({
      defaultUri: vscode.Uri.joinPath(folder, `masks-${kind.value}.safetensors`),
      filters: { safetensors: ['safetensors'] },
      saveLabel: 'Export Masks',
    });
    if (!uri) return;
    const out = await this.checkedOutput(path.resolve(uri.fsPath), true, 'the mask file');
    if (!out) return;
    const cfg = this.c.config;
    await this.runEngineJob(`Gatescope: exporting ${kind.value} masks`, {
      kind: 'mask',
      base,
      out,
      maskKind: kind.value,
      alpha: cfg.analysis.alpha,
      k: cfg.analysis.k,
      allModules: false,
      device: cfg.device,
    });
    void vscode.window.showInformationMessage(
      `Gatescope: wrote ${path.basename(out)}: one 0/1 mask per linear weight (alpha ${cfg.analysis.alpha}, k ${cfg.analysis.k}). docs/sparse-rl-masks.md shows how to apply it to gradients.`,
    );
  }
}
