/**
 * The Slurm backend against a real single-node cluster (scripts/slurm-cluster.sh: munged, slurmctld and
 * slurmd from Debian's packages on 127.0.0.1, stopped by PID afterwards): the merged reports equal the
 * local ones, and a cancelled task and a failing task are named with their logs. Where no cluster can
 * run (not root, no apt), the live tests are skipped with the reason printed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as os from 'node:os';
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { runCli } from '../support/cli';
import { jobIdOf, parseSlurmRequest, shellQuote, slugs, status, type CheckpointStatus, type Exec, type Manifest } from '../../src/cluster/slurm';
import { slurmView } from '../../src/ui-model/slurm';
import type { CheckpointReport } from '../../src/report/schema';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const EX = path.join(ROOT, 'examples');
const BASE = path.join(EX, 'base');
const RL = path.join(EX, 'runs', 'rl-kl', 'global_step_80', 'actor', 'huggingface');
const SFT = path.join(EX, 'runs', 'sft', 'checkpoint-160');
const SCRIPT = path.join(ROOT, 'scripts', 'slurm-cluster.sh');

test('shell words survive bash unchanged, whatever they hold', () => {
  for (const s of ['plain', 'with space', "it's", '$HOME', 'a"b', '`x`', 'tab\there', '*?[]', '-flag=1', 'ünï']) {
    const echoed = execFileSync('bash', ['-c', `printf '%s' ${shellQuote(s)}`], { encoding: 'utf8' });
    assert.equal(echoed, s);
  }
});

test('labels become unique file-safe names; sbatch output gives the job id', () => {
  assert.deepEqual(slugs(['rl-kl step 80', 'rl-kl step 80', 'a/b c', '***']), ['rl-kl-step-80', 'rl-kl-step-80-2', 'a-b-c', 'checkpoint']);
  assert.equal(jobIdOf('1234\n'), '1234');
  assert.equal(jobIdOf('1234;cluster\n'), '1234');
  assert.equal(jobIdOf('Submitted batch job 77'), '77');
  assert.equal(jobIdOf('sbatch: error: invalid partition'), null);
});

test("status reads Slurm states and the tasks' exit files: done, failed with a code, killed, pending", async () => {
  const out = await fsp.mkdtemp(path.join(os.tmpdir(), 'gatescope-slurm-status-'));
  try {
    await fsp.mkdir(path.join(out, 'status'));
    await fsp.writeFile(path.join(out, 'status', 'x-1.rc'), '0\n');
    await fsp.writeFile(path.join(out, 'status', 'x-2.rc'), '1\n');
    const m: Manifest = {
      kind: 'gatescope.slurm-submission',
      createdAt: '',
      base: '/b',
      out,
      checkpoints: [
        { label: 'x', slug: 'x', checkpoint: '/c', tasks: 4, arrayJob: '10', mergeJob: '11', report: path.join(out, 'x.json'), reports: [], parts: '' },
      ],
    };
    const exec: Exec = async (cmd, args) => {
      if (cmd === 'squeue') return { code: 0, stdout: '10_4|PENDING\n11|PENDING\n', stderr: '' };
      if (cmd === 'scontrol' && args.includes('10'))
        return { code: 0, stdout: 'JobId=13 ArrayJobId=10 ArrayTaskId=3 JobName=g JobState=CANCELLED Reason=None\n', stderr: '' };
      return { code: 1, stdout: '', stderr: 'Invalid job id specified' };
    };
    const [s] = await status(m, exec);
    assert.deepEqual(
      s.tasks.map((t) => [t.state, t.detail]),
      [
        ['done', 'COMPLETED'],
        ['failed', 'exit 1'],
        ['failed', 'CANCELLED'],
        ['pending', 'PENDING'],
      ],
    );
    assert.equal(s.state, 'failed');
    assert.equal(s.merge.state, 'failed', 'a merge that can never start counts as failed');
    assert.equal(s.landed, false);
  } finally {
    await fsp.rm(out, { recursive: true, force: true });
  }
});

// ---- the live cluster ---------------------------------------------------------------------------------

let cluster: { dir: string; conf: string } | undefined;
let skipReason = '';

before(() => {
  const dir = path.join(os.tmpdir(), `gatescope-slurm-${process.pid}`);
  const r = spawnSync('bash', [SCRIPT, 'start', dir], { encoding: 'utf8', timeout: 1_200_000 });
  const conf = /SLURM_CONF=(\S+)/.exec(r.stdout)?.[1];
  if (r.status === 0 && conf) {
    cluster = { dir, conf };
    process.env.SLURM_CONF = conf;
    return;
  }
  skipReason = (r.stderr || r.stdout || `exit ${r.status}`).trim();
  if (r.status !== 3) throw new Error(`the test cluster did not start: ${skipReason}`);
  process.stderr.write(`slurm tests skipped: ${skipReason}\n`);
});

after(() => {
  if (!cluster) return;
  spawnSync('bash', [SCRIPT, 'stop', cluster.dir], { encoding: 'utf8', timeout: 60_000 });
  // Every daemon it started is gone.
  for (const name of ['munged', 'slurmctld', 'slurmd'])
    assert.equal(spawnSync('test', ['-e', path.join(cluster.dir, `${name}.pid`)]).status, 1, `${name} pid file left`);
  void fsp.rm(cluster.dir, { recursive: true, force: true });
});

function comparable(r: CheckpointReport): unknown {
  const rest: Partial<CheckpointReport> = { ...r };
  for (const k of ['createdAt', 'durationMs', 'timings', 'shards', 'base', 'checkpoint'] as const) delete rest[k];
  return rest;
}

async function readJson<T>(f: string): Promise<T> {
  return JSON.parse(await fsp.readFile(f, 'utf8')) as T;
}

test('slurm analyze --wait on the live cluster: the merged reports equal the local ones', { timeout: 600_000 }, async (t) => {
  if (!cluster) return t.skip(skipReason);
  const out = await fsp.mkdtemp(path.join(os.tmpdir(), 'gatescope-slurm-out-'));
  try {
    const r = await runCli([
      'slurm',
      'analyze',
      BASE,
      RL,
      SFT,
      '--tasks',
      '3',
      '--out',
      out,
      '--k',
      '16',
      '--no-cache',
      '--wait',
      '--poll',
      '0.5',
      '--formats',
      'md',
      '--quiet',
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /rl-kl step 80: array job \d+ \(3 shards\), merge job \d+/);
    for (const [ckpt, slug] of [
      [RL, 'rl-kl-step-80'],
      [SFT, 'sft-step-160'],
    ]) {
      const local = path.join(out, `${slug}-local.json`);
      assert.equal((await runCli(['analyze', BASE, ckpt, '--k', '16', '--no-cache', '--json', local, '--quiet'])).code, 0);
      const merged = await readJson<CheckpointReport>(path.join(out, `${slug}.json`));
      assert.deepEqual(comparable(merged), comparable(await readJson(local)), slug);
      assert.equal(merged.shards?.count, 3);
      assert.ok((await fsp.stat(path.join(out, `${slug}.md`))).size > 0);
    }
    // A second submission into the same folder is refused, naming it.
    const again = await runCli(['slurm', 'analyze', BASE, RL, '--tasks', '2', '--out', out, '--quiet']);
    assert.equal(again.code, 1);
    assert.match(again.err, /already holds a submission/);
  } finally {
    await fsp.rm(out, { recursive: true, force: true });
  }
});

test('a killed task: status --wait exits 1 naming it and its log, and cancels what can no longer merge', { timeout: 300_000 }, async (t) => {
  if (!cluster) return t.skip(skipReason);
  const out = await fsp.mkdtemp(path.join(os.tmpdir(), 'gatescope-slurm-kill-'));
  try {
    // Held, so that task 2 is surely not done yet when it is killed.
    const r = await runCli(['slurm', 'analyze', BASE, RL, '--tasks', '3', '--out', out, '--k', '16', '--no-cache', '--sbatch-arg=--hold', '--quiet']);
    assert.equal(r.code, 0, r.err);
    const m = await readJson<Manifest>(path.join(out, 'gatescope-slurm.json'));
    const job = m.checkpoints[0].arrayJob;
    execFileSync('scancel', [`${job}_2`]);
    execFileSync('scontrol', ['release', job]);
    const w = await runCli(['slurm', 'status', out, '--wait', '--poll', '0.5', '--quiet']);
    assert.equal(w.code, 1);
    assert.match(w.err, /rl-kl step 80: task 2 of 3 failed \(.*\); log: .*rl-kl-step-80-2\.log/);
    await assert.rejects(fsp.stat(m.checkpoints[0].report), 'no report from an incomplete set');
    const merge = execFileSync('scontrol', ['show', 'job', '-o', m.checkpoints[0].mergeJob], { encoding: 'utf8' });
    assert.match(merge, /JobState=CANCELLED/);
  } finally {
    await fsp.rm(out, { recursive: true, force: true });
  }
});

test('a failing task: --wait exits 1 naming the task, its log and the error in it', { timeout: 300_000 }, async (t) => {
  if (!cluster) return t.skip(skipReason);
  const out = await fsp.mkdtemp(path.join(os.tmpdir(), 'gatescope-slurm-fail-'));
  try {
    // A checkpoint whose file lost its end: every shard finds it malformed.
    const bad = path.join(out, 'broken', 'checkpoint-5');
    await fsp.mkdir(bad, { recursive: true });
    for (const f of await fsp.readdir(RL)) await fsp.copyFile(path.join(RL, f), path.join(bad, f));
    const st = await fsp.stat(path.join(bad, 'model.safetensors'));
    await fsp.truncate(path.join(bad, 'model.safetensors'), Math.floor(st.size / 2));
    const r = await runCli([
      'slurm',
      'analyze',
      BASE,
      bad,
      '--tasks',
      '2',
      '--out',
      path.join(out, 'jobs'),
      '--k',
      '16',
      '--no-cache',
      '--wait',
      '--poll',
      '0.5',
      '--quiet',
    ]);
    assert.equal(r.code, 1);
    assert.match(r.err, /broken step 5: task [12] of 2 failed \(exit 1\); log: .*broken-step-5-[12]\.log/);
    assert.match(r.err, /model\.safetensors/, 'the error in the log is shown');
  } finally {
    await fsp.rm(out, { recursive: true, force: true });
  }
});

test("the extension command's request is checked field by field", () => {
  assert.equal(parseSlurmRequest(undefined), undefined);
  assert.deepEqual(parseSlurmRequest({ tasks: 2, partition: 'gpu', sbatchArgs: ['--time=1:00:00'], out: '/x' }), {
    tasks: 2,
    partition: 'gpu',
    sbatchArgs: ['--time=1:00:00'],
    out: '/x',
  });
  assert.throws(() => parseSlurmRequest({ tasks: 0 }), /tasks must be/);
  assert.throws(() => parseSlurmRequest({ tasks: 2, task: 3 }), /unknown fields: task/);
  assert.throws(() => parseSlurmRequest({ sbatchArgs: '--time=1' }), /list of strings/);
  assert.throws(() => parseSlurmRequest('4'), /must be an object/);
});

test('the tree line of a Slurm checkpoint: shards done, failures with their logs', () => {
  const t = (task: number | 'merge', state: 'pending' | 'running' | 'done' | 'failed', detail: string): CheckpointStatus['tasks'][number] => ({
    task,
    state,
    detail,
    log: `/l/${task}.log`,
  });
  const running: CheckpointStatus = {
    label: 'x',
    state: 'running',
    tasks: [t(1, 'done', 'COMPLETED'), t(2, 'running', 'RUNNING')],
    merge: t('merge', 'pending', 'PENDING'),
    report: '/r.json',
    landed: false,
  };
  assert.deepEqual(slurmView(running, 'rl step 80', '12'), {
    label: 'Slurm: rl step 80',
    description: 'running: 1/2 shards, 1 running',
    tooltip: 'array job 12: running',
    icon: 'sync~spin',
  });
  const failed: CheckpointStatus = {
    ...running,
    state: 'failed',
    tasks: [t(1, 'done', 'COMPLETED'), t(2, 'failed', 'exit 1')],
    merge: { ...t('merge', 'failed', 'a shard failed'), blocked: true },
  };
  const v = slurmView(failed, 'rl step 80', '12');
  assert.equal(v.icon, 'error');
  assert.match(v.tooltip, /task 2: exit 1 \(log \/l\/2\.log\)/);
  assert.doesNotMatch(v.tooltip, /merge:/, 'a merge that never ran is not a failure of its own');
});
