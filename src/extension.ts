/**
 * The Gatescope extension's entry point. All wiring lives in src/host/app.ts; all numbers come from
 * the background engine process (src/engine/), never from the extension host.
 */
import type * as vscode from 'vscode';
import { GatescopeApp } from './host/app';

let app: GatescopeApp | undefined;

/** Returns the app: `vscode.extensions.getExtension('gatescope.gatescope').exports` (the host tests read it). */
export function activate(context: vscode.ExtensionContext): GatescopeApp {
  app = new GatescopeApp(context);
  context.subscriptions.push(app);
  return app;
}

export async function deactivate(): Promise<void> {
  // Stop the engine process cleanly (it is also disposed with the subscriptions).
  await app?.controller.engine.dispose();
  app = undefined;
}
