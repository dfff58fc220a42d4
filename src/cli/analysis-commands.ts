/** `gatescope scan`, `diff`, `analyze` and `compare`: discovery and the analyses, with their outputs. */
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { scanFolder } from '../discovery/scan';
import { checkpointLabel } from '../discovery/layout';
import { analyzeCheckpoint, type AnalyzeOptions } from '../analysis/analyze';
import { SCHEMA_VERSION, type CheckpointReport } from '../report/schema';
import { formatCheckpointReport, formatScan } from '../report/format-text';
import { reportsToCsv } from '../report/csv';
import { UsageError, deviceFlag, settingsFromFlags, stringFlag, type Parsed } from './args';
import { Outputs, json } from './outputs';
import { progressPrinter, terminal, type Terminal } from './terminal';
import { basisCacheFromFlags } from './cache';
import { bf16KernelKind } from '../analysis/bf16-kernel';
import { shardFromFlags, writeShard } from './shard-commands';

export type Command = (p: Parsed) => Promise<number>;

function reportSet(reports: CheckpointReport[]): unknown {
  return reports.length === 1 ? reports[0] : { schemaVersion: SCHEMA_VERSION, kind: 'gatescope.report-set', reports };
}

async function mustExist(p: string, what: string, command: string): Promise<void> {
  if (
    !(await fsp.stat(p).then(
      () => true,
      () => false,
    ))
  )
    throw new UsageError(`no such ${what}: ${p}`, command);
}

export const cmdScan: Command = async (p) => {
  if (p.positionals.length !== 1) throw new UsageError('scan takes one folder', p.command);
  const dir = p.positionals[0];
  const st = await fsp.stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new UsageError(`not a folder: ${dir}`, p.command);
  const base = stringFlag(p, '--base');
  if (base) await mustExist(base, 'base checkpoint', p.command);
  const outputs = await Outputs.plan(p, ['--json'], [dir]);
  const result = await scanFolder(dir);
  if (base) {
    for (const run of result.runs) {
      if (run.base.resolved || run.baseOf.length) continue;
      run.base = { ref: base, source: '--base', resolved: path.resolve(base) };
    }
  }
  terminal(p.flags.has('--quiet')).out(formatScan(result));
  await outputs.write('--json', { schemaVersion: SCHEMA_VERSION, kind: 'gatescope.scan', ...result }, json);
  return 0;
};

export const cmdDiff: Command = async (p) => {
  if (p.positionals.length < 2) throw new UsageError('diff takes a base and at least one checkpoint', p.command);
  const [base, ...ckpts] = p.positionals;
  for (const c of p.positionals) await mustExist(c, 'checkpoint', p.command);
  const settings = settingsFromFlags(p);
  const shard = shardFromFlags(p, ckpts.length, ['--csv', '--html']);
  const residualBase = p.flags.has('--residual-base');
  const outputs = await Outputs.plan(p, ['--json', '--csv', '--html'], p.positionals);
  const term = terminal(p.flags.has('--quiet'));
  if (shard) {
    await writeShard(
      base,
      ckpts[0],
      shard,
      { settings, passes: 'diff', residualBase, onProgress: progressPrinter(term.quiet, checkpointLabel(ckpts[0])) },
      outputs,
      term,
    );
    return 0;
  }
  const reports: CheckpointReport[] = [];
  for (const c of ckpts) {
    const report = await analyzeCheckpoint(base, c, { settings, passes: 'diff', residualBase, onProgress: progressPrinter(term.quiet, checkpointLabel(c)) });
    reports.push(report);
    term.out(formatCheckpointReport(report, { layers: !p.flags.has('--no-layers') }));
    term.out('');
  }
  await outputs.write('--json', reportSet(reports), json);
  await outputs.write('--csv', reports, reportsToCsv);
  if (outputs.has('--html')) {
    const { reportsToHtml } = await import('../report/html');
    await outputs.write('--html', reports, reportsToHtml);
  }
  return 0;
};

/** --verbose: where the base subspaces came from, and the time of each pass. */
function verboseLines(term: Terminal, report: CheckpointReport, cacheDir: string | undefined): void {
  const b = report.baseBases;
  const where = cacheDir ? `cache ${cacheDir}` : 'no cache';
  if (b)
    term.notice(
      `${report.label ?? report.checkpoint}: base subspaces: ${b.fromCache} from the cache, ${b.computed} computed${b.cached ? ' and stored' : ''} (${where})`,
    );
  const t = report.timings;
  if (t)
    term.notice(
      `${report.label ?? report.checkpoint}: diff pass ${(t.diffMs / 1000).toFixed(1)} s${t.spectralMs !== undefined ? `, spectral pass ${(t.spectralMs / 1000).toFixed(1)} s` : ''} (${diffKernelText()})`,
    );
}

/** Which kernel the diff pass ran bf16 pairs on: the reference in JavaScript is ~5x slower, so say why. */
function diffKernelText(): string {
  const k = bf16KernelKind();
  return k.kind === 'wasm-simd' ? 'bf16 kernel: WebAssembly SIMD' : `bf16 kernel: the JavaScript reference, ${k.reason ?? 'no WebAssembly SIMD'}`;
}

export const cmdAnalyze: Command = async (p) => {
  if (p.positionals.length < 2) throw new UsageError('analyze takes a base and at least one checkpoint', p.command);
  const [base, ...ckpts] = p.positionals;
  for (const c of p.positionals) await mustExist(c, 'checkpoint', p.command);
  const settings = settingsFromFlags(p);
  const device = deviceFlag(p);
  const shard = shardFromFlags(p, ckpts.length, ['--md', '--html']);
  const residualBase = p.flags.has('--residual-base');
  const outputs = await Outputs.plan(p, ['--json', '--md', '--html'], p.positionals);
  const term = terminal(p.flags.has('--quiet'));
  const bases = await basisCacheFromFlags(p, p.positionals, (line) => term.notice(line));
  const { createBackend } = await import('../compute/backend');
  const { createSpectralPass } = await import('../analysis/spectral');
  const backend = await createBackend({ device, log: (line) => term.notice(line) });
  const reports: CheckpointReport[] = [];
  try {
    const spectral = createSpectralPass(backend, { bases });
    if (shard) {
      const opts: AnalyzeOptions = { settings, passes: 'full', spectral, residualBase, onProgress: progressPrinter(term.quiet, checkpointLabel(ckpts[0])) };
      const part = await writeShard(base, ckpts[0], shard, opts, outputs, term);
      if (p.flags.has('--verbose')) verboseLines(term, part.report, bases?.dir);
      return 0;
    }
    for (const c of ckpts) {
      const report = await analyzeCheckpoint(base, c, {
        settings,
        passes: 'full',
        spectral,
        residualBase,
        onProgress: progressPrinter(term.quiet, checkpointLabel(c)),
      });
      if (p.flags.has('--verbose')) verboseLines(term, report, bases?.dir);
      reports.push(report);
      term.out(formatCheckpointReport(report, { layers: !p.flags.has('--no-layers') }));
      term.out('');
    }
  } finally {
    await backend.dispose();
  }
  await outputs.write('--json', reportSet(reports), json);
  if (outputs.has('--md')) {
    const { reportsToMarkdown } = await import('../report/markdown');
    await outputs.write('--md', reports, reportsToMarkdown);
  }
  if (outputs.has('--html')) {
    const { reportsToHtml } = await import('../report/html');
    await outputs.write('--html', reports, reportsToHtml);
  }
  return 0;
};

/** A run folder stands for its last complete checkpoint; with it, the base its files name (when they name one). */
async function resolveRunCheckpoint(p: string, command: string): Promise<{ path: string; base: string | null; isRun: boolean }> {
  const st = await fsp.stat(p).catch(() => undefined);
  if (!st) throw new UsageError(`no such checkpoint or run: ${p}`, command);
  if (st.isFile()) return { path: p, base: null, isRun: false };
  const scan = await scanFolder(p, { maxDepth: 4 });
  const entries = await fsp.readdir(p);
  if (entries.some((e) => e.endsWith('.safetensors') || e === 'model.safetensors.index.json')) {
    const run = scan.runs.find((r) => r.checkpoints.some((c) => path.resolve(c.path) === path.resolve(p)));
    return { path: p, base: run?.base.resolved ?? null, isRun: false };
  }
  const run = scan.runs.find((r) => path.resolve(r.root) === path.resolve(p)) ?? scan.runs[0];
  const last = run?.checkpoints.filter((c) => c.state === 'complete').pop();
  if (!last) throw new UsageError(`no complete checkpoint under ${p}`, command);
  return { path: last.path, base: run.base.resolved, isRun: true };
}

async function sameFile(a: string, b: string): Promise<boolean> {
  const real = async (x: string): Promise<string> => fsp.realpath(x).catch(() => path.resolve(x));
  return (await real(a)) === (await real(b));
}

export const cmdCompare: Command = async (p) => {
  if (p.positionals.length < 3) throw new UsageError('compare takes a base and at least two runs', p.command);
  const [base, ...runs] = p.positionals;
  await mustExist(base, 'base checkpoint', p.command);
  const settings = settingsFromFlags(p);
  const diffOnly = p.flags.has('--diff-only');
  const unused = diffOnly
    ? ['--k', '--alpha', '--k-spectrum', '--power-iterations', '--oversample', '--device', '--cache-dir', '--no-cache', '--cache-size', '--verbose'].filter(
        (f) => p.flags.has(f),
      )
    : [];
  if (unused.length) throw new UsageError(`--diff-only runs no spectral pass: ${unused.join(', ')} would be ignored`, p.command);
  const device = deviceFlag(p);
  const outputs = await Outputs.plan(p, ['--json', '--md', '--html'], p.positionals);
  const resolved = await Promise.all(runs.map((r) => resolveRunCheckpoint(r, p.command)));
  // Runs of another base cannot be paired with this one: say which base each names.
  for (const [i, r] of resolved.entries()) {
    if (r.base && !(await sameFile(r.base, base)))
      throw new UsageError(`${runs[i]} names the base ${r.base}, not ${base}: compare runs of one base`, p.command);
  }
  // A run folder is its name; a checkpoint is its run and step.
  const labels = runs.map((r, i) => (resolved[i].isRun ? path.basename(path.resolve(r)) : checkpointLabel(r)));
  if (new Set(labels).size !== labels.length) labels.forEach((_, i) => (labels[i] = runs[i]));
  const ckpts = resolved.map((r) => r.path);
  const { compareRuns } = await import('../analysis/consistency');
  const { formatConsistency } = await import('../report/format-text');
  const term = terminal(p.flags.has('--quiet'));
  const report = await compareRuns(base, ckpts, { eta: settings.eta, labels });
  if (!diffOnly) {
    const { createBackend } = await import('../compute/backend');
    const { createSpectralPass } = await import('../analysis/spectral');
    const { compareRegimes } = await import('../analysis/regime-compare');
    const bases = await basisCacheFromFlags(p, [base, ...ckpts], (line) => term.notice(line));
    const backend = await createBackend({ device, log: (line) => term.notice(line) });
    const reports: CheckpointReport[] = [];
    try {
      const spectral = createSpectralPass(backend, { bases });
      for (const [i, c] of ckpts.entries()) {
        const r = await analyzeCheckpoint(base, c, { settings, passes: 'full', spectral, onProgress: progressPrinter(term.quiet, labels[i]) });
        if (p.flags.has('--verbose')) verboseLines(term, r, bases?.dir);
        reports.push(r);
      }
    } finally {
      await backend.dispose();
    }
    report.regime = compareRegimes(labels, reports, settings.seed);
  }
  term.out(formatConsistency(report));
  await outputs.write('--json', report, json);
  if (outputs.has('--md')) {
    const { consistencyToMarkdown } = await import('../report/markdown');
    await outputs.write('--md', report, consistencyToMarkdown);
  }
  if (outputs.has('--html')) {
    const { consistencyToHtml } = await import('../report/html');
    await outputs.write('--html', report, consistencyToHtml);
  }
  return 0;
};
