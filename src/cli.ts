/**
 * The `gatescope` command line: the same engine as the extension, for clusters and CI.
 * Exit codes: 0 success, 1 analysis error (bad or incomplete checkpoint), 2 usage error.
 */
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { scanFolder } from './discovery/scan';
import { analyzeCheckpoint, type AnalyzeProgress } from './analysis/analyze';
import { CheckpointFormatError } from './formats/errors';
import { DEFAULT_SETTINGS, SCHEMA_VERSION, type AnalysisSettings, type CheckpointReport } from './report/schema';
import { formatCheckpointReport, formatScan } from './report/format-text';
import { reportsToCsv } from './report/csv';
import { writeFileAtomic } from './report/write';
import { VERSION } from './version';
import type { DeviceSetting } from './compute/backend';

export class UsageError extends Error {}

const HELP = `gatescope ${VERSION}: weight-level diagnostics of RL and SFT training runs

Usage:
  gatescope scan DIR [--json FILE]
      List the runs and checkpoints under DIR, their state and their base model.
  gatescope diff BASE CKPT... [--json FILE] [--csv FILE] [--html FILE] [--eta 1e-3] [--no-layers]
      M1 update sparsity (bf16-exact), M4 row/column ratios and Gate I/III probes of each
      checkpoint against BASE. BASE and CKPT are checkpoint folders (plain or sharded) or .safetensors files.

  gatescope analyze BASE CKPT... [--k 64] [--alpha 0.5] [--device auto|cpu|cuda] [--json F] [--md F]
          [--k-spectrum 256] [--power-iterations 4] [--oversample 10] [--html F]
      The whole Three-Gate report: the diff pass plus the spectral pass (M5 principal angles,
      M6 spectral drift, M7 principal/low-magnitude overlaps, M8 off-principal energy) and the
      regime verdict per tensor and per checkpoint.
  gatescope compare BASE RUN_A RUN_B... [--json F] [--md F] [--html F] [--k 64] [--device auto|cpu|cuda]
          [--diff-only]
      The comparative regime verdict of every pair of runs from one base (which run is more
      off-principal per unit of update, with 95% intervals, and the update-size ratio), M2 Jaccard
      of changed masks (with the random baseline) and M3 consensus maps. Each RUN is a checkpoint
      (or a run folder: its last complete checkpoint). --diff-only: M2/M3 only, no spectral pass.
  gatescope scramble BASE --layers 20,25 [--rotate] [--hadamard] [--permute] [--seed S] --out DIR
      Write a NEW checkpoint folder in which the chosen layers are scrambled without changing the
      function: per-KV-head orthogonal rotation of v_proj/o_proj (Haar-random, or --hadamard) and/or a
      consistent permutation of heads across q/k/v/o (Gate II test). Details in DIR/SCRAMBLE.json.
  gatescope mask BASE [--kind union|low|nonprincipal|principal] [--alpha 0.5] [--k 64] [--all-modules]
                 [--device auto|cpu|cuda] [--json F] --out FILE.safetensors
      Export sparse-RL masks (U8 0/1, one per linear weight; docs/sparse-rl-masks.md): principal = top
      alpha of |rank-k W0|, low = bottom alpha of |W0|, union = low or not principal (default).

Options:
  --json FILE   write the versioned JSON report (docs/report-schema.md)
  --csv FILE    write one row per tensor
  --html FILE   write one self-contained HTML page (inline SVG charts, no scripts, no network)
  --quiet       no progress on stderr
  -h, --help    this text
Exit codes: 0 ok, 1 analysis error, 2 usage error.`;

interface Parsed {
  positionals: string[];
  flags: Map<string, string | true>;
}

const VALUE_FLAGS = new Set(['--k-spectrum', '--power-iterations', '--oversample', '--json', '--csv', '--md', '--html', '--eta', '--k', '--alpha', '--device', '--out', '--layers', '--seed', '--kind', '--runs', '--base']);
const BOOL_FLAGS = new Set(['--quiet', '--no-layers', '--help', '-h', '--rotate', '--permute', '--hadamard', '--all-modules', '--diff-only']);

export function parseArgs(argv: string[]): Parsed {
  const positionals: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('-')) {
      const [name, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
      if (VALUE_FLAGS.has(name)) {
        const v = inline ?? argv[++i];
        if (v === undefined || v === '') throw new UsageError(`${name} needs a value`);
        if (name === '--runs') {
          const prev = flags.get(name);
          flags.set(name, typeof prev === 'string' ? `${prev}\u0000${v}` : v);
        } else flags.set(name, v);
      } else if (BOOL_FLAGS.has(name)) flags.set(name, true);
      else throw new UsageError(`unknown option ${a}`);
    } else positionals.push(a);
  }
  return { positionals, flags };
}

export function numberFlag(p: Parsed, name: string, fallback: number, check: (x: number) => boolean, what: string): number {
  const v = p.flags.get(name);
  if (v === undefined) return fallback;
  const x = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(x) || !check(x)) throw new UsageError(`${name} must be ${what}, got ${String(v)}`);
  return x;
}

function stringFlag(p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

export function settingsFromFlags(p: Parsed): AnalysisSettings {
  return {
    ...DEFAULT_SETTINGS,
    eta: numberFlag(p, '--eta', DEFAULT_SETTINGS.eta, (x) => x >= 0 && x < 1, 'a number in [0, 1)'),
    k: numberFlag(p, '--k', DEFAULT_SETTINGS.k, (x) => Number.isInteger(x) && x >= 1, 'a positive integer'),
    alpha: numberFlag(p, '--alpha', DEFAULT_SETTINGS.alpha, (x) => x > 0 && x < 1, 'a number in (0, 1)'),
    kSpectrum: numberFlag(p, '--k-spectrum', DEFAULT_SETTINGS.kSpectrum, (x) => Number.isInteger(x) && x >= 1, 'a positive integer'),
    powerIterations: numberFlag(p, '--power-iterations', DEFAULT_SETTINGS.powerIterations, (x) => Number.isInteger(x) && x >= 0 && x <= 50, 'an integer from 0 to 50'),
    oversample: numberFlag(p, '--oversample', DEFAULT_SETTINGS.oversample, (x) => Number.isInteger(x) && x >= 0 && x <= 1000, 'an integer from 0 to 1000'),
  };
}

/** Output files are never written inside a checkpoint folder: checkpoints are the user's most precious files. */
export function assertOutsideCheckpoints(out: string, checkpoints: string[]): void {
  const o = path.resolve(out);
  for (const c of checkpoints) {
    const dir = path.resolve(c).endsWith('.safetensors') ? path.dirname(path.resolve(c)) : path.resolve(c);
    const r = path.relative(dir, o);
    if (!r.startsWith('..') && !path.isAbsolute(r)) throw new UsageError(`refusing to write ${out} inside the checkpoint folder ${c}`);
  }
}

export function progressPrinter(quiet: boolean, label: string): (p: AnalyzeProgress) => void {
  if (quiet) return () => undefined;
  const started = Date.now();
  let lastPct = -1;
  const tty = process.stderr.isTTY;
  return (p) => {
    const pctDone = Math.floor(p.fraction * 100);
    // Short work stays silent; long work reports on stderr so stdout stays clean for the tables.
    if (Date.now() - started < 1000) return;
    if (tty) {
      process.stderr.write(`\r\x1b[K${label} ${pctDone}% ${p.phase} ${p.tensor.slice(0, 60)}`);
      if (p.fraction >= 1) process.stderr.write('\r\x1b[K');
    } else if (pctDone >= lastPct + 10 || p.fraction >= 1) {
      lastPct = pctDone - (pctDone % 10);
      process.stderr.write(`${label} ${pctDone}% (${p.phase}, ${p.index}/${p.total} tensors)\n`);
    }
  };
}

async function cmdScan(p: Parsed): Promise<number> {
  if (p.positionals.length !== 1) throw new UsageError('scan takes one folder');
  const dir = p.positionals[0];
  const st = await fsp.stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new UsageError(`not a folder: ${dir}`);
  const result = await scanFolder(dir);
  console.log(formatScan(result));
  const json = stringFlag(p, '--json');
  if (json) await writeFileAtomic(json, JSON.stringify({ schemaVersion: SCHEMA_VERSION, kind: 'gatescope.scan', ...result }, null, 2));
  return 0;
}

async function cmdDiff(p: Parsed): Promise<number> {
  if (p.positionals.length < 2) throw new UsageError('diff takes a base and at least one checkpoint');
  const [base, ...ckpts] = p.positionals;
  const settings = settingsFromFlags(p);
  const json = stringFlag(p, '--json');
  const csv = stringFlag(p, '--csv');
  const html = stringFlag(p, '--html');
  for (const out of [json, csv, html]) if (out) assertOutsideCheckpoints(out, p.positionals);
  const reports: CheckpointReport[] = [];
  for (const c of ckpts) {
    const report = await analyzeCheckpoint(base, c, { settings, passes: 'diff', onProgress: progressPrinter(p.flags.has('--quiet'), path.basename(c)) });
    reports.push(report);
    console.log(formatCheckpointReport(report, { layers: !p.flags.has('--no-layers') }));
    console.log('');
  }
  if (json) await writeFileAtomic(json, JSON.stringify(reports.length === 1 ? reports[0] : { schemaVersion: SCHEMA_VERSION, kind: 'gatescope.report-set', reports }, null, 2));
  if (csv) await writeFileAtomic(csv, reportsToCsv(reports));
  if (html) await writeHtml(html, reports);
  return 0;
}

async function cmdAnalyze(p: Parsed): Promise<number> {
  if (p.positionals.length < 2) throw new UsageError('analyze takes a base and at least one checkpoint');
  const [base, ...ckpts] = p.positionals;
  const settings = settingsFromFlags(p);
  const device = deviceFlag(p);
  const json = stringFlag(p, '--json');
  const md = stringFlag(p, '--md');
  const html = stringFlag(p, '--html');
  for (const out of [json, md, html]) if (out) assertOutsideCheckpoints(out, p.positionals);
  const { createBackend } = await import('./compute/backend');
  const { createSpectralPass } = await import('./analysis/spectral');
  const backend = await createBackend({ device, log: (line) => console.error(`gatescope: ${line}`) });
  const reports: CheckpointReport[] = [];
  try {
    const spectral = createSpectralPass(backend);
    for (const c of ckpts) {
      const report = await analyzeCheckpoint(base, c, { settings, passes: 'full', spectral, onProgress: progressPrinter(p.flags.has('--quiet'), path.basename(c)) });
      reports.push(report);
      console.log(formatCheckpointReport(report, { layers: !p.flags.has('--no-layers') }));
      console.log('');
    }
  } finally {
    await backend.dispose();
  }
  if (json) await writeFileAtomic(json, JSON.stringify(reports.length === 1 ? reports[0] : { schemaVersion: SCHEMA_VERSION, kind: 'gatescope.report-set', reports }, null, 2));
  if (md) {
    const { reportsToMarkdown } = await import('./report/markdown');
    await writeFileAtomic(md, reportsToMarkdown(reports));
  }
  if (html) await writeHtml(html, reports);
  return 0;
}

/** The self-contained HTML report (no scripts, no network), for sharing. */
async function writeHtml(file: string, reports: CheckpointReport[]): Promise<void> {
  const { reportsToHtml } = await import('./report/html');
  await writeFileAtomic(file, reportsToHtml(reports));
}

function deviceFlag(p: Parsed): DeviceSetting {
  const d = stringFlag(p, '--device') ?? 'auto';
  if (d !== 'auto' && d !== 'cpu' && d !== 'cuda') throw new UsageError(`--device must be auto, cpu or cuda, got ${d}`);
  return d;
}

/** A run folder stands for its last complete checkpoint; with it, the base its files name (when they name one). */
async function resolveRunCheckpoint(p: string): Promise<{ path: string; base: string | null }> {
  const st = await fsp.stat(p).catch(() => undefined);
  if (!st) throw new UsageError(`no such checkpoint or run: ${p}`);
  if (st.isFile()) return { path: p, base: null };
  const scan = await scanFolder(p, { maxDepth: 4 });
  const entries = await fsp.readdir(p);
  if (entries.some((e) => e.endsWith('.safetensors') || e === 'model.safetensors.index.json')) {
    const run = scan.runs.find((r) => r.checkpoints.some((c) => path.resolve(c.path) === path.resolve(p)));
    return { path: p, base: run?.base.resolved ?? null };
  }
  const run = scan.runs.find((r) => path.resolve(r.root) === path.resolve(p)) ?? scan.runs[0];
  const last = run?.checkpoints.filter((c) => c.state === 'complete').pop();
  if (!last) throw new UsageError(`no complete checkpoint under ${p}`);
  return { path: last.path, base: run.base.resolved };
}

async function sameFile(a: string, b: string): Promise<boolean> {
  const real = async (x: string): Promise<string> => fsp.realpath(x).catch(() => path.resolve(x));
  return (await real(a)) === (await real(b));
}

async function cmdCompare(p: Parsed): Promise<number> {
  if (p.positionals.length < 3) throw new UsageError('compare takes a base and at least two runs');
  const [base, ...runs] = p.positionals;
  const json = stringFlag(p, '--json');
  const md = stringFlag(p, '--md');
  const html = stringFlag(p, '--html');
  for (const out of [json, md, html]) if (out) assertOutsideCheckpoints(out, p.positionals);
  const settings = settingsFromFlags(p);
  const diffOnly = p.flags.has('--diff-only');
  const resolved = await Promise.all(runs.map(resolveRunCheckpoint));
  // Runs of another base cannot be paired with this one: say which base each names.
  for (const [i, r] of resolved.entries()) {
    if (r.base && !(await sameFile(r.base, base))) throw new UsageError(`${runs[i]} names the base ${r.base}, not ${base}: compare runs of one base`);
  }
  const labels = runs.map((r) => path.basename(path.resolve(r)));
  if (new Set(labels).size !== labels.length) labels.forEach((_, i) => (labels[i] = runs[i]));
  const ckpts = resolved.map((r) => r.path);
  const { compareRuns } = await import('./analysis/consistency');
  const { formatConsistency } = await import('./report/format-text');
  const quiet = p.flags.has('--quiet');
  const report = await compareRuns(base, ckpts, { eta: settings.eta, labels });
  if (!diffOnly) {
    const { createBackend } = await import('./compute/backend');
    const { createSpectralPass } = await import('./analysis/spectral');
    const { compareRegimes, ComparisonError } = await import('./analysis/regime-compare');
    const backend = await createBackend({ device: deviceFlag(p), log: (line) => console.error(`gatescope: ${line}`) });
    const reports: CheckpointReport[] = [];
    try {
      const spectral = createSpectralPass(backend);
      for (const [i, c] of ckpts.entries()) reports.push(await analyzeCheckpoint(base, c, { settings, passes: 'full', spectral, onProgress: progressPrinter(quiet, labels[i]) }));
    } finally {
      await backend.dispose();
    }
    try {
      report.regime = compareRegimes(labels, reports, settings.seed);
    } catch (e) {
      if (e instanceof ComparisonError) {
        console.error(`gatescope: ${e.message}`);
        return 1;
      }
      throw e;
    }
  }
  console.log(formatConsistency(report));
  if (json) await writeFileAtomic(json, JSON.stringify(report, null, 2));
  if (md) {
    const { consistencyToMarkdown } = await import('./report/markdown');
    await writeFileAtomic(md, consistencyToMarkdown(report));
  }
  if (html) {
    const { consistencyToHtml } = await import('./report/html');
    await writeFileAtomic(html, consistencyToHtml(report));
  }
  return 0;
}

export type Command = (p: Parsed) => Promise<number>;
const COMMANDS: Record<string, Command> = {
  scan: cmdScan,
  diff: cmdDiff,
  analyze: cmdAnalyze,
  compare: cmdCompare,
  scramble: async (p) => (await import('./transform/commands')).cmdScramble(p),
  mask: async (p) => (await import('./transform/commands')).cmdMask(p),
};

/** Other modules add commands (analyze, compare, ...) here; keeps this file about argument handling. */
export function registerCommand(name: string, fn: Command): void {
  COMMANDS[name] = fn;
}

/** Output piped into `head` and closed early: stop quietly, as other command-line tools do. */
function quietOnClosedPipe(): void {
  if (process.stdout.listenerCount('error') > 0) return;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}

export async function main(argv: string[]): Promise<number> {
  quietOnClosedPipe();
  try {
    const [cmd, ...rest] = argv;
    if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
      console.log(HELP);
      return cmd ? 0 : 2;
    }
    if (cmd === '--version') {
      console.log(VERSION);
      return 0;
    }
    const fn = COMMANDS[cmd];
    if (!fn) throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
    const parsed = parseArgs(rest);
    if (parsed.flags.has('--help') || parsed.flags.has('-h')) {
      console.log(HELP);
      return 0;
    }
    return await fn(parsed);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`gatescope: ${e.message}\nRun "gatescope --help" for usage.`);
      return 2;
    }
    if (e instanceof CheckpointFormatError) {
      console.error(`gatescope: ${e.message}${e.looksIncomplete ? '\n(the checkpoint looks incomplete: is training still saving it? try again when it is done)' : ''}`);
      return 1;
    }
    if ((e as Error).name === 'AbortError') {
      console.error('gatescope: cancelled');
      return 1;
    }
    console.error(`gatescope: ${(e as Error).stack ?? String(e)}`);
    return 1;
  }
}

if (require.main === module) {
  process.env.ORT_DISABLE_TELEMETRY = '1';

  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
