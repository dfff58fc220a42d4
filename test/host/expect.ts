/**
 * Computes what the host tests expect, outside VS Code, with the CLI (`bin/gatescope.js`) on the same
 * examples folder the workbench opens:
 *   node out/host-test/expect.js --examples examples --out test-artifacts/host/expected.json
 * - `gatescope scan` lists the runs the tree must show;
 * - `gatescope analyze BASE CKPT --json` gives, per run with a base, the report of its last complete
 *   checkpoint, which the extension's engine must reproduce exactly;
 * - `gatescope compare` gives the consistency report of the runs that share a base;
 * - every training config under the folder gets the lenses the pure rules say it should have.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { DiscoveredRun } from '../../src/discovery/scan';
import { syntaxOf } from '../../src/discovery/config-keys';
import type { CheckpointReport, ConsistencyReport } from '../../src/report/schema';
import { deg, pct, sci } from '../../src/ui-model/format';
import { heatmapData } from '../../src/ui-model/heatmap';
import { outputDirCandidates, trainingConfigLenses } from '../../src/ui-model/lenses';
import { checkpointLabel, headline } from '../../src/ui-model/tree';
import { stepsView } from '../../src/ui-model/steps';
import type { StepsReport } from '../../src/report/steps-schema';
import type { Expected, ExpectedCompare, ExpectedConfig, ExpectedReport, ExpectedSteps } from './expected';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'gatescope.js');
const CLI_TIMEOUT_MS = 10 * 60_000;
const MAX_CONFIG_BYTES = 2_000_000;
const SKIP_DIRS = new Set(['node_modules', '.git', '.cache', '__pycache__']);

function arg(name: string): string {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (!v) {
    console.error(`usage: expect --examples DIR --out FILE (missing ${name})`);
    process.exit(2);
  }
  return v;
}

function cli(args: string[]): void {
  const t0 = Date.now();
  try {
    execFileSync(process.execPath, [CLI, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: CLI_TIMEOUT_MS,
      env: { ...process.env, ORT_DISABLE_TELEMETRY: '1' },
    });
  } catch (e) {
    const err = e as Error & { stderr?: Buffer };
    throw new Error(`gatescope ${args.join(' ')} failed: ${err.message}\n${err.stderr?.toString() ?? ''}`, { cause: e });
  }
  console.log(
    `  gatescope ${args[0]} ${args
      .slice(1)
      .filter((a) => !a.startsWith('--') && !a.endsWith('.json'))
      .map((a) => path.relative(ROOT, a))
      .join(' ')} (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
  );
}

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await fsp.readFile(file, 'utf8')) as T;
}

/** Training config candidates: files the lens rules read, small enough to open. */
async function configFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (!SKIP_DIRS.has(e.name)) out.push(...(await configFiles(p)));
    } else if (e.isFile() && syntaxOf(e.name)) {
      const st = await fsp.stat(p);
      if (st.size <= MAX_CONFIG_BYTES) out.push(p);
    }
  }
  return out.sort();
}

function runFor(runs: DiscoveredRun[], candidates: string[]): DiscoveredRun | undefined {
  const norm = candidates.map((c) => path.resolve(c));
  return runs.find((r) => norm.some((c) => r.root === c || r.root.startsWith(c + path.sep)));
}

async function main(): Promise<void> {
  const examples = path.resolve(arg('--examples'));
  const outFile = path.resolve(arg('--out'));
  const outDir = path.join(path.dirname(outFile), 'cli');
  await fsp.mkdir(outDir, { recursive: true });

  const scanFile = path.join(outDir, 'scan.json');
  cli(['scan', examples, '--json', scanFile, '--absolute-paths']);
  const scan = await readJson<{ runs: DiscoveredRun[] }>(scanFile);
  if (scan.runs.length === 0) throw new Error(`gatescope scan found no run under ${examples}`);

  const reports: ExpectedReport[] = [];
  for (const run of scan.runs) {
    const base = run.base.resolved;
    if (!base) continue;
    const complete = run.checkpoints.filter((c) => c.state === 'complete' && path.resolve(c.path) !== path.resolve(base));
    const ckpt = complete[complete.length - 1];
    if (!ckpt) continue;
    const reportFile = path.join(outDir, `analyze-${reports.length + 1}.json`);
    cli(['analyze', base, ckpt.path, '--json', reportFile, '--quiet', '--no-layers', '--absolute-paths']);
    const r = await readJson<CheckpointReport>(reportFile);
    const hm = heatmapData(r, 'unchanged');
    reports.push({
      runId: run.id,
      runName: run.name,
      base,
      checkpoint: ckpt.path,
      step: ckpt.step,
      checkpointLabel: checkpointLabel(ckpt),
      reportFile,
      display: {
        headline: headline(r),
        unchanged: pct(r.summary.unchanged),
        unchangedLinear: pct(r.summary.unchangedLinear),
        relUpdateNorm: sci(r.summary.relUpdateNorm),
        principalAngleMax: r.spectralSummary ? deg(r.spectralSummary.principalAngleMaxDeg) : null,
        verdict: r.verdict?.label ?? null,
        heatmap: {
          layers: hm.layers.map(String),
          modules: hm.modules,
          cells: hm.cells.map((c) => (c.value === null ? '' : pct(c.value))),
          min: pct(hm.min),
          max: pct(hm.max),
        },
      },
    });
  }
  if (reports.length === 0) throw new Error(`no run under ${examples} has a base model and a complete checkpoint to analyse`);

  const compares: ExpectedCompare[] = [];
  const byBase = new Map<string, ExpectedReport[]>();
  for (const r of reports) byBase.set(r.base, [...(byBase.get(r.base) ?? []), r]);
  for (const [base, list] of byBase) {
    if (list.length < 2) continue;
    const reportFile = path.join(outDir, `compare-${compares.length + 1}.json`);
    cli(['compare', base, ...list.map((r) => r.checkpoint), '--json', reportFile, '--absolute-paths']);
    const c = await readJson<ConsistencyReport>(reportFile);
    compares.push({ base, checkpoints: list.map((r) => r.checkpoint), labels: c.runs.map((r) => r.label), reportFile });
  }

  const configs: ExpectedConfig[] = [];
  for (const file of await configFiles(examples)) {
    const specs = trainingConfigLenses(file, await fsp.readFile(file, 'utf8'));
    if (specs.length === 0) continue;
    const outputRuns = specs
      .filter((s) => s.kind === 'output')
      .map((s) => runFor(scan.runs, outputDirCandidates(s.value, path.dirname(file), [examples], path.join, path.isAbsolute))?.id ?? null);
    configs.push({
      file,
      relative: path.relative(examples, file),
      specs: specs.map(({ kind, line, column, key, title, value }) => ({ kind, line, column, key, title, value })),
      outputRuns,
      fileRun: outputRuns.find((r) => r !== null) ?? null,
    });
  }

  // Step to step of the run the UI checks drive (the one a training config's lens points at, as there).
  const steps: ExpectedSteps[] = [];
  const lensConfig = configs.find((c) => c.outputRuns.some((r) => r !== null));
  const walkedId = reports.find((r) => lensConfig?.outputRuns.includes(r.runId))?.runId ?? reports[0].runId;
  const walked = scan.runs.find((r) => r.id === walkedId)!;
  const stepsFile = path.join(outDir, 'steps-1.json');
  cli(['steps', walked.root, '--json', stepsFile, '--quiet', '--absolute-paths']);
  const sr = await readJson<StepsReport>(stepsFile);
  const sv = stepsView(sr);
  steps.push({
    runId: walked.id,
    runName: walked.name,
    reportFile: stepsFile,
    rows: sv.rows.map((r) => ({ label: r.label, changed: r.text.changed, xorZstd: r.text.xorZstd, band: r.text.band, agreement: r.text.agreement })),
    headline: sv.headline,
  });

  const expected: Expected = { schema: 1, examples, runs: scan.runs, reports, compares, steps, configs };
  await fsp.writeFile(outFile, JSON.stringify(expected, null, 2) + '\n');
  console.log(
    `  expected: ${scan.runs.length} run(s), ${reports.length} report(s), ${compares.length} comparison(s), ${steps.length} step walk(s), ${configs.length} training config(s) with lenses`,
  );
}

main().catch((e: Error) => {
  console.error(`expect: ${e.message}`);
  process.exit(1);
});
