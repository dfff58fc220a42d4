/**
 * The Slurm backend: one `sbatch --array=1-N` per checkpoint whose tasks run `gatescope analyze --shard
 * I/N`, and one merge job per checkpoint that starts when every task succeeded (`--dependency=afterok`).
 * Everything a submission writes lives under its output folder, described by a manifest that `status`
 * and `wait` (the CLI and the extension alike) read back. No vscode here: the CLI and the host share it.
 *
 * Each task's wrapper writes its exit status next to the logs before it exits, so a task that failed is
 * told apart from one that was killed (no status: Slurm's state says why) without Slurm's accounting.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../report/write';

export const MANIFEST = 'gatescope-slurm.json';
export const MAX_TASKS = 1024;

export class SlurmError extends Error {
  override name = 'SlurmError';
}

/** How a Slurm command is run; injected in tests of the pure parts. */
export type Exec = (cmd: string, args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

export const execCommand: Exec = (cmd, args) =>
  new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
      if (e && typeof e.code === 'string') {
        reject(new SlurmError(e.code === 'ENOENT' ? `${cmd} is not on the PATH: is this a Slurm login node?` : `${cmd}: ${e.message}`));
        return;
      }
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });

/** Whether `sbatch` can be run here (the extension offers the command only then). */
export async function sbatchAvailable(exec: Exec = execCommand): Promise<boolean> {
  try {
    return (await exec('sbatch', ['--version'])).code === 0;
  } catch {
    return false;
  }
}

/** What "Analyze Run on Slurm" asks (or takes as its second argument). */
export interface SlurmRequest {
  tasks: number;
  partition?: string;
  sbatchArgs?: string[];
  out?: string;
}

/** The optional second argument of "Analyze Run on Slurm", validated: a wrong field is an error, not ignored. */
export function parseSlurmRequest(x: unknown): Partial<SlurmRequest> | undefined {
  if (x === undefined || x === null) return undefined;
  if (typeof x !== 'object' || Array.isArray(x)) throw new Error('the Slurm request must be an object { tasks, partition?, sbatchArgs?, out? }');
  const o = x as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !['tasks', 'partition', 'sbatchArgs', 'out'].includes(k));
  if (unknown.length) throw new Error(`the Slurm request has unknown fields: ${unknown.join(', ')}`);
  if (o.tasks !== undefined && !(Number.isInteger(o.tasks) && (o.tasks as number) >= 1 && (o.tasks as number) <= MAX_TASKS))
    throw new Error(`tasks must be a whole number from 1 to ${MAX_TASKS}`);
  if (o.partition !== undefined && typeof o.partition !== 'string') throw new Error('partition must be a string');
  if (o.out !== undefined && typeof o.out !== 'string') throw new Error('out must be a string');
  if (o.sbatchArgs !== undefined && !(Array.isArray(o.sbatchArgs) && o.sbatchArgs.every((a) => typeof a === 'string')))
    throw new Error('sbatchArgs must be a list of strings');
  return o;
}

export interface SubmitOptions {
  base: string;
  checkpoints: { path: string; label: string }[];
  tasks: number;
  out: string;
  partition?: string;
  /** Passed to every sbatch as they are (e.g. --time=01:00:00, --mem=64G, --gres=gpu:1). */
  sbatchArgs?: string[];
  /** Flags every shard's `analyze` takes (settings, device, cache). */
  analyzeArgs?: string[];
  /** Markdown and HTML beside each merged JSON report. */
  md?: boolean;
  html?: boolean;
  /** How the nodes run gatescope: the interpreter and the CLI script (the shared file system's paths). */
  gatescope: string[];
  exec?: Exec;
}

export interface ManifestCheckpoint {
  label: string;
  /** The file-name form of the label. */
  slug: string;
  checkpoint: string;
  tasks: number;
  arrayJob: string;
  mergeJob: string;
  /** Where the merged reports land. */
  report: string;
  reports: string[];
  parts: string;
}

export interface Manifest {
  kind: 'gatescope.slurm-submission';
  createdAt: string;
  base: string;
  out: string;
  checkpoints: ManifestCheckpoint[];
}

/** "rl-kl step 80" -> "rl-kl-step-80": safe in file names and job names; unique over the submission. */
export function slugs(labels: string[]): string[] {
  const used = new Map<string, number>();
  return labels.map((l) => {
    const s = l.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'checkpoint';
    const n = (used.get(s) ?? 0) + 1;
    used.set(s, n);
    return n === 1 ? s : `${s}-${n}`;
  });
}

/** A word for a POSIX shell: single-quoted. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./=:,+@%-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Stands for the array task's id in the job scripts' words; expanded by the shell on the node. */
const TASK = '${SLURM_ARRAY_TASK_ID}';

/** A shell word in which TASK expands and everything else is literal. */
function shellWord(s: string): string {
  if (s === '') return "''";
  return s
    .split(TASK)
    .map((x) => (x === '' ? '' : shellQuote(x)))
    .join('"$SLURM_ARRAY_TASK_ID"');
}

const words = (xs: string[]): string => xs.map(shellWord).join(' ');

function statusFile(out: string, slug: string, task: number | string): string {
  return path.join(out, 'status', `${slug}-${task}.rc`);
}

export function logFile(out: string, slug: string, task: number | 'merge'): string {
  return path.join(out, 'logs', `${slug}-${task}.log`);
}

/** The job script: run, then record the exit status atomically (so `wait` can tell failed from killed). */
function script(command: string[], status: string): string {
  return [
    '#!/bin/bash',
    '# Written by gatescope slurm analyze.',
    'export ORT_DISABLE_TELEMETRY=1',
    // The extension host may be an Electron binary: run it as Node.
    'export ELECTRON_RUN_AS_NODE=1',
    `${words(command)}`,
    'rc=$?',
    `echo "$rc" > ${shellWord(`${status}.tmp`)} && mv ${shellWord(`${status}.tmp`)} ${shellWord(status)}`,
    'exit "$rc"',
    '',
  ].join('\n');
}

/** "Submitted batch job 12" or (with --parsable) "12;cluster": the job id. */
export function jobIdOf(stdout: string): string | null {
  const t = stdout.trim();
  const m = /^(\d+)(?:;\S+)?$/.exec(t) ?? /Submitted batch job (\d+)/.exec(t);
  return m ? m[1] : null;
}

async function sbatch(exec: Exec, args: string[]): Promise<string> {
  const r = await exec('sbatch', ['--parsable', ...args]);
  const id = r.code === 0 ? jobIdOf(r.stdout) : null;
  if (!id) throw new SlurmError(`sbatch failed${r.code ? ` (exit ${r.code})` : ''}: ${(r.stderr || r.stdout).trim() || 'no job id in its output'}`);
  return id;
}

/**
 * Writes the scripts and submits the jobs. The output folder must hold no earlier submission; the
 * manifest is written as soon as the jobs exist, so a later `status` finds them even if this process dies.
 */
export async function submit(o: SubmitOptions): Promise<Manifest> {
  const exec = o.exec ?? execCommand;
  if (!Number.isInteger(o.tasks) || o.tasks < 1 || o.tasks > MAX_TASKS)
    throw new SlurmError(`the number of tasks must be from 1 to ${MAX_TASKS}, got ${o.tasks}`);
  const out = path.resolve(o.out);
  if (
    await fsp.stat(path.join(out, MANIFEST)).then(
      () => true,
      () => false,
    )
  ) {
    throw new SlurmError(`${out} already holds a submission (${MANIFEST}): choose a new --out, or see it with "gatescope slurm status ${o.out}"`);
  }
  for (const d of ['jobs', 'logs', 'status', 'parts']) await fsp.mkdir(path.join(out, d), { recursive: true });
  const common = [...(o.partition ? [`--partition=${o.partition}`] : []), ...(o.sbatchArgs ?? [])];
  const names = slugs(o.checkpoints.map((c) => c.label));
  const manifest: Manifest = { kind: 'gatescope.slurm-submission', createdAt: new Date().toISOString(), base: path.resolve(o.base), out, checkpoints: [] };
  for (const [i, c] of o.checkpoints.entries()) {
    const slug = names[i];
    const parts = path.join(out, 'parts', slug);
    await fsp.mkdir(parts, { recursive: true });
    const report = path.join(out, `${slug}.json`);
    const reports = [report, ...(o.md ? [path.join(out, `${slug}.md`)] : []), ...(o.html ? [path.join(out, `${slug}.html`)] : [])];
    const shardCmd = [
      ...o.gatescope,
      'analyze',
      path.resolve(o.base),
      path.resolve(c.path),
      '--shard',
      `${TASK}/${o.tasks}`,
      '--json',
      path.join(parts, `part-${TASK}.json`),
      '--quiet',
      ...(o.analyzeArgs ?? []),
    ];
    const arrayScript = path.join(out, 'jobs', `${slug}.array.sh`);
    await writeFileAtomic(arrayScript, script(shardCmd, statusFile(out, slug, TASK)));
    const mergeCmd = [
      ...o.gatescope,
      'merge',
      parts,
      '--json',
      report,
      ...(o.md ? ['--md', reports[1]] : []),
      ...(o.html ? ['--html', reports[reports.length - 1]] : []),
      '--quiet',
    ];
    const mergeScript = path.join(out, 'jobs', `${slug}.merge.sh`);
    await writeFileAtomic(mergeScript, script(mergeCmd, statusFile(out, slug, 'merge')));
    const arrayJob = await sbatch(exec, [
      `--array=1-${o.tasks}`,
      `--job-name=gatescope-${slug}`,
      `--output=${path.join(out, 'logs', `${slug}-%a.log`)}`,
      ...common,
      arrayScript,
    ]);
    const mergeJob = await sbatch(exec, [
      `--dependency=afterok:${arrayJob}`,
      `--job-name=gatescope-${slug}-merge`,
      `--output=${logFile(out, slug, 'merge')}`,
      ...common,
      mergeScript,
    ]);
    manifest.checkpoints.push({ label: c.label, slug, checkpoint: path.resolve(c.path), tasks: o.tasks, arrayJob, mergeJob, report, reports, parts });
    await writeFileAtomic(path.join(out, MANIFEST), JSON.stringify(manifest, null, 2));
  }
  return manifest;
}

export async function readManifest(out: string): Promise<Manifest> {
  const file = path.join(path.resolve(out), MANIFEST);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch {
    throw new SlurmError(`no Slurm submission in ${out} (no ${MANIFEST})`);
  }
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch (e) {
    throw new SlurmError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (m?.kind !== 'gatescope.slurm-submission' || !Array.isArray(m.checkpoints)) throw new SlurmError(`${file}: not a Gatescope Slurm manifest`);
  return m;
}

export type TaskState = 'pending' | 'running' | 'done' | 'failed';

export interface TaskStatus {
  task: number | 'merge';
  state: TaskState;
  /** Slurm's state while it knows the job (PENDING, RUNNING, CANCELLED, ...), else what the status file says. */
  detail: string;
  log: string;
  exitCode?: number;
  /** A merge that never ran because a shard failed: failed, but not a failure of its own. */
  blocked?: true;
}

export interface CheckpointStatus {
  label: string;
  state: TaskState;
  tasks: TaskStatus[];
  merge: TaskStatus;
  report: string;
  /** The merged report is there. */
  landed: boolean;
}

const TERMINAL_FAILURES = /^(FAILED|CANCELLED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|PREEMPTED|BOOT_FAIL|DEADLINE)/;

/** Slurm's view of the jobs: "123_4" or "124" -> state, for those still in the controller's memory. */
async function slurmStates(exec: Exec, jobs: string[]): Promise<Map<string, string>> {
  const states = new Map<string, string>();
  if (!jobs.length) return states;
  const q = await exec('squeue', ['-h', '-r', '-j', jobs.join(','), '-o', '%i|%T']);
  // squeue exits non-zero when every job named has left the queue: nothing is active then.
  if (q.code !== 0 && !/Invalid job id/i.test(q.stderr)) throw new SlurmError(`squeue failed (exit ${q.code}): ${q.stderr.trim()}`);
  for (const line of q.stdout.split('\n')) {
    const [id, st] = line.trim().split('|');
    if (id && st) states.set(id, st);
  }
  // Finished jobs: scontrol remembers them for a while (MinJobAge), with why they ended.
  for (const job of jobs) {
    const s = await exec('scontrol', ['show', 'job', '-o', job]);
    if (s.code !== 0) continue;
    for (const line of s.stdout.split('\n')) {
      const id = /JobId=(\d+)/.exec(line)?.[1];
      const task = /ArrayTaskId=(\d+)(?:\s|$)/.exec(line)?.[1];
      const st = /JobState=(\S+)/.exec(line)?.[1];
      if (!id || !st) continue;
      const arrayOf = /ArrayJobId=(\d+)/.exec(line)?.[1];
      const key = arrayOf && task ? `${arrayOf}_${task}` : id;
      if (!states.has(key)) states.set(key, st);
    }
  }
  return states;
}

async function readStatus(file: string): Promise<number | undefined> {
  const t = await fsp.readFile(file, 'utf8').catch(() => undefined);
  if (t === undefined) return undefined;
  const n = Number(t.trim());
  return Number.isInteger(n) ? n : undefined;
}

function taskStatus(slurm: string | undefined, rc: number | undefined, task: number | 'merge', log: string): TaskStatus {
  if (rc !== undefined) return { task, state: rc === 0 ? 'done' : 'failed', detail: rc === 0 ? 'COMPLETED' : `exit ${rc}`, log, exitCode: rc };
  if (slurm === undefined) return { task, state: 'failed', detail: 'ended without an exit status: cancelled or killed', log };
  if (/^(PENDING|CONFIGURING|REQUEUED|RESIZING|SUSPENDED)/.test(slurm)) return { task, state: 'pending', detail: slurm, log };
  if (TERMINAL_FAILURES.test(slurm)) return { task, state: 'failed', detail: slurm, log };
  // RUNNING, COMPLETING, or COMPLETED a moment before its status file shows.
  return { task, state: 'running', detail: slurm, log };
}

export async function status(m: Manifest, exec: Exec = execCommand): Promise<CheckpointStatus[]> {
  const states = await slurmStates(
    exec,
    m.checkpoints.flatMap((c) => [c.arrayJob, c.mergeJob]),
  );
  const out: CheckpointStatus[] = [];
  for (const c of m.checkpoints) {
    const tasks: TaskStatus[] = [];
    for (let i = 1; i <= c.tasks; i++) {
      tasks.push(taskStatus(states.get(`${c.arrayJob}_${i}`), await readStatus(statusFile(m.out, c.slug, i)), i, logFile(m.out, c.slug, i)));
    }
    const failed = tasks.some((t) => t.state === 'failed');
    const mergeRc = await readStatus(statusFile(m.out, c.slug, 'merge'));
    let merge = taskStatus(states.get(c.mergeJob), mergeRc, 'merge', logFile(m.out, c.slug, 'merge'));
    // A merge held by a failed task never runs: it is failed too (and cancelled by wait).
    if (failed && merge.state === 'pending') merge = { ...merge, state: 'failed', detail: 'a shard failed', blocked: true };
    const landed = await fsp.stat(c.report).then(
      () => true,
      () => false,
    );
    const state: TaskState =
      failed || merge.state === 'failed'
        ? 'failed'
        : merge.state === 'done'
          ? 'done'
          : tasks.some((t) => t.state !== 'pending') || merge.state === 'running'
            ? 'running'
            : 'pending';
    out.push({ label: c.label, state, tasks, merge, report: c.report, landed });
  }
  return out;
}

/** The tasks (and merge) that failed by themselves: a merge a failed shard held back is not one. */
export function ownFailures(c: CheckpointStatus): TaskStatus[] {
  return [...c.tasks, c.merge].filter((t) => t.state === 'failed' && !t.blocked);
}

/** How many shards are in each state. */
export function shardCounts(c: CheckpointStatus): Record<TaskState, number> {
  const n: Record<TaskState, number> = { pending: 0, running: 0, done: 0, failed: 0 };
  for (const t of c.tasks) n[t.state]++;
  return n;
}

/** The last lines of a log, for the error that names a failed task. */
export async function logTail(file: string, lines = 5): Promise<string[]> {
  const t = await fsp.readFile(file, 'utf8').catch(() => '');
  return t
    .split('\n')
    .filter((l) => l.trim())
    .slice(-lines);
}

/** One line per failed task: which, why, and where its log is. */
export async function failureLines(s: readonly CheckpointStatus[]): Promise<string[]> {
  const lines: string[] = [];
  for (const c of s) {
    for (const t of ownFailures(c)) {
      lines.push(`${c.label}: ${t.task === 'merge' ? 'the merge job' : `task ${t.task} of ${c.tasks.length}`} failed (${t.detail}); log: ${t.log}`);
      for (const l of await logTail(t.log, 3)) lines.push(`    ${l}`);
    }
  }
  return lines;
}

/**
 * A checkpoint with a failed shard can no longer merge: its merge job would stay pending forever, and its
 * other shards would spend cluster time for nothing. Cancels both; the other checkpoints run on.
 */
export async function cancelDoomed(m: Manifest, s: readonly CheckpointStatus[], exec: Exec = execCommand): Promise<void> {
  const doomed = m.checkpoints.filter((_, i) => s[i]?.state === 'failed' && !s[i].landed).flatMap((c) => [c.mergeJob, c.arrayJob]);
  if (doomed.length) await exec('scancel', doomed);
}

/**
 * Polls until every checkpoint's report landed or something failed. On a failure, the jobs of that
 * checkpoint that can no longer lead to a report are cancelled and the statuses returned.
 */
export async function waitFor(
  m: Manifest,
  opts: { exec?: Exec; intervalMs?: number; signal?: AbortSignal; onStatus?: (s: CheckpointStatus[]) => void } = {},
): Promise<CheckpointStatus[]> {
  const exec = opts.exec ?? execCommand;
  for (;;) {
    opts.signal?.throwIfAborted();
    const s = await status(m, exec);
    opts.onStatus?.(s);
    if (s.some((c) => c.state === 'failed')) {
      await cancelDoomed(m, s, exec);
      return s;
    }
    if (s.every((c) => c.state === 'done' && c.landed)) return s;
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 2000));
  }
}
