/**
 * `gatescope slurm analyze BASE CKPT... --tasks N --out DIR [--wait]` and `gatescope slurm status DIR
 * [--wait]`: the analysis as Slurm job arrays of shards with a dependent merge job per checkpoint.
 */
import * as path from 'node:path';
import { existsSync, promises as fsp } from 'node:fs';
import { checkpointLabel } from '../discovery/layout';
import { checkOutputPath } from '../formats/output-guard';
import {
  failureLines,
  shardCounts,
  readManifest,
  submit,
  waitFor,
  status,
  SlurmError,
  MAX_TASKS,
  type CheckpointStatus,
  type Manifest,
} from '../cluster/slurm';
import { UsageError, deviceFlag, numberFlag, settingsFromFlags, stringFlag, type Parsed } from './args';
import { terminal, type Terminal } from './terminal';

/** How the nodes run this very CLI: this Node binary and the bundle next to it (a shared file system sees both). */
export function gatescopeCommand(): string[] {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const here = path.join(dir, 'cli.js');
    if (path.basename(dir) === 'dist' && existsSync(here)) return [process.execPath, here];
    const bundle = path.join(dir, 'dist', 'cli.js');
    if (existsSync(bundle)) return [process.execPath, bundle];
    if (path.dirname(dir) === dir) throw new SlurmError('dist/cli.js not found: run `npm run build` first');
  }
}

/** The flags every shard passes on to `analyze`, as typed (checked here first). */
function analyzeArgs(p: Parsed): string[] {
  settingsFromFlags(p);
  deviceFlag(p);
  const pass = ['--eta', '--k', '--alpha', '--k-spectrum', '--power-iterations', '--oversample', '--device', '--cache-dir', '--cache-size'];
  const out: string[] = [];
  for (const f of pass) {
    const v = stringFlag(p, f);
    if (v !== undefined) out.push(f, f === '--cache-dir' ? path.resolve(v) : v);
  }
  if (p.flags.has('--no-cache')) out.push('--no-cache');
  return out;
}

function formatsOf(p: Parsed): { md: boolean; html: boolean } {
  const v = stringFlag(p, '--formats');
  const list = v
    ? v
        .split(',')
        .map((x) => x.trim().toLowerCase())
        .filter(Boolean)
    : [];
  const bad = list.filter((x) => x !== 'json' && x !== 'md' && x !== 'html');
  if (bad.length) throw new UsageError(`--formats takes json, md and html, got ${bad.join(', ')}`, p.command);
  return { md: list.includes('md'), html: list.includes('html') };
}

function statusLine(c: CheckpointStatus): string {
  const n = shardCounts(c);
  const parts = [`${n.done}/${c.tasks.length} shards done`];
  if (n.running) parts.push(`${n.running} running`);
  if (n.pending) parts.push(`${n.pending} pending`);
  if (n.failed) parts.push(`${n.failed} failed`);
  parts.push(`merge ${c.merge.state}`);
  return `${c.label}: ${c.state} (${parts.join(', ')})${c.landed ? `; report ${c.report}` : ''}`;
}

async function waitAndReport(m: Manifest, term: Terminal, wait: boolean, intervalMs: number): Promise<number> {
  let last = '';
  const show = (s: CheckpointStatus[]): void => {
    const text = s.map(statusLine).join('\n');
    if (text !== last) term.notice(text);
    last = text;
  };
  const s = wait ? await waitFor(m, { intervalMs, onStatus: show }) : await status(m);
  if (!wait) term.out(s.map(statusLine).join('\n'));
  const failures = await failureLines(s);
  if (failures.length) {
    for (const l of failures) term.error(l);
    return 1;
  }
  if (wait) for (const c of s) term.out(`${c.label}: ${c.report}`);
  return 0;
}

function pollInterval(p: Parsed): number {
  return numberFlag(p, '--poll', 5, (x) => x >= 0.1 && x <= 3600, 'seconds from 0.1 to 3600') * 1000;
}

export async function cmdSlurm(p: Parsed): Promise<number> {
  const [sub, ...rest] = p.positionals;
  const term = terminal(p.flags.has('--quiet'));
  if (sub === 'status') {
    if (rest.length !== 1) throw new UsageError("slurm status takes the submission's --out folder", p.command);
    const only = ['--tasks', '--out', '--partition', '--sbatch-arg', '--formats'].filter((f) => p.flags.has(f));
    if (only.length) throw new UsageError(`slurm status reads the submission as it was made: ${only.join(', ')} would be ignored`, p.command);
    return waitAndReport(await readManifest(rest[0]), term, p.flags.has('--wait'), pollInterval(p));
  }
  if (sub !== 'analyze') throw new UsageError(`slurm takes "analyze" or "status", got ${sub === undefined ? 'nothing' : JSON.stringify(sub)}`, p.command);
  if (rest.length < 2) throw new UsageError('slurm analyze takes a base and at least one checkpoint', p.command);
  const [base, ...ckpts] = rest;
  for (const c of rest)
    if (
      !(await fsp.stat(c).then(
        () => true,
        () => false,
      ))
    )
      throw new UsageError(`no such checkpoint: ${c}`, p.command);
  const tasks = numberFlag(p, '--tasks', NaN, (x) => Number.isInteger(x) && x >= 1 && x <= MAX_TASKS, `an integer from 1 to ${MAX_TASKS}`);
  if (Number.isNaN(tasks)) throw new UsageError('slurm analyze needs --tasks N (shards per checkpoint)', p.command);
  const out = stringFlag(p, '--out');
  if (!out) throw new UsageError('slurm analyze needs --out DIR (where the parts, logs and reports go)', p.command);
  await checkOutputPath(path.join(out, 'gatescope-slurm.json'), { inputs: rest, mkdir: true, what: 'the Slurm output folder' });
  const sbatchArgs = (stringFlag(p, '--sbatch-arg') ?? '').split('\u0000').filter(Boolean);
  const m = await submit({
    base,
    checkpoints: ckpts.map((c) => ({ path: c, label: checkpointLabel(c) })),
    tasks,
    out,
    partition: stringFlag(p, '--partition'),
    sbatchArgs,
    analyzeArgs: analyzeArgs(p),
    ...formatsOf(p),
    gatescope: gatescopeCommand(),
  });
  for (const c of m.checkpoints) term.out(`${c.label}: array job ${c.arrayJob} (${c.tasks} shards), merge job ${c.mergeJob} -> ${c.report}`);
  if (!p.flags.has('--wait')) {
    term.out(`Follow it with: gatescope slurm status ${out} [--wait]`);
    return 0;
  }
  return waitAndReport(m, term, true, pollInterval(p));
}
