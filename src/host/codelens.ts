/** CodeLens on training configs: rules in src/ui-model/lenses.ts, run state from the controller. */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { DiscoveredRun } from '../discovery/scan';
import { outputDirCandidates, trainingConfigLenses, type LensSpec } from '../ui-model/lenses';
import { headline } from '../ui-model/tree';
import type { Controller } from './controller';

export const CONFIG_SELECTOR: vscode.DocumentSelector = [
  { scheme: 'file', language: 'yaml' },
  { scheme: 'file', language: 'json' },
  { scheme: 'file', language: 'jsonc' },
  { scheme: 'file', language: 'python' },
  { scheme: 'file', language: 'shellscript' },
];

/** What the explain command receives: a plain, serialisable object. */
export interface LensArgs {
  title: string;
  detail: string;
  severity: 'info' | 'warning';
  runId: string | null;
}

const MAX_TEXT = 2_000_000;

export class ConfigLensProvider implements vscode.CodeLensProvider, vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.emitter.event;
  private readonly sub: vscode.Disposable;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly c: Controller) {
    this.sub = c.onDidChange(() => {
      if (this.timer) return;
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.emitter.fire();
      }, 1000);
    });
  }

  /** The run whose root is (or lies under) one of the candidate output folders. */
  private runFor(candidates: string[]): DiscoveredRun | undefined {
    const norm = candidates.map((c) => path.resolve(c));
    return this.c.runs.find((r) => norm.some((c) => r.root === c || r.root.startsWith(c + path.sep)));
  }

  provideCodeLenses(doc: vscode.TextDocument): vscode.CodeLens[] {
    const text = doc.getText();
    if (text.length > MAX_TEXT) return [];
    if (!vscode.workspace.getConfiguration('gatescope').get<boolean>('codeLens', true)) return [];
    const specs = trainingConfigLenses(doc.fileName, text);
    if (specs.length === 0) return [];
    const ws = (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
    // The run this file writes to, for the Gate lenses' "open dashboard" link.
    let fileRun: DiscoveredRun | undefined;
    for (const s of specs) {
      if (s.kind !== 'output') continue;
      fileRun ??= this.runFor(outputDirCandidates(s.value, path.dirname(doc.fileName), ws, path.join, path.isAbsolute));
    }
    const lenses: vscode.CodeLens[] = [];
    for (const s of specs) {
      const range = new vscode.Range(s.line, s.column, s.line, s.column + s.key.length);
      if (s.kind === 'output') {
        const run = this.runFor(outputDirCandidates(s.value, path.dirname(doc.fileName), ws, path.join, path.isAbsolute));
        lenses.push(new vscode.CodeLens(range, { title: this.outputTitle(run), command: 'gatescope.explainLens', arguments: [this.args(s, run)] }));
        if (run) lenses.push(new vscode.CodeLens(range, { title: 'Open dashboard', command: 'gatescope.showDashboard', arguments: [run.id] }));
        continue;
      }
      lenses.push(new vscode.CodeLens(range, { title: s.title, tooltip: s.detail, command: 'gatescope.explainLens', arguments: [this.args(s, fileRun)] }));
      // The learning rate sets Gate III's bf16 prediction: the run's step-to-step view sets it beside what each step changed.
      if (s.kind === 'gate3-lr' && fileRun)
        lenses.push(
          new vscode.CodeLens(range, {
            title: 'Step to step',
            tooltip: `How sparse each step of ${fileRun.name} is, against what bf16 predicts at this learning rate`,
            command: 'gatescope.showSteps',
            arguments: [fileRun.id],
          }),
        );
    }
    return lenses;
  }

  private outputTitle(run: DiscoveredRun | undefined): string {
    if (!run) return 'Gatescope: no checkpoints here yet';
    const n = run.checkpoints.length;
    const reports = this.c.reports(run);
    const last = reports[reports.length - 1];
    const running = run.checkpoints.find((c) => this.c.job(c.path).kind === 'running');
    const parts = [`Gatescope: ${n} checkpoint${n === 1 ? '' : 's'}`];
    if (running) parts.push(`analysing${running.step !== null ? ` step ${running.step}` : ''}`);
    if (last) parts.push(`${last.step !== null ? `step ${last.step}: ` : ''}${headline(last)}`);
    else if (!run.base.resolved) parts.push('no base model');
    return parts.join(' · ');
  }

  private args(s: LensSpec, run: DiscoveredRun | undefined): LensArgs {
    return { title: s.title, detail: s.detail, severity: s.severity, runId: run?.id ?? null };
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.sub.dispose();
    this.emitter.dispose();
  }
}
