/** The status bar item: the engine's state, the running job's progress; click to cancel or see the log. */
import * as vscode from 'vscode';
import type { Controller } from './controller';

export class EngineStatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('gatescope.engine', vscode.StatusBarAlignment.Left, 50);
  private readonly subs: vscode.Disposable[] = [];

  constructor(private readonly c: Controller) {
    this.item.name = 'Gatescope engine';
    this.subs.push(
      c.onDidChange(() => this.update()),
      c.onEngineState(() => this.update()),
    );
    this.update();
  }

  update(): void {
    const state = this.c.engine.state;
    const cur = this.c.current;
    if (cur && state !== 'stopped') {
      this.item.text = `$(sync~spin) Gatescope: ${cur.label} ${Math.round(cur.fraction * 100)}%`;
      this.item.tooltip = 'Gatescope is analysing in its background engine. Click to cancel.';
      this.item.command = 'gatescope.cancelAnalysis';
    } else {
      const icon = state === 'stopped' ? '$(circle-outline)' : state === 'starting' ? '$(loading~spin)' : '$(pulse)';
      this.item.text = `${icon} Gatescope`;
      this.item.tooltip = `Gatescope engine: ${state}${this.c.autoAnalyzeEnabled ? '' : ' (automatic analysis off)'}. Click for the engine log.`;
      this.item.command = 'gatescope.showLog';
    }
    if (this.c.runs.length > 0 || cur) this.item.show();
    else this.item.hide();
  }

  dispose(): void {
    for (const s of this.subs) s.dispose();
    this.item.dispose();
  }
}
