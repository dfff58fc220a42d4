/**
 * Sharded analyses merge into exactly the report one process writes: every per-tensor number, the
 * summaries, the spectral summary and the verdict, on the example run (full SVDs) and on a synthetic
 * model whose larger weights take the randomized path with the base-subspace cache.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as os from 'node:os';
import { promises as fsp } from 'node:fs';
import { runCli } from '../support/cli';
import { writeSyntheticRun } from '../../src/examples/synthetic';
import { parseShardSpec, planShards, tensorCost, mergeParts, ShardSpecError, MergeError, type PartialReport } from '../../src/analysis/shards';
import { Checkpoint } from '../../src/formats/checkpoint';
import { DEFAULT_SETTINGS, type CheckpointReport } from '../../src/report/schema';
import { AnalysisPlan } from '../../src/analysis/plan';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const EX = path.join(ROOT, 'examples');
const BASE = path.join(EX, 'base');
const RL = path.join(EX, 'runs', 'rl-kl', 'global_step_80', 'actor', 'huggingface');

async function tmpdir(): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), 'gatescope-shards-'));
}

async function readJson<T>(f: string): Promise<T> {
  return JSON.parse(await fsp.readFile(f, 'utf8')) as T;
}

/** What may differ between one process and a merge of shards: when it ran and how long it took. */
function comparable(r: CheckpointReport): unknown {
  const rest: Partial<CheckpointReport> = { ...r };
  for (const k of ['createdAt', 'durationMs', 'timings', 'shards'] as const) delete rest[k];
  return rest;
}

async function cli(args: string[]): Promise<void> {
  const r = await runCli([...args, '--quiet']);
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
}

test('--shard I/N parses 1-based shard specs and refuses the rest, naming the problem', () => {
  assert.deepEqual(parseShardSpec('3/8'), { index: 3, count: 8 });
  assert.deepEqual(parseShardSpec(' 1 / 1 '), { index: 1, count: 1 });
  for (const bad of ['0/4', '5/4', '1/0', 'a/b', '2', '1/2/3', '-1/4', '1.5/4']) assert.throws(() => parseShardSpec(bad), ShardSpecError, bad);
});

test('the plan is deterministic, covers every tensor once and balances work, not counts', async () => {
  const base = await Checkpoint.open(BASE);
  const ckpt = await Checkpoint.open(RL);
  try {
    const a = planShards(AnalysisPlan.of(base, ckpt, 'full'), 4, DEFAULT_SETTINGS);
    const b = planShards(AnalysisPlan.of(base, ckpt, 'full'), 4, DEFAULT_SETTINGS);
    assert.deepEqual(a, b);
    assert.equal(new Set(a.tensors.map((t) => t.name)).size, a.tensors.length);
    assert.ok(a.tensors.every((t) => t.shard >= 1 && t.shard <= 4));
    // Greedy largest-first: no shard exceeds the mean by more than the largest single tensor.
    const mean = a.loads.reduce((x, y) => x + y, 0) / 4;
    const largest = Math.max(...a.tensors.map((t) => t.cost));
    assert.ok(Math.max(...a.loads) <= mean + largest, `loads ${a.loads.join(', ')}`);
    // A matrix costs more than a norm of as many bytes: the spectral pass dominates.
    assert.ok(
      tensorCost([1536, 8960], 2 * 2 * 1536 * 8960, true, DEFAULT_SETTINGS) > 20 * tensorCost([1536 * 8960], 2 * 2 * 1536 * 8960, false, DEFAULT_SETTINGS),
    );
    // The diff pass balances by bytes alone; another shard count is another plan.
    assert.notEqual(planShards(AnalysisPlan.of(base, ckpt, 'diff'), 4, DEFAULT_SETTINGS).digest, a.digest);
    assert.notEqual(planShards(AnalysisPlan.of(base, ckpt, 'full'), 3, DEFAULT_SETTINGS).digest, a.digest);
  } finally {
    await base.close();
    await ckpt.close();
  }
});

test(
  'analyze --shard on the example run: 1, 3 and 5 shards (more than some shards have tensors for) merge into the unsharded report',
  { timeout: 180_000 },
  async () => {
    const dir = await tmpdir();
    try {
      const full = path.join(dir, 'full.json');
      await cli(['analyze', BASE, RL, '--k', '16', '--no-cache', '--json', full]);
      const want = comparable(await readJson<CheckpointReport>(full));
      for (const n of [1, 3, 5]) {
        const parts = path.join(dir, `parts-${n}`);
        await fsp.mkdir(parts);
        for (let i = 1; i <= n; i++)
          await cli(['analyze', BASE, RL, '--k', '16', '--no-cache', '--shard', `${i}/${n}`, '--json', path.join(parts, `part-${i}.json`)]);
        const merged = path.join(dir, `merged-${n}.json`);
        await cli(['merge', parts, '--json', merged, '--md', path.join(dir, `merged-${n}.md`)]);
        const got = await readJson<CheckpointReport>(merged);
        assert.deepEqual(comparable(got), want, `${n} shards`);
        assert.equal(got.shards?.count, n);
        assert.ok(got.verdict && got.spectralSummary, 'the run-level verdict and spectral summary are rebuilt');
      }
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  },
);

test('diff --shard merges into the unsharded diff report, on a checkpoint sharded in two files', { timeout: 120_000 }, async () => {
  const dir = await tmpdir();
  try {
    const run = await writeSyntheticRun(path.join(dir, 'syn'));
    const ckpt = run.checkpoints[run.checkpoints.length - 1];
    const full = path.join(dir, 'full.json');
    await cli(['diff', run.base, ckpt, '--json', full]);
    for (let i = 1; i <= 2; i++) await cli(['diff', run.base, ckpt, '--shard', `${i}/2`, '--json', path.join(dir, `p${i}.json`)]);
    const merged = path.join(dir, 'merged.json');
    await cli(['merge', path.join(dir, 'p2.json'), path.join(dir, 'p1.json'), '--json', merged]);
    assert.deepEqual(comparable(await readJson(merged)), comparable(await readJson(full)));
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('the randomized path: shards with the base subspaces cached merge into the report of a cold unsharded run', { timeout: 300_000 }, async () => {
  const dir = await tmpdir();
  try {
    // Sides above 256 take the shared-subspace path; k-spectrum 24 keeps the basis narrow and the test quick.
    const run = await writeSyntheticRun(path.join(dir, 'syn'), {
      shape: { hidden: 288, intermediate: 320, layers: 1, heads: 4, kvHeads: 2, vocab: 64 },
      steps: [100],
    });
    const ckpt = run.checkpoints[0];
    const cache = path.join(dir, 'cache');
    const flags = ['--k', '8', '--k-spectrum', '24', '--cache-dir', cache];
    const full = path.join(dir, 'full.json');
    await cli(['analyze', run.base, ckpt, ...flags, '--json', full]);
    const cold = await readJson<CheckpointReport>(full);
    assert.ok(
      cold.tensors.some((t) => t.spectral?.svdMethod === 'randomized'),
      'some weight takes the randomized path',
    );
    assert.equal(cold.baseBases?.fromCache, 0);
    const parts: string[] = [];
    for (let i = 1; i <= 2; i++) {
      parts.push(path.join(dir, `p${i}.json`));
      await cli(['analyze', run.base, ckpt, ...flags, '--shard', `${i}/2`, '--json', parts[i - 1]]);
    }
    const merged = path.join(dir, 'merged.json');
    await cli(['merge', ...parts, '--json', merged]);
    const got = await readJson<CheckpointReport>(merged);
    // The shards found every base subspace in the cache; the numbers are the cold run's.
    assert.equal(got.baseBases?.fromCache, cold.baseBases?.computed);
    // Only where the base subspace came from differs.
    const strip = (r: unknown): unknown =>
      JSON.parse(JSON.stringify(r, (k, v: unknown) => (['baseBases', 'baseFromCache', 'baseIterations', 'baseConverged'].includes(k) ? undefined : v)));
    assert.deepEqual(strip(comparable(got)), strip(comparable(cold)));
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('merge refuses an incomplete set, a shard given twice and parts of other inputs or settings, naming them', { timeout: 180_000 }, async () => {
  const dir = await tmpdir();
  try {
    const part = (name: string): string => path.join(dir, name);
    await cli(['diff', BASE, RL, '--shard', '1/3', '--json', part('a1.json')]);
    await cli(['diff', BASE, RL, '--shard', '2/3', '--json', part('a2.json')]);
    await cli(['diff', BASE, RL, '--shard', '3/3', '--json', part('a3.json')]);
    await fsp.copyFile(part('a2.json'), part('a2-copy.json'));
    await cli(['diff', BASE, RL, '--shard', '3/3', '--eta', '1e-2', '--json', part('eta.json')]);
    const other = path.join(EX, 'runs', 'sft', 'checkpoint-160');
    await cli(['diff', BASE, other, '--shard', '3/3', '--json', part('sft.json')]);
    await cli(['analyze', BASE, RL, '--k', '16', '--no-cache', '--shard', '3/3', '--json', part('full3.json')]);

    const merge = async (...files: string[]): Promise<{ code: number; err: string }> =>
      runCli(['merge', ...files.map(part), '--json', part('out.json'), '--quiet']);
    let r = await merge('a1.json', 'a3.json');
    assert.equal(r.code, 1);
    assert.match(r.err, /incomplete: shard 2 of 3 missing/);
    r = await merge('a1.json', 'a2.json', 'a2-copy.json', 'a3.json');
    assert.equal(r.code, 1);
    assert.match(r.err, /shard 2\/3 is given twice: .*a2\.json and .*a2-copy\.json/);
    r = await merge('a1.json', 'a2.json', 'eta.json');
    assert.match(r.err, /eta\.json is a part of another analysis than .*a1\.json: the settings differ/);
    r = await merge('a1.json', 'a2.json', 'sft.json');
    assert.match(r.err, /sft\.json is a part of another analysis .*: the checkpoints .* differ/);
    r = await merge('a1.json', 'a2.json', 'full3.json');
    assert.match(r.err, /the passes \(diff vs full\) differ/);
    await fsp.writeFile(part('half.json'), '{"kind": "gatescope.partial-report", "schem');
    r = await merge('a1.json', 'a2.json', 'half.json');
    assert.equal(r.code, 1);
    assert.match(r.err, /half\.json: not valid JSON/);
    r = await runCli(['merge', part('a1.json'), '--json', part('a1.json'), '--quiet']);
    assert.equal(r.code, 2);
    assert.match(r.err, /is one of the parts/);
    // A full report is not a part.
    await cli(['diff', BASE, RL, '--json', part('whole.json')]);
    r = await merge('whole.json');
    assert.match(r.err, /whole\.json: not a Gatescope partial report \(a full checkpoint report/);
    assert.equal(await fsp.stat(part('out.json')).catch(() => null), null, 'no report from a refused merge');
    // The pure merge says the same without files.
    const parts = [await readJson<PartialReport>(part('a1.json'))];
    assert.throws(() => mergeParts(parts.map((p) => ({ file: 'x.json', part: p }))), MergeError);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('--shard usage errors: one checkpoint, a --json for the part, no report outputs', async () => {
  const cases: [string[], RegExp][] = [
    [['analyze', BASE, RL, RL, '--shard', '1/2', '--json', '/tmp/x.json'], /one checkpoint/],
    [['analyze', BASE, RL, '--shard', '1/2'], /name it with --json/],
    [['analyze', BASE, RL, '--shard', '1/2', '--json', '/tmp/x.json', '--md', '/tmp/x.md'], /--md belong to "gatescope merge"/],
    [['diff', BASE, RL, '--shard', '3/2', '--json', '/tmp/x.json'], /--shard: the shard index must be from 1 to 2/],
    [['merge', RL], /merge writes the report/],
  ];
  for (const [args, want] of cases) {
    const r = await runCli([...args, '--quiet']);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.err, want);
  }
});

test('the spectral pass returns its per-tensor results and leaves the tensors it is given as they were', { timeout: 120_000 }, async () => {
  const { createBackend } = await import('../../src/compute/backend');
  const { createSpectralPass } = await import('../../src/analysis/spectral');
  const { diffCheckpoints } = await import('../../src/analysis/diff');
  const base = await Checkpoint.open(BASE);
  const ckpt = await Checkpoint.open(RL);
  const backend = await createBackend({ device: 'cpu', threads: 1 });
  try {
    const settings = { ...DEFAULT_SETTINGS, k: 16 };
    const { tensors } = await diffCheckpoints(AnalysisPlan.of(base, ckpt, 'diff'), { eta: settings.eta });
    const before = JSON.stringify(tensors);
    for (const t of tensors) Object.freeze(t);
    const streamed: string[] = [];
    const r = await createSpectralPass(backend).run(AnalysisPlan.of(base, ckpt, 'full'), tensors, {
      settings,
      passes: 'full',
      onTensor: (t) => t.spectral && streamed.push(t.name),
    });
    assert.equal(JSON.stringify(tensors), before);
    assert.ok(r.results.size > 0 && r.skipped.size > 0, 'some weights analysed, some skipped with a reason');
    assert.equal(r.results.size + r.skipped.size, tensors.length);
    assert.deepEqual([...streamed].sort(), [...r.results.keys()].sort(), 'each result streamed with its spectral numbers');
    assert.ok(r.report.verdict && r.report.spectralSummary);
  } finally {
    await backend.dispose();
    await base.close();
    await ckpt.close();
  }
});
