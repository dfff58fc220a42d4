/** The "Runs" tree: runs -> checkpoints -> module groups -> tensors. Labels come from src/ui-model/tree.ts. */
import * as vscode from 'vscode';
import type { DiscoveredCheckpoint, DiscoveredRun } from '../discovery/scan';
import { MODULE_KINDS, type ModuleKind, type TensorDiff } from '../report/schema';
import { checkpointView, moduleGroupView, runDescription, tensorView } from '../ui-model/tree';
import type { Controller } from './controller';
import type { SlurmRuns, SlurmSubmission } from './slurm';
import { slurmView } from '../ui-model/slurm';

export type Node =
  | { kind: 'run'; run: DiscoveredRun }
  | { kind: 'checkpoint'; run: DiscoveredRun; ckpt: DiscoveredCheckpoint }
  | { kind: 'module'; run: DiscoveredRun; ckpt: DiscoveredCheckpoint; module: ModuleKind }
  | { kind: 'tensor'; run: DiscoveredRun; ckpt: DiscoveredCheckpoint; tensor: TensorDiff }
  | { kind: 'slurm'; run: DiscoveredRun; sub: SlurmSubmission; index: number }
  | { kind: 'info'; text: string; tooltip?: string };

export function isNode(x: unknown): x is Node {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as { kind?: unknown }).kind === 'string' &&
    ['run', 'checkpoint', 'module', 'tensor', 'slurm', 'info'].includes((x as { kind: string }).kind)
  );
}

export class RunsTree implements vscode.TreeDataProvider<Node>, vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  private timer: NodeJS.Timeout | undefined;
  private readonly subs: vscode.Disposable[];

  constructor(
    private readonly c: Controller,
    private readonly slurm?: SlurmRuns,
  ) {
    // Progress fires often: refresh at most four times a second.
    const refresh = (): void => {
      if (this.timer) return;
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.emitter.fire(undefined);
      }, 250);
    };
    this.subs = [c.onDidChange(refresh), ...(slurm ? [slurm.onDidChange(refresh)] : [])];
  }

  getTreeItem(n: Node): vscode.TreeItem {
    switch (n.kind) {
      case 'run': {
        const item = new vscode.TreeItem(n.run.name, vscode.TreeItemCollapsibleState.Expanded);
        item.id = `run:${n.run.id}`;
        item.description = runDescription(n.run);
        item.tooltip = [
          n.run.root,
          n.run.base.resolved
            ? `base: ${n.run.base.resolved}${n.run.base.source ? `\n(from ${n.run.base.source})` : ''}`
            : (n.run.base.problem ?? 'no base model'),
        ].join('\n');
        item.iconPath = new vscode.ThemeIcon(n.run.baseOf.length > 0 && !n.run.base.resolved ? 'database' : 'beaker');
        item.contextValue = n.run.baseOf.length > 0 && !n.run.base.resolved ? 'gatescope.baseModel' : 'gatescope.run';
        item.resourceUri = vscode.Uri.file(n.run.root);
        return item;
      }
      case 'checkpoint': {
        const job = this.c.job(n.ckpt.path);
        const v = checkpointView(n.ckpt, job, n.run.base.resolved !== null, n.run.baseOf.length > 0);
        const item = new vscode.TreeItem(v.label, job.kind === 'done' ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
        item.id = `ckpt:${n.ckpt.path}`;
        item.description = v.description;
        item.tooltip = v.tooltip;
        item.iconPath = new vscode.ThemeIcon(v.icon, v.color ? new vscode.ThemeColor(v.color) : undefined);
        item.contextValue = `gatescope.${v.context}`;
        if (job.kind === 'done') item.command = { command: 'gatescope.showDashboard', title: 'Show Run Dashboard', arguments: [n] };
        return item;
      }
      case 'module': {
        const g = this.c.report(n.ckpt.path)?.summary.byModule[n.module];
        const v = g ? moduleGroupView(n.module, g) : { label: n.module, description: '', tooltip: '' };
        const item = new vscode.TreeItem(v.label, vscode.TreeItemCollapsibleState.Collapsed);
        item.id = `mod:${n.ckpt.path}:${n.module}`;
        item.description = v.description;
        item.tooltip = v.tooltip;
        item.iconPath = new vscode.ThemeIcon('symbol-namespace');
        item.contextValue = 'gatescope.module';
        return item;
      }
      case 'tensor': {
        const v = tensorView(n.tensor);
        const item = new vscode.TreeItem(v.label, vscode.TreeItemCollapsibleState.None);
        item.id = `tensor:${n.ckpt.path}:${n.tensor.name}`;
        item.description = v.description;
        item.tooltip = v.tooltip;
        item.iconPath = new vscode.ThemeIcon(n.tensor.shape.length === 2 ? 'symbol-array' : 'symbol-field');
        item.contextValue = n.tensor.layer !== null ? 'gatescope.tensor.layer' : 'gatescope.tensor';
        if (n.tensor.layer !== null) item.command = { command: 'gatescope.showLayerDetail', title: 'Show Layer Detail', arguments: [n] };
        return item;
      }
      case 'slurm': {
        const k = n.sub.manifest.checkpoints[n.index];
        const v = slurmView(n.sub.statuses[n.index], k.label, k.arrayJob);
        const item = new vscode.TreeItem(v.label, vscode.TreeItemCollapsibleState.None);
        item.id = `slurm:${n.sub.manifest.out}:${n.index}`;
        item.description = v.description;
        item.tooltip = v.tooltip;
        item.iconPath = new vscode.ThemeIcon(v.icon);
        item.contextValue = 'gatescope.slurmJob';
        return item;
      }
      case 'info': {
        const item = new vscode.TreeItem(n.text, vscode.TreeItemCollapsibleState.None);
        item.tooltip = n.tooltip;
        item.iconPath = new vscode.ThemeIcon('info');
        return item;
      }
    }
  }

  getChildren(n?: Node): Node[] {
    if (!n) {
      // An empty array shows the welcome content (viewsWelcome) once the first scan is done.
      if (!this.c.scanned && this.c.scanning) return [{ kind: 'info', text: 'Scanning for checkpoints...' }];
      return this.c.runs.map((run) => ({ kind: 'run', run }));
    }
    switch (n.kind) {
      case 'run': {
        const out: Node[] = [];
        if (!n.run.base.resolved && n.run.baseOf.length === 0)
          out.push({ kind: 'info', text: 'No base model: right-click the run, "Set Base Model for Run"', tooltip: n.run.base.problem });
        for (const ckpt of n.run.checkpoints) out.push({ kind: 'checkpoint', run: n.run, ckpt });
        for (const sub of this.slurm?.of(n.run.id) ?? []) sub.manifest.checkpoints.forEach((_, index) => out.push({ kind: 'slurm', run: n.run, sub, index }));
        return out;
      }
      case 'checkpoint': {
        const r = this.c.report(n.ckpt.path);
        if (!r) return [];
        return MODULE_KINDS.filter((m) => r.summary.byModule[m]).map((module) => ({ kind: 'module', run: n.run, ckpt: n.ckpt, module }));
      }
      case 'module': {
        const r = this.c.report(n.ckpt.path);
        if (!r) return [];
        return r.tensors
          .filter((t) => t.module === n.module)
          .sort((a, b) => (a.layer ?? -1) - (b.layer ?? -1) || a.name.localeCompare(b.name))
          .map((tensor) => ({ kind: 'tensor', run: n.run, ckpt: n.ckpt, tensor }));
      }
      default:
        return [];
    }
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const s of this.subs) s.dispose();
    this.emitter.dispose();
  }
}
