/**
 * Integration tests in a real VS Code extension host, against the real API: activation, commands, the
 * Runs tree, the engine process, CodeLens, webview panels. Expectations come from the CLI
 * (test/host/expect.ts): the extension must show the same runs and compute the same reports.
 */
import * as assert from 'node:assert/strict';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { GatescopeApp } from '../../../src/host/app';
import type { Node } from '../../../src/host/tree';
import type { CheckpointReport, ConsistencyReport } from '../../../src/report/schema';
import type { StepsReport } from '../../../src/report/steps-schema';
import { checkpointView, runDescription } from '../../../src/ui-model/tree';
import { comparable, firstDifference, loadExpected, readJson, type Expected } from '../expected';

const EXTENSION_ID = 'gatescope.gatescope';
const CONFIG_LANGUAGES = new Set(['yaml', 'json', 'jsonc', 'python', 'shellscript']);

function requiredEnv(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the host tests through scripts/host-test.sh or test/host/run-electron.js`);
  return v;
}

/** Polls `probe` until it returns a value (not undefined); a throw inside fails at once. */
async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function within<T>(what: string, p: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${Math.round(timeoutMs / 1000)} s: ${what}`)), timeoutMs))),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

/** JSON round trip: both reports crossed a process boundary as JSON (the CLI's file, the worker's IPC). */
function plain<T>(x: T): T {
  return JSON.parse(JSON.stringify(x)) as T;
}

function assertSameReport(actual: CheckpointReport | ConsistencyReport | StepsReport, cliFile: string): void {
  const expected = readJson<CheckpointReport | ConsistencyReport | StepsReport>(cliFile);
  const a = plain(comparable(actual));
  const e = plain(comparable(expected));
  const diff = firstDifference(a, e);
  assert.equal(diff, null, `the extension's report differs from the CLI's (${cliFile}) at ${diff}`);
}

/** The engine worker as an OS process: its parent is this extension host and it runs dist/worker.js. */
function assertWorkerProcess(pid: number): void {
  if (!existsSync('/proc')) return;
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  assert.match(cmdline, /dist[\\/]worker\.js/, `pid ${pid} is not the engine worker: ${cmdline}`);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  assert.equal(ppid, process.pid, 'the engine worker is a child of the extension host');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function webviewTab(viewType: string, label: string): vscode.Tab | undefined {
  return vscode.window.tabGroups.all
    .flatMap((g) => g.tabs)
    .find((t) => t.input instanceof vscode.TabInputWebview && t.input.viewType.endsWith(viewType) && t.label === label);
}

async function closeAllWebviews(): Promise<void> {
  const tabs = vscode.window.tabGroups.all.flatMap((g) => g.tabs).filter((t) => t.input instanceof vscode.TabInputWebview);
  if (tabs.length) await vscode.window.tabGroups.close(tabs);
}

suite('Gatescope in a real VS Code extension host', function () {
  let exp: Expected;
  let app: GatescopeApp;
  let ext: vscode.Extension<GatescopeApp>;

  suiteSetup(async function () {
    this.timeout(120_000);
    exp = loadExpected(requiredEnv('GATESCOPE_HOST_TEST_EXPECTED'));
    const found = vscode.extensions.getExtension<GatescopeApp>(EXTENSION_ID);
    assert.ok(found, `${EXTENSION_ID} is not installed in this extension host`);
    ext = found;
  });

  suiteTeardown(async () => {
    await closeAllWebviews();
  });

  test('activates by itself on the example workspace, from the packaged extension', async function () {
    this.timeout(90_000);
    // No explicit activate(): the workspaceContains activation events must do it.
    await waitFor('the activation of Gatescope by its workspaceContains events', () => (ext.isActive ? true : undefined), 60_000);
    app = ext.exports;
    assert.ok(app && app.controller && app.tree, 'activate() returns the app (controller and tree)');
    const dir = process.env.GATESCOPE_HOST_TEST_EXTENSION_DIR;
    if (dir) {
      assert.equal(realpathSync(ext.extensionPath), realpathSync(dir), 'the extension runs from the installed VSIX');
      for (const f of [
        'dist/extension.js',
        'dist/worker.js',
        'dist/webview/main.js',
        'media/webview.css',
        'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node',
        'node_modules/onnxruntime-common/package.json',
      ]) {
        assert.ok(existsSync(path.join(ext.extensionPath, f)), `the VSIX ships ${f}`);
      }
      for (const f of ['src', 'test', 'webview', 'node_modules/onnxruntime-node/bin/napi-v6/win32', 'node_modules/onnxruntime-node/bin/napi-v6/darwin']) {
        assert.ok(!existsSync(path.join(ext.extensionPath, f)), `the VSIX does not ship ${f}`);
      }
    }
    const folders = (vscode.workspace.workspaceFolders ?? []).map((f) => realpathSync(f.uri.fsPath));
    assert.ok(folders.includes(realpathSync(exp.examples)), `the workspace is the examples folder (${folders.join(', ')})`);
  });

  test('registers every contributed command', async () => {
    const contributed = (ext.packageJSON.contributes.commands as { command: string }[]).map((c) => c.command);
    assert.ok(contributed.length >= 10, 'package.json contributes the gatescope.* commands');
    const registered = new Set(await vscode.commands.getCommands(true));
    const missing = contributed.filter((c) => !registered.has(c));
    assert.deepEqual(missing, [], `contributed but not registered: ${missing.join(', ')}`);
  });

  test('the Runs tree lists the example runs and checkpoints that the CLI finds', async function () {
    this.timeout(90_000);
    const c = app.controller;
    await waitFor('the first scan of the workspace', () => (c.scanned && !c.scanning ? true : undefined), 60_000);
    const byId = (a: { id: string }, b: { id: string }): number => a.id.localeCompare(b.id);
    const got = [...c.runs]
      .sort(byId)
      .map((r) => ({ id: r.id, name: r.name, base: r.base.resolved, checkpoints: r.checkpoints.map((k) => [k.path, k.state, k.step]) }));
    const want = [...exp.runs]
      .sort(byId)
      .map((r) => ({ id: r.id, name: r.name, base: r.base.resolved, checkpoints: r.checkpoints.map((k) => [k.path, k.state, k.step]) }));
    assert.deepEqual(got, want, 'the extension discovers what `gatescope scan` discovers');

    const roots = app.tree.getChildren();
    assert.deepEqual(
      roots.map((n) => (n.kind === 'run' ? n.run.name : `<${n.kind}>`)),
      c.runs.map((r) => r.name),
      'one top-level node per run',
    );
    for (const node of roots) {
      if (node.kind !== 'run') continue;
      const item = app.tree.getTreeItem(node);
      assert.equal(item.label, node.run.name);
      assert.equal(item.description, runDescription(node.run));
      const kids = app.tree.getChildren(node).filter((k): k is Extract<Node, { kind: 'checkpoint' }> => k.kind === 'checkpoint');
      assert.deepEqual(
        kids.map((k) => k.ckpt.path),
        node.run.checkpoints.map((k) => k.path),
        `${node.run.name}: one node per checkpoint`,
      );
    }
  });

  test('an analysis in the engine process equals the CLI report for the same inputs', async function () {
    this.timeout(15 * 60_000);
    const c = app.controller;
    assert.ok(exp.reports.length > 0, 'the examples have a run to analyse');
    for (const e of exp.reports) {
      // The palette command with a checkpoint argument, as the tree's inline action calls it. It shows a
      // notification when it is done and waits for it, so it is not awaited here.
      void Promise.resolve(vscode.commands.executeCommand('gatescope.analyzeCheckpoint', e.checkpoint)).catch(() => undefined);
      const job = await waitFor(
        `the analysis of ${e.runName} ${e.checkpointLabel}`,
        () => {
          const j = c.job(e.checkpoint);
          if (j.kind === 'error') throw new Error(`the analysis of ${e.checkpoint} failed: ${j.message}`);
          return j.kind === 'done' ? j : undefined;
        },
        10 * 60_000,
      );
      assert.equal(job.fromCache, false, 'the first analysis is computed, not read from a cache');
      assertSameReport(job.report, e.reportFile);
      const pid = c.engine.pid;
      assert.ok(typeof pid === 'number' && pid !== process.pid, 'the engine runs in its own process');
      assertWorkerProcess(pid);

      // The tree shows it: the checkpoint's state and its module groups.
      const runNode = app.tree.getChildren().find((n) => n.kind === 'run' && n.run.id === e.runId);
      assert.ok(runNode);
      const ckptNode = app.tree.getChildren(runNode).find((n) => n.kind === 'checkpoint' && n.ckpt.path === e.checkpoint);
      assert.ok(ckptNode && ckptNode.kind === 'checkpoint');
      const item = app.tree.getTreeItem(ckptNode);
      const view = checkpointView(ckptNode.ckpt, c.job(e.checkpoint), true);
      assert.equal(item.contextValue, 'gatescope.checkpoint.done');
      assert.equal(item.description, view.description);
      const modules = app.tree.getChildren(ckptNode).map((n) => (n.kind === 'module' ? n.module : n.kind));
      assert.deepEqual([...modules].sort(), Object.keys(job.report.summary.byModule).sort(), 'one tree node per module group of the report');
    }
  });

  test('a second analysis of the same checkpoint comes from the engine cache, unchanged', async function () {
    this.timeout(5 * 60_000);
    const c = app.controller;
    const e = exp.reports[0];
    const loc = c.locate(e.checkpoint);
    assert.ok(loc);
    const report = await within('the cached analysis', c.analyze(loc.run, loc.ckpt), 4 * 60_000);
    const job = c.job(e.checkpoint);
    assert.ok(job.kind === 'done' && job.fromCache, 'answered from the cache');
    assertSameReport(report, e.reportFile);
  });

  test('the dashboard opens as a webview panel for a run', async function () {
    this.timeout(60_000);
    const e = exp.reports[0];
    await vscode.commands.executeCommand('gatescope.showDashboard', e.runId);
    const tab = await waitFor('the dashboard tab', () => webviewTab('gatescope.dashboard', `Gatescope: ${e.runName}`), 30_000);
    assert.ok(tab.isActive, 'the dashboard is the active tab');
    await vscode.window.tabGroups.close(tab);
  });

  test("Step to step: the walk in the engine equals the CLI's, and its panel opens for the run", async function () {
    this.timeout(10 * 60_000);
    const c = app.controller;
    assert.ok(exp.steps.length > 0, 'the examples have a run to walk');
    for (const e of exp.steps) {
      await vscode.commands.executeCommand('gatescope.showSteps', e.runId);
      const tab = await waitFor(`the step-to-step tab of ${e.runName}`, () => webviewTab('gatescope.steps', `Gatescope: ${e.runName} step to step`), 30_000);
      const job = await waitFor(
        `the step-to-step walk of ${e.runName}`,
        () => {
          const j = c.stepsJob(e.runId);
          if (j.kind === 'error') throw new Error(`the walk of ${e.runName} failed: ${j.message}`);
          return j.kind === 'done' ? j : undefined;
        },
        8 * 60_000,
      );
      assertSameReport(job.report, e.reportFile);
      assert.equal(c.engine.pid !== undefined && c.engine.pid !== process.pid, true, 'the walk ran in the engine process');
      // Opening it again shows the same walk: nothing changed on disk, so nothing is read again.
      await vscode.commands.executeCommand('gatescope.showSteps', e.runId);
      const again = c.stepsJob(e.runId);
      assert.ok(again.kind === 'done' && again.report === job.report, 'a second open reuses the walk');
      await vscode.window.tabGroups.close(tab);
    }
  });

  test('CodeLens: the example training configs get the lenses their keys call for', async function () {
    this.timeout(3 * 60_000);
    assert.ok(exp.configs.length > 0, 'the examples have at least one training config with lenses');
    let dashboards = 0;
    for (const cfg of exp.configs) {
      const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(cfg.file));
      assert.ok(CONFIG_LANGUAGES.has(doc.languageId), `${cfg.relative} opens as ${doc.languageId}, a language the lenses are registered for`);
      await vscode.window.showTextDocument(doc);
      const lrLenses = cfg.fileRun ? cfg.specs.filter((s) => s.kind === 'gate3-lr').length : 0;
      const want = cfg.specs.length + cfg.outputRuns.filter((r) => r !== null).length + lrLenses;
      const lenses = await waitFor(
        `${want} Gatescope lenses on ${cfg.relative}`,
        async () => {
          const all = (await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', doc.uri)) ?? [];
          const ours = all.filter((l) => l.command?.command.startsWith('gatescope.'));
          return ours.length >= want ? ours : undefined;
        },
        60_000,
        500,
      );
      assert.equal(lenses.length, want, `${cfg.relative}: ${lenses.map((l) => l.command?.title).join(' | ')}`);
      let output = 0;
      for (const s of cfg.specs) {
        const here = lenses.filter((l) => l.range.start.line === s.line && l.range.start.character === s.column);
        const explain = here.find((l) => l.command?.command === 'gatescope.explainLens');
        assert.ok(explain?.command, `${cfg.relative}:${s.line + 1}: a lens on ${s.key}`);
        if (s.kind !== 'output') {
          assert.equal(explain.command.title, s.title, `${cfg.relative}:${s.line + 1} ${s.key}`);
          const steps = here.find((l) => l.command?.command === 'gatescope.showSteps');
          if (s.kind === 'gate3-lr' && cfg.fileRun) {
            assert.equal(steps?.command?.title, 'Step to step', `${cfg.relative}:${s.line + 1}: a "Step to step" lens on the learning rate`);
            assert.deepEqual(steps.command.arguments, [cfg.fileRun]);
          } else {
            assert.equal(steps, undefined, `${cfg.relative}:${s.line + 1}: no "Step to step" lens on ${s.key}`);
          }
          continue;
        }
        const runId = cfg.outputRuns[output++];
        const open = here.find((l) => l.command?.command === 'gatescope.showDashboard');
        if (!runId) {
          assert.equal(open, undefined, `${cfg.relative}: no dashboard lens for an output folder without a run`);
          continue;
        }
        const run = app.controller.findRun(runId);
        assert.ok(run, `the run ${runId} is in the workspace`);
        const n = run.checkpoints.length;
        assert.ok(explain.command.title.startsWith(`Gatescope: ${n} checkpoint${n === 1 ? '' : 's'}`), `${cfg.relative}: ${explain.command.title}`);
        assert.ok(open?.command, `${cfg.relative}: an "Open dashboard" lens on ${s.key}`);
        assert.equal(open.command.title, 'Open dashboard');
        assert.deepEqual(open.command.arguments, [runId]);
        await vscode.commands.executeCommand(open.command.command, ...(open.command.arguments ?? []));
        const tab = await waitFor(
          `the dashboard of ${run.name} opened from the lens`,
          () => webviewTab('gatescope.dashboard', `Gatescope: ${run.name}`),
          30_000,
        );
        await vscode.window.tabGroups.close(tab);
        dashboards++;
      }
    }
    assert.ok(dashboards > 0, 'at least one training config points at a run of the examples');
  });

  test('the engine restarts after its process is killed, and the job it held still completes', async function () {
    this.timeout(5 * 60_000);
    const c = app.controller;
    const e = exp.reports[0];
    const loc = c.locate(e.checkpoint);
    assert.ok(loc);
    const first = c.engine.pid;
    assert.ok(typeof first === 'number', 'the engine is running after the analyses');
    assertWorkerProcess(first);

    // Killed while it holds a job: the job is re-queued on a new worker.
    const job = c.analyze(loc.run, loc.ckpt);
    process.kill(first, 'SIGKILL');
    const report = await within('the re-queued analysis', job, 4 * 60_000);
    assertSameReport(report, e.reportFile);
    const second = c.engine.pid;
    assert.ok(typeof second === 'number' && second !== first, `a new engine process (was ${first}, now ${String(second)})`);
    assert.ok(!alive(first), 'the killed worker is gone');
    assertWorkerProcess(second);

    // Killed while idle: the next job starts a new worker.
    process.kill(second, 'SIGKILL');
    await waitFor('the engine to notice its worker died', () => (c.engine.state === 'stopped' ? true : undefined), 30_000);
    const again = await within('an analysis after an idle crash', c.analyze(loc.run, loc.ckpt), 4 * 60_000);
    assertSameReport(again, e.reportFile);
    const third = c.engine.pid;
    assert.ok(typeof third === 'number' && third !== second, 'the engine was started again');
  });

  test('auto-analysis analyses every complete checkpoint once it is enabled', async function () {
    this.timeout(15 * 60_000);
    const c = app.controller;
    const targets = c.runs
      .filter((r) => r.base.resolved)
      .flatMap((r) => r.checkpoints.filter((k) => k.state === 'complete' && path.resolve(k.path) !== path.resolve(r.base.resolved!)));
    assert.ok(targets.length > 0);
    await vscode.workspace.getConfiguration('gatescope').update('autoAnalyze', true, vscode.ConfigurationTarget.Global);
    await waitFor(
      `the auto-analysis of ${targets.length} checkpoint(s)`,
      () => {
        const failed = targets.find((k) => c.job(k.path).kind === 'error');
        if (failed) {
          const j = c.job(failed.path);
          throw new Error(`${failed.path}: ${j.kind === 'error' ? j.message : ''}`);
        }
        return targets.every((k) => c.job(k.path).kind === 'done') ? true : undefined;
      },
      14 * 60_000,
      500,
    );
  });

  test('comparing runs that share a base equals the CLI comparison', async function () {
    this.timeout(10 * 60_000);
    if (exp.compares.length === 0) this.skip();
    for (const cmp of exp.compares) {
      const report = await within('the comparison', app.controller.compare(cmp.base, cmp.checkpoints, cmp.labels), 9 * 60_000);
      assertSameReport(report, cmp.reportFile);
    }
  });

  test("Analyze Run on Slurm: the merged reports of a live cluster land in the tree and the dashboard, equal to the CLI's", async function () {
    this.timeout(10 * 60_000);
    const why = process.env.GATESCOPE_HOST_TEST_SLURM;
    if (why !== 'ok') {
      console.log(`      skipped: ${why ?? 'GATESCOPE_HOST_TEST_SLURM is not set'}`);
      this.skip();
    }
    // The run with the fewest checkpoints: every complete one is submitted.
    const count = (id: string): number => exp.runs.find((r) => r.id === id)?.checkpoints.filter((k) => k.state === 'complete').length ?? 0;
    const e = [...exp.reports].sort((a, b) => count(a.runId) - count(b.runId))[0];
    await waitFor('sbatch to be found', () => (app.slurm.available ? true : undefined), 30_000);
    const out = path.join(requiredEnv('GATESCOPE_HOST_TEST_OUT'), 'slurm-submission');
    await vscode.commands.executeCommand('gatescope.analyzeRunOnSlurm', e.runId, { tasks: 2, out });
    const report = await waitFor(
      'the merged report from Slurm',
      () => {
        const sub = app.slurm.of(e.runId).find((x) => x.manifest.out === out);
        if (sub?.failed) throw new Error(`the Slurm jobs failed: ${JSON.stringify(sub.statuses)}`);
        const r = app.controller.report(e.checkpoint);
        return r?.shards?.count === 2 ? r : undefined;
      },
      8 * 60_000,
      500,
    );
    const { shards: _shards, ...rest } = report;
    assert.equal(_shards?.durationsMs.length, 2);
    assertSameReport(rest, e.reportFile);
    // The tree shows the submission under its run; the dashboard opened when the reports landed.
    const runNode = app.tree.getChildren().find((n) => n.kind === 'run' && n.run.id === e.runId);
    assert.ok(runNode);
    const jobs = app.tree.getChildren(runNode).filter((n) => n.kind === 'slurm');
    assert.ok(jobs.length >= 1, 'a Slurm node under the run');
    await waitFor(
      'every Slurm node done',
      () => (jobs.every((n) => String(app.tree.getTreeItem(n).description).startsWith('done')) ? true : undefined),
      60_000,
    );
    await waitFor('the dashboard tab', () => webviewTab('gatescope.dashboard', `Gatescope: ${e.runName}`), 60_000);
  });
});
