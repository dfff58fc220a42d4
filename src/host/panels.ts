/**
 * The webview panels (run dashboard, layer detail, runs comparison): their HTML with a nonce CSP, the
 * data each one is sent, the messages each one may send (validated in src/protocol/messages.ts), and
 * the serializers that bring them back after a reload.
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { DiscoveredRun } from '../discovery/scan';
import {
  parsePanelState,
  parseWebviewMessage,
  type CompareData,
  type DashboardData,
  type ExportFormat,
  type HostToWebview,
  type LayerData,
  type PanelKind,
  type PanelState,
  type StepsData,
  type WebviewToHost,
} from '../protocol/messages';
import { checkpointsSinceWalk, slimSteps, stepsView, type StepsView } from '../ui-model/steps';
import type { StepsReport } from '../report/steps-schema';
import { headInfoFromConfig, type HeadInfo } from '../ui-model/heads';
import { readModelConfig } from '../discovery/model-config';
import { slimReport, stepSeries } from '../ui-model/heatmap';
import { checkpointView } from '../ui-model/tree';
import type { Controller } from './controller';

export const VIEW_TYPES: Record<PanelKind, string> = {
  dashboard: 'gatescope.dashboard',
  layer: 'gatescope.layer',
  compare: 'gatescope.compare',
  steps: 'gatescope.steps',
};

export interface PanelActions {
  analyze(checkpoint: string): void;
  exportRun(run: DiscoveredRun, format: ExportFormat): void;
  compareRuns(base?: string): void;
  /** Walk the run step to step again (asking for a learning rate first, when asked to). */
  runSteps(runId: string, askLearningRate: boolean): void;
  exportSteps(runId: string, format: 'json' | 'csv' | 'md'): void;
}

interface Entry {
  panel: vscode.WebviewPanel;
  state: PanelState;
  ready: boolean;
  lastSignature: string;
  lastBusy: string | null;
}

function nonce(): string {
  return randomBytes(18)
    .toString('base64')
    .replace(/[^A-Za-z0-9]/g, '');
}

export class Panels implements vscode.Disposable {
  private readonly entries = new Set<Entry>();
  private readonly subs: vscode.Disposable[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly stepsViews = new WeakMap<StepsReport, { slim: StepsReport; view: StepsView }>();

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly c: Controller,
    private readonly actions: PanelActions,
  ) {
    this.subs.push(c.onDidChange(() => this.refreshSoon()));
    for (const kind of Object.keys(VIEW_TYPES) as PanelKind[]) {
      this.subs.push(
        vscode.window.registerWebviewPanelSerializer(VIEW_TYPES[kind], {
          deserializeWebviewPanel: async (panel, raw) => {
            // The saved state is untrusted input: validate it, and close the panel when it is unusable.
            const st = parsePanelState((raw as { panelState?: unknown } | undefined)?.panelState);
            if (!st || st.panel !== kind) {
              panel.dispose();
              return;
            }
            this.attach(panel, st);
          },
        }),
      );
    }
  }

  private get roots(): vscode.Uri[] {
    // Narrow resource roots: the webview bundle and the media folder, nothing else.
    return [vscode.Uri.joinPath(this.context.extensionUri, 'dist', 'webview'), vscode.Uri.joinPath(this.context.extensionUri, 'media')];
  }

  private create(kind: PanelKind, title: string, state: PanelState): Entry {
    const panel = vscode.window.createWebviewPanel(VIEW_TYPES[kind], title, vscode.ViewColumn.Active, {
      enableScripts: true,
      localResourceRoots: this.roots,
      retainContextWhenHidden: false,
    });
    return this.attach(panel, state);
  }

  private attach(panel: vscode.WebviewPanel, state: PanelState): Entry {
    panel.webview.options = { enableScripts: true, localResourceRoots: this.roots };
    panel.iconPath = vscode.Uri.joinPath(this.context.extensionUri, 'media', 'gatescope.svg');
    panel.webview.html = this.html(panel.webview, state.panel);
    const entry: Entry = { panel, state, ready: false, lastSignature: '', lastBusy: null };
    this.entries.add(entry);
    panel.title = this.title(state);
    const subs = [
      panel.webview.onDidReceiveMessage((m: unknown) => {
        const msg = parseWebviewMessage(m);
        if (!msg) {
          this.c.log.warn('dropped an unknown message from a Gatescope webview');
          return;
        }
        void this.onMessage(entry, msg);
      }),
      panel.onDidChangeViewState(() => {
        if (panel.visible) void this.push(entry, true);
      }),
    ];
    panel.onDidDispose(() => {
      this.entries.delete(entry);
      for (const s of subs) s.dispose();
    });
    return entry;
  }

  html(webview: vscode.Webview, kind: PanelKind): string {
    const n = nonce();
    const script = webview.asWebviewUri(vscode.Uri.joinPath(this.context.extensionUri, 'dist', 'webview', 'main.js'));
    const css = webview.asWebviewUri(vscode.Uri.joinPath(this.context.extensionUri, 'media', 'webview.css'));
    const csp = [
      "default-src 'none'",
      `img-src ${webview.cspSource} data: blob:`,
      `style-src ${webview.cspSource}`,
      `font-src ${webview.cspSource}`,
      `script-src 'nonce-${n}'`,
    ].join('; ');
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${css.toString()}">
<title>Gatescope</title>
</head>
<body data-panel="${kind}">
<main id="app"><p class="muted">Loading...</p></main>
<script nonce="${n}" src="${script.toString()}"></script>
</body>
</html>`;
  }

  private title(s: PanelState): string {
    if (s.panel === 'dashboard') return `Gatescope: ${this.c.findRun(s.runId)?.name ?? path.basename(s.runId)}`;
    if (s.panel === 'layer') return `Gatescope: layer ${s.layer}`;
    if (s.panel === 'steps') return `Gatescope: ${this.c.findRun(s.runId)?.name ?? path.basename(s.runId)} step to step`;
    return 'Gatescope: runs comparison';
  }

  private find(pred: (s: PanelState) => boolean): Entry | undefined {
    for (const e of this.entries) if (pred(e.state)) return e;
    return undefined;
  }

  showDashboard(runId: string, checkpoint: string | null = null): void {
    const existing = this.find((s) => s.panel === 'dashboard' && s.runId === runId);
    if (existing && existing.state.panel === 'dashboard') {
      if (checkpoint) existing.state = { ...existing.state, checkpoint };
      existing.panel.reveal();
      void this.push(existing, true);
      return;
    }
    this.create('dashboard', 'Gatescope', { panel: 'dashboard', runId, checkpoint, metric: 'unchanged' });
  }

  showLayer(runId: string, checkpoint: string, layer: number, tensor: string | null): void {
    const state: PanelState = { panel: 'layer', runId, checkpoint, layer, tensor };
    const existing = this.find((s) => s.panel === 'layer');
    if (existing) {
      existing.state = state;
      existing.panel.title = this.title(state);
      existing.panel.reveal();
      void this.push(existing, true);
      return;
    }
    this.create('layer', 'Gatescope', state);
  }

  showSteps(runId: string): void {
    const existing = this.find((s) => s.panel === 'steps' && s.runId === runId);
    if (existing) {
      existing.panel.reveal();
      void this.push(existing, true);
      return;
    }
    this.create('steps', 'Gatescope', { panel: 'steps', runId, grid: 'module' });
  }

  showCompare(base: string): void {
    const existing = this.find((s) => s.panel === 'compare' && s.base === base);
    if (existing) {
      existing.panel.reveal();
      void this.push(existing, true);
      return;
    }
    this.create('compare', 'Gatescope', { panel: 'compare', base, module: 'all' });
  }

  private refreshSoon(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      for (const e of this.entries) void this.push(e, false);
    }, 400);
  }

  private post(e: Entry, m: HostToWebview): void {
    void e.panel.webview.postMessage(m);
  }

  private async onMessage(e: Entry, m: WebviewToHost): Promise<void> {
    const s = e.state;
    switch (m.type) {
      case 'ready':
        // The webview's own saved state wins when it is for the same panel (it carries e.g. the metric).
        if (m.state && m.state.panel === s.panel) e.state = m.state;
        e.ready = true;
        await this.push(e, true);
        return;
      case 'state':
        if (m.state.panel === s.panel) e.state = m.state;
        return;
      case 'selectCheckpoint':
        if (s.panel === 'dashboard' && this.c.findRun(s.runId)?.checkpoints.some((c) => c.path === m.checkpoint)) {
          e.state = { ...s, checkpoint: m.checkpoint };
          await this.push(e, true);
        }
        return;
      case 'openLayer': {
        const loc = this.c.locate(m.checkpoint);
        if (loc && this.c.report(m.checkpoint)?.tensors.some((t) => t.layer === m.layer)) this.showLayer(loc.run.id, m.checkpoint, m.layer, m.tensor);
        return;
      }
      case 'openDashboard':
        if (this.c.findRun(m.runId)) this.showDashboard(m.runId);
        return;
      case 'openSteps':
        // The command: it opens the panel and starts the walk when the run has none yet.
        if (this.c.findRun(m.runId)) void vscode.commands.executeCommand('gatescope.showSteps', m.runId);
        return;
      case 'runSteps':
        if (s.panel === 'steps' && this.c.findRun(s.runId)) this.actions.runSteps(s.runId, m.askLearningRate);
        return;
      case 'analyze':
        if (this.c.locate(m.checkpoint)) this.actions.analyze(m.checkpoint);
        return;
      case 'export': {
        if (s.panel === 'steps') {
          if (m.format !== 'html' && this.c.stepsJob(s.runId).kind === 'done') this.actions.exportSteps(s.runId, m.format);
          return;
        }
        const run = s.panel === 'compare' ? undefined : this.c.findRun(s.runId);
        if (run) this.actions.exportRun(run, m.format);
        return;
      }
      case 'compareRuns':
        this.actions.compareRuns(s.panel === 'compare' ? s.base : undefined);
        return;
    }
  }

  private async push(e: Entry, force: boolean): Promise<void> {
    if (!e.ready) return;
    const s = e.state;
    e.panel.title = this.title(s);
    if (s.panel === 'dashboard') {
      const d = this.dashboardData(s.runId, s.checkpoint);
      if (typeof d === 'string') return this.postError(e, d, force);
      const sig = JSON.stringify([d.selected, d.checkpoints.map((c) => `${c.state}|${c.analysed}`), d.report?.createdAt, d.series.length, d.base]);
      return this.postChanged(e, force, sig, d.busy, { type: 'dashboard', data: d });
    }
    if (s.panel === 'layer') {
      const d = await this.layerData(s.runId, s.checkpoint, s.layer, s.tensor);
      if (typeof d === 'string') return this.postError(e, d, force);
      const sig = JSON.stringify([
        d.checkpoint,
        d.layer,
        d.focus,
        this.c.report(d.checkpoint)?.createdAt,
        d.history.map((h) => h.points.length),
        d.consensus.length,
      ]);
      if (force || sig !== e.lastSignature) {
        e.lastSignature = sig;
        this.post(e, { type: 'layer', data: d });
      }
      return;
    }
    if (s.panel === 'steps') {
      const d = this.stepsData(s.runId);
      if (typeof d === 'string') return this.postError(e, d, force);
      const sig = JSON.stringify([d.state, d.report?.createdAt, d.error, d.base, d.newCheckpoints]);
      return this.postChanged(e, force, sig, d.busy, { type: 'steps', data: d });
    }
    const d = this.compareData(s.base);
    if (typeof d === 'string') return this.postError(e, d, force);
    const sig = d.report.createdAt;
    if (force || sig !== e.lastSignature) {
      e.lastSignature = sig;
      this.post(e, { type: 'compare', data: d });
    }
  }

  /** The panel's data when it changed (by its signature); else only the busy line, when that changed. */
  private postChanged(e: Entry, force: boolean, sig: string, busy: string | null, m: HostToWebview): void {
    if (force || sig !== e.lastSignature) {
      e.lastSignature = sig;
      e.lastBusy = busy;
      this.post(e, m);
    } else if (busy !== e.lastBusy) {
      e.lastBusy = busy;
      this.post(e, { type: 'busy', text: busy });
    }
  }

  private postError(e: Entry, message: string, force: boolean): void {
    const sig = `error:${message}`;
    if (!force && sig === e.lastSignature) return;
    e.lastSignature = sig;
    this.post(e, { type: 'error', message });
  }

  dashboardData(runId: string, checkpoint: string | null): DashboardData | string {
    const run = this.c.findRun(runId);
    if (!run) return this.c.scanned ? `The run ${runId} is not in the workspace any more.` : 'Looking for the run...';
    const reports = this.c.reports(run);
    let selected = checkpoint && run.checkpoints.some((c) => c.path === checkpoint) ? checkpoint : null;
    selected ??= reports.length ? reports[reports.length - 1].checkpoint : (run.checkpoints[run.checkpoints.length - 1]?.path ?? null);
    const report = selected ? this.c.report(selected) : undefined;
    const running = run.checkpoints.find((c) => this.c.job(c.path).kind === 'running');
    const rj = running ? this.c.job(running.path) : undefined;
    const busy = running && rj?.kind === 'running' ? `analysing ${checkpointView(running, rj, true).label}: ${Math.round(rj.fraction * 100)}%` : null;
    return {
      runId: run.id,
      runName: run.name,
      base: run.base.resolved,
      baseProblem: run.base.resolved ? null : (run.base.problem ?? 'no base model'),
      checkpoints: run.checkpoints.map((c) => {
        const job = this.c.job(c.path);
        const v = checkpointView(c, job, run.base.resolved !== null);
        return {
          path: c.path,
          step: c.step,
          label: v.label,
          description: v.description,
          state: c.state === 'complete' ? job.kind : c.state,
          analysed: job.kind === 'done',
        };
      }),
      selected,
      report: report ? slimReport(report) : null,
      series: stepSeries(reports),
      busy,
    };
  }

  async layerData(runId: string, checkpoint: string, layer: number, focus: string | null = null): Promise<LayerData | string> {
    const run = this.c.findRun(runId);
    if (!run) return this.c.scanned ? 'The run is not in the workspace any more.' : 'Looking for the run...';
    const report = this.c.report(checkpoint);
    if (!report) return 'This checkpoint has not been analysed yet (run "Gatescope: Analyze Checkpoint vs Base").';
    const tensors = report.tensors.filter((t) => t.layer === layer);
    const layers = [...new Set(report.tensors.map((t) => t.layer).filter((l): l is number => l !== null))].sort((a, b) => a - b);
    const names = new Set(tensors.map((t) => t.name));
    const history = [...names].map((tensor) => ({
      tensor,
      points: this.c.reports(run).map((r) => {
        const t = r.tensors.find((x) => x.name === tensor);
        return { step: r.step, checkpoint: r.checkpoint, unchanged: t?.unchanged ?? NaN, row: t?.rowChangedRatio ?? null, col: t?.colChangedRatio ?? null };
      }),
    }));
    const cons = run.base.resolved ? this.c.consistency.get(run.base.resolved) : undefined;
    const consensus = (cons?.tensors ?? [])
      .filter((t) => t.layer === layer && t.consensus)
      .map((t) => ({ tensor: t.name, runs: cons!.runs.map((r) => r.label), ...t.consensus! }));
    return {
      runId: run.id,
      runName: run.name,
      checkpoint,
      step: report.step,
      layer,
      focus,
      layers,
      tensors,
      history,
      heads: await this.heads(checkpoint, run.base.resolved),
      consensus,
      settings: { k: report.settings.k, alpha: report.settings.alpha },
    };
  }

  /** Head geometry from config.json beside the checkpoint or its base (read non-blocking: a FIFO cannot hang the host). */
  private async heads(checkpoint: string, base: string | null): Promise<HeadInfo | null> {
    for (const p of [checkpoint, base]) {
      if (!p) continue;
      const h = headInfoFromConfig(await readModelConfig(p));
      if (h) return h;
    }
    return null;
  }

  stepsData(runId: string): StepsData | string {
    const run = this.c.findRun(runId);
    if (!run) return this.c.scanned ? `The run ${runId} is not in the workspace any more.` : 'Looking for the run...';
    const j = this.c.stepsJob(runId);
    const report = j.kind === 'done' ? j.report : null;
    const shown = report ? this.stepsShown(report) : null;
    return {
      runId,
      runName: run.name,
      base: run.base.resolved,
      state: j.kind,
      busy: j.kind === 'running' ? `walking the run step to step: ${Math.round(j.fraction * 100)}%` : null,
      error: j.kind === 'error' ? j.message : null,
      report: shown?.slim ?? null,
      view: shown?.view ?? null,
      learningRate: this.c.stepsLearningRate(runId),
      newCheckpoints: report
        ? checkpointsSinceWalk(
            report,
            run.checkpoints.filter((c) => c.state === 'complete').map((c) => c.path),
          )
        : 0,
    };
  }

  /**
   * What the panel shows of a walk, built once per walk (the panels refresh on every progress tick): the
   * grids come from the per-tensor rows, which stay on this side.
   */
  private stepsShown(report: StepsReport): { slim: StepsReport; view: StepsView } {
    let v = this.stepsViews.get(report);
    if (!v) this.stepsViews.set(report, (v = { slim: slimSteps(report), view: stepsView(report) }));
    return v;
  }

  compareData(base: string): CompareData | string {
    const r = this.c.consistency.get(base);
    if (!r) return 'No comparison for this base yet: run "Gatescope: Compare Runs".';
    return {
      base,
      report: {
        ...r,
        tensors: r.tensors.map((t) => {
          const copy = { ...t };
          delete copy.consensus;
          return copy;
        }),
      },
    };
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const s of this.subs) s.dispose();
    for (const e of [...this.entries]) e.panel.dispose();
  }
}
