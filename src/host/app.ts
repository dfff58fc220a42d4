/**
 * Wires the extension together: controller (model + engine), tree, commands, CodeLens, panels, status
 * bar and the file watchers that feed discovery. Nothing heavy happens here: the first scan reads only
 * safetensors headers, and the engine process starts on the first analysis.
 */
import * as vscode from 'vscode';
import { Controller } from './controller';
import { Commands } from './commands';
import { CONFIG_SELECTOR, ConfigLensProvider } from './codelens';
import { Panels } from './panels';
import { ANALYSIS_KEYS } from './settings';
import { EngineStatusBar } from './statusbar';
import { RunsTree } from './tree';
import { SlurmRuns } from './slurm';

export class GatescopeApp implements vscode.Disposable {
  private readonly subs: vscode.Disposable[] = [];
  private watchers: vscode.Disposable[] = [];
  readonly controller: Controller;
  /** The "Runs" tree's data provider (read by the host tests). */
  readonly tree: RunsTree;
  /** Submissions to Slurm and their state (read by the host tests). */
  readonly slurm: SlurmRuns;

  constructor(context: vscode.ExtensionContext) {
    const log = vscode.window.createOutputChannel('Gatescope', { log: true });
    this.subs.push(log);
    const c = new Controller(context, log);
    this.controller = c;
    const slurm = new SlurmRuns(context, c, (runId, ckpt) => panels.showDashboard(runId, ckpt));
    this.slurm = slurm;
    const commands = new Commands(
      c,
      () => panels,
      () => slurm,
    );
    const panels = new Panels(context, c, {
      analyze: (p) => commands.analyzeFromPanel(p),
      exportRun: (run, f) => void commands.exportRun(run, f),
      compareRuns: (base) => void vscode.commands.executeCommand('gatescope.compareRuns', base),
      runSteps: (runId, ask) => void commands.runStepsFromPanel(runId, ask),
      exportSteps: (runId, f) => void commands.exportSteps(runId, f),
    });
    commands.register(context);
    const tree = new RunsTree(c, slurm);
    this.tree = tree;
    const view = vscode.window.createTreeView('gatescope.runs', { treeDataProvider: tree, showCollapseAll: true });
    const lenses = new ConfigLensProvider(c);
    this.subs.push(
      c,
      panels,
      tree,
      view,
      lenses,
      slurm,
      vscode.languages.registerCodeLensProvider(CONFIG_SELECTOR, lenses),
      new EngineStatusBar(c),
      c.onDidChange(() => {
        void vscode.commands.executeCommand('setContext', 'gatescope.scanned', c.scanned);
        void vscode.commands.executeCommand('setContext', 'gatescope.waitingForTrust', !c.scanPermitted);
      }),
      vscode.workspace.onDidChangeConfiguration((e) => this.onConfig(e)),
      vscode.workspace.onDidChangeWorkspaceFolders(() => {
        this.watch();
        c.rescanSoon(200);
      }),
      // Trust lifts the hold on reading checkpoints; the scan then starts the automatic analyses.
      vscode.workspace.onDidGrantWorkspaceTrust(() => c.rescanSoon(200)),
    );
    this.watch();
    // First scan after activation returns: discovery reads headers only, in a thread of its own, and in an
    // untrusted workspace not before the user asks.
    void vscode.commands.executeCommand('setContext', 'gatescope.waitingForTrust', !c.scanPermitted);
    c.rescanSoon(300);
    // One `sbatch --version`, after activation returned: it decides whether "Analyze Run on Slurm" shows.
    setTimeout(() => void slurm.start().catch((e: Error) => log.warn(`slurm: ${e.message}`)), 1000);
  }

  /** FileSystemWatchers on the checkpoint patterns of every scanned root feed a debounced re-scan. */
  private watch(): void {
    for (const w of this.watchers) w.dispose();
    this.watchers = [];
    const patterns = this.controller.config.watchPatterns;
    const bases: (vscode.WorkspaceFolder | vscode.Uri)[] = [
      ...(vscode.workspace.workspaceFolders ?? []),
      ...this.controller.extraRoots.map((r) => vscode.Uri.file(r)),
    ];
    for (const base of bases) {
      for (const p of patterns) {
        const w = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(base, p));
        const again = (): void => this.controller.rescanSoon(2000);
        this.watchers.push(w, w.onDidCreate(again), w.onDidChange(again), w.onDidDelete(again));
      }
    }
  }

  private onConfig(e: vscode.ConfigurationChangeEvent): void {
    if (!e.affectsConfiguration('gatescope')) return;
    const c = this.controller;
    c.reloadSettings();
    if (e.affectsConfiguration('gatescope.watchPatterns')) this.watch();
    if (e.affectsConfiguration('gatescope.baseOverrides')) {
      c.rescanSoon(200);
      c.invalidateReports();
    } else if (ANALYSIS_KEYS.some((k) => e.affectsConfiguration(k))) {
      c.invalidateReports();
    } else if (e.affectsConfiguration('gatescope.autoAnalyze')) {
      c.autoAnalyze();
    }
  }

  dispose(): void {
    for (const w of this.watchers) w.dispose();
    for (const s of this.subs.reverse()) s.dispose();
  }
}
