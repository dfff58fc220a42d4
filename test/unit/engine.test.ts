import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { EngineClient, EngineJobError, JobCancelledError } from '../../src/engine/client';
import { ResultCache } from '../../src/engine/cache';
import type { JobSpec } from '../../src/engine/messages';
import { writeSyntheticRun } from '../../src/examples/synthetic';
import { analyzeCheckpoint } from '../../src/analysis/analyze';
import { compareRuns } from '../../src/analysis/consistency';
import { DEFAULT_SETTINGS, type CheckpointReport, type ConsistencyReport } from '../../src/report/schema';
import { f32Bytes, tempDir, validFile } from '../support/st';

const WORKER = path.resolve(__dirname, '..', '..', '..', 'dist', 'worker.js');
const SETTINGS = { ...DEFAULT_SETTINGS, k: 8 };

async function listCache(dir: string): Promise<string[]> {
  return (await fsp.readdir(dir).catch(() => [] as string[])).sort();
}

test('the engine process runs a job, equals the in-process result, and caches it', async () => {
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(path.join(dir, 'ex'));
  const cacheDir = path.join(dir, 'cache');
  const engine = new EngineClient({ workerPath: WORKER, cacheDir });
  try {
    const fractions: number[] = [];
    const spec = { kind: 'analyze', base, checkpoint: checkpoints[0], passes: 'diff', settings: SETTINGS, device: 'cpu' } as const;
    const first = await engine.run(spec, { onProgress: (p) => fractions.push(p.fraction) });
    assert.equal(first.fromCache, false);
    assert.ok(fractions.length > 0 && fractions[fractions.length - 1] === 1);
    const direct = await analyzeCheckpoint(base, checkpoints[0], { settings: SETTINGS, passes: 'diff' });
    const r = first.result as CheckpointReport;
    assert.deepEqual(r.tensors, direct.tensors);
    assert.deepEqual(r.summary, direct.summary);
    assert.equal((await listCache(cacheDir)).length, 1);
    const second = await engine.run(spec);
    assert.equal(second.fromCache, true);
    assert.deepEqual((second.result as CheckpointReport).summary, r.summary);
    // A different setting is a different entry.
    const third = await engine.run({ ...spec, settings: { ...SETTINGS, eta: 1e-2 } });
    assert.equal(third.fromCache, false);
  } finally {
    await engine.dispose();
  }
});

test('the worker evicts the result cache at the limit the client gives, not at a fixed size', async () => {
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(path.join(dir, 'ex'));
  const cacheDir = path.join(dir, 'cache');
  let limit = 1024 * 1024 * 1024;
  const engine = new EngineClient({ workerPath: WORKER, cacheDir, resultCacheBytes: () => limit });
  try {
    const spec = (eta: number) =>
      ({ kind: 'analyze', base, checkpoint: checkpoints[0], passes: 'diff', settings: { ...SETTINGS, eta }, device: 'cpu' }) as const;
    await engine.run(spec(1e-3));
    await engine.run(spec(2e-3));
    const files = (await listCache(cacheDir)).filter((f) => f.endsWith('.json'));
    assert.equal(files.length, 2, 'both kept under a large limit');
    // A limit below two entries (read at the next job's start): the oldest goes, the newest stays.
    const one = (await fsp.stat(path.join(cacheDir, files[0]))).size;
    limit = Math.floor(one * 1.5);
    await engine.run(spec(3e-3));
    assert.equal((await listCache(cacheDir)).filter((f) => f.endsWith('.json')).length, 1);
    assert.equal((await engine.run(spec(3e-3))).fromCache, true, 'the newest entry is the one kept');
  } finally {
    await engine.dispose();
  }
});

test('the engine keeps base subspaces beside its results: the second checkpoint of a base reuses them', { timeout: 120_000 }, async () => {
  const dir = await tempDir();
  // Sides above kSpectrum + oversample take the shared-subspace path that the base-subspace cache serves.
  const { base, checkpoints } = await writeSyntheticRun(path.join(dir, 'ex'), {
    shape: { hidden: 320, intermediate: 640, layers: 1, heads: 4, kvHeads: 2, vocab: 64 },
    steps: [10, 20],
  });
  const cacheDir = path.join(dir, 'cache');
  const engine = new EngineClient({ workerPath: WORKER, cacheDir, baseCacheBytes: () => 64 * 1024 * 1024 });
  try {
    const settings = { ...SETTINGS, kSpectrum: 32 };
    const spec = (checkpoint: string): JobSpec => ({ kind: 'analyze', base, checkpoint, passes: 'full', settings, device: 'cpu' });
    const first = (await engine.run(spec(checkpoints[0]))).result as CheckpointReport;
    assert.ok(first.baseBases && first.baseBases.computed > 0 && first.baseBases.fromCache === 0 && first.baseBases.cached, JSON.stringify(first.baseBases));
    const stored = (await listCache(path.join(cacheDir, 'bases'))).filter((f) => f.endsWith('.basis'));
    assert.equal(stored.length, first.baseBases.computed);
    const second = (await engine.run(spec(checkpoints[1]))).result as CheckpointReport;
    assert.deepEqual(second.baseBases, { fromCache: first.baseBases.computed, computed: 0, cached: true });
    assert.ok(
      second.tensors.filter((t) => t.spectral?.subspace).every((t) => t.spectral!.subspace!.baseFromCache && t.spectral!.subspace!.baseIterations === null),
    );
    // The same numbers as an analysis that computes every base subspace itself.
    const backend = await (await import('../../src/compute/backend')).createBackend({ device: 'cpu' });
    const direct = await analyzeCheckpoint(base, checkpoints[1], {
      settings,
      passes: 'full',
      spectral: (await import('../../src/analysis/spectral')).createSpectralPass(backend),
    }).finally(() => backend.dispose());
    assert.deepEqual(
      second.tensors.map((t) => t.spectral?.nss),
      direct.tensors.map((t) => t.spectral?.nss),
    );
    assert.deepEqual(second.verdict, direct.verdict);
  } finally {
    await engine.dispose();
  }
});

test('a cancelled job stops and leaves no cache entry; a corrupt entry is ignored and recomputed', async () => {
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(path.join(dir, 'ex'), {
    shape: { hidden: 256, intermediate: 704, layers: 4, heads: 4, kvHeads: 2, vocab: 256 },
  });
  const cacheDir = path.join(dir, 'cache');
  const engine = new EngineClient({ workerPath: WORKER, cacheDir });
  try {
    const ac = new AbortController();
    const spec = { kind: 'analyze', base, checkpoint: checkpoints[2], passes: 'full', settings: SETTINGS, device: 'cpu' } as const;
    let cancelledAt = 0;
    const job = engine.run(
      spec,
      {
        onProgress: (p) => {
          if (p.phase === 'spectral' && !ac.signal.aborted) {
            cancelledAt = Date.now();
            ac.abort();
          }
        },
      },
      ac.signal,
    );
    await assert.rejects(job, (e: unknown) => e instanceof JobCancelledError);
    assert.ok(Date.now() - cancelledAt < 1000, 'cancellation takes effect within a second');
    assert.deepEqual(
      (await listCache(cacheDir)).filter((f) => f.endsWith('.json')),
      [],
    );
    // Corrupt entry: write garbage under the right key, then the job recomputes.
    const diffSpec = { ...spec, passes: 'diff' } as const;
    await engine.run(diffSpec);
    const [entry] = (await listCache(cacheDir)).filter((f) => f.endsWith('.json'));
    await fsp.writeFile(path.join(cacheDir, entry), '{"key": "x", "res');
    const again = await engine.run(diffSpec);
    assert.equal(again.fromCache, false);
    const parsed = JSON.parse(await fsp.readFile(path.join(cacheDir, entry), 'utf8'));
    assert.equal(parsed.result.kind, 'gatescope.checkpoint-report');
  } finally {
    await engine.dispose();
  }
});

test('an engine killed mid-job is restarted, the job re-queued, and the user told once', async () => {
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(path.join(dir, 'ex'), {
    shape: { hidden: 256, intermediate: 704, layers: 4, heads: 4, kvHeads: 2, vocab: 256 },
  });
  const restarts: string[] = [];
  const engine = new EngineClient({ workerPath: WORKER, cacheDir: null, onRestart: (r) => restarts.push(r) });
  try {
    let killedPid: number | undefined;
    const result = await engine.run(
      { kind: 'analyze', base, checkpoint: checkpoints[1], passes: 'full', settings: SETTINGS, device: 'cpu' },
      {
        onProgress: () => {
          if (killedPid === undefined) {
            killedPid = engine.pid;
            engine.kill('SIGKILL');
          }
        },
      },
    );
    assert.equal((result.result as CheckpointReport).kind, 'gatescope.checkpoint-report');
    assert.ok((result.result as CheckpointReport).verdict);
    assert.equal(restarts.length, 1);
    assert.match(restarts[0], /SIGKILL/);
    assert.notEqual(engine.pid, killedPid);
  } finally {
    await engine.dispose();
  }
});

test('cache eviction keeps the cache under its size limit, oldest first', async () => {
  const dir = await tempDir();
  const cache = new ResultCache(dir, 3000);
  const fake = (i: number): ConsistencyReport =>
    ({ schemaVersion: 1, kind: 'gatescope.consistency-report', pad: 'x'.repeat(1000), i }) as unknown as ConsistencyReport;
  for (let i = 0; i < 5; i++) {
    await cache.put(`k${i}`, fake(i));
    await new Promise((r) => setTimeout(r, 15));
  }
  const left = await listCache(dir);
  assert.ok(left.length < 5 && left.includes('k4.json') && !left.includes('k0.json'), left.join(','));
});

test('M2/M3: Jaccard, baselines and consensus equal a brute-force count', async () => {
  const dir = await tempDir();
  const a = await writeSyntheticRun(path.join(dir, 'a'), { seed: 1 });
  const b = await writeSyntheticRun(path.join(dir, 'b'), { seed: 1, lr: 2e-6 });
  const c = await writeSyntheticRun(path.join(dir, 'c'), { seed: 1, lr: 5e-6 });
  // Same seed: same base weights, different update sizes.
  const r = await compareRuns(a.base, [a.checkpoints[2], b.checkpoints[2], c.checkpoints[2]], { eta: 1e-3, mapSize: 8, chunkElements: 777 });
  const diffs = await Promise.all([a, b, c].map((x) => analyzeCheckpoint(a.base, x.checkpoints[2], { settings: SETTINGS, passes: 'diff' })));
  // Densities agree with the diff pass.
  for (let i = 0; i < 3; i++) {
    const changed = diffs[i].summary.changed;
    assert.ok(Math.abs(r.runs[i].density - changed / diffs[i].summary.numel) < 1e-12);
  }
  // Brute force on one tensor from the reports' masks is not available: recompute from the files.
  const t = r.tensors.find((x) => x.name === 'model.layers.0.self_attn.q_proj.weight')!;
  const { Checkpoint } = await import('../../src/formats/checkpoint');
  const masks: Uint8Array[] = [];
  const baseCk = await Checkpoint.open(a.base);
  const ref0 = baseCk.tensors.get(t.name)!;
  const b0 = new Uint16Array((await ref0.file.readElements(ref0.info, 0, ref0.info.numel)).buffer);
  for (const x of [a, b, c]) {
    const ck = await Checkpoint.open(x.checkpoints[2]);
    const ref = ck.tensors.get(t.name)!;
    const b1 = new Uint16Array((await ref.file.readElements(ref.info, 0, ref.info.numel)).buffer);
    masks.push(Uint8Array.from(b0, (v, i) => (v !== b1[i] && ((v | b1[i]) & 0x7fff) !== 0 ? 1 : 0)));
    await ck.close();
  }
  await baseCk.close();
  for (let x = 0; x < 3; x++)
    for (let y = 0; y < 3; y++) {
      let inter = 0;
      let union = 0;
      for (let i = 0; i < masks[x].length; i++) {
        inter += masks[x][i] & masks[y][i];
        union += masks[x][i] | masks[y][i];
      }
      assert.ok(Math.abs(t.jaccard[x][y] - inter / union) < 1e-12);
      const p = masks[x].reduce((s, v) => s + v, 0) / masks[x].length;
      const q = masks[y].reduce((s, v) => s + v, 0) / masks[y].length;
      assert.ok(Math.abs(t.jaccardBaseline[x][y] - (p * q) / (p + q - p * q)) < 1e-12);
    }
  // Consensus: block (0,0) of 8x8 entries (64 x 64 map of a 64 x 64 tensor at mapSize 8 -> 8 x 8 blocks).
  const [, n] = t.shape;
  let sum = 0;
  for (let i = 0; i < t.consensus!.blockRows; i++) for (let j = 0; j < t.consensus!.blockCols; j++) for (const mk of masks) sum += mk[i * n + j];
  assert.ok(Math.abs(t.consensus!.values[0] - Math.round((sum / (3 * t.consensus!.blockRows * t.consensus!.blockCols)) * 1e4) / 1e4) < 1e-9);
  // Runs from one base with the same update noise direction overlap above chance.
  assert.ok(r.meanOffDiagonal > 0 && r.meanOffDiagonalBaseline > 0);
});

test('scramble and mask jobs run in the engine process (what the extension commands call)', async () => {
  const dir = await tempDir();
  const { base } = await writeSyntheticRun(path.join(dir, 'ex'));
  const engine = new EngineClient({ workerPath: WORKER, cacheDir: path.join(dir, 'cache') });
  try {
    const out = path.join(dir, 'scrambled');
    const s = await engine.run({ kind: 'scramble', base, out, layers: [1], rotate: true, permute: true, rotation: 'haar', seed: 3 });
    assert.equal((s.result as { kind: string }).kind, 'gatescope.scramble');
    assert.ok(JSON.parse(await fsp.readFile(path.join(out, 'SCRAMBLE.json'), 'utf8')));
    const maskOut = path.join(dir, 'masks.safetensors');
    const m = await engine.run({ kind: 'mask', base, out: maskOut, maskKind: 'union', alpha: 0.5, k: 8, allModules: false, device: 'cpu' });
    assert.equal(m.fromCache, false);
    assert.ok((await fsp.stat(maskOut)).size > 0);
    // A writing job is never answered from the cache and refuses to overwrite.
    await assert.rejects(engine.run({ kind: 'mask', base, out: maskOut, maskKind: 'union', alpha: 0.5, k: 8, allModules: false, device: 'cpu' }));
  } finally {
    await engine.dispose();
  }
});

test("a comparison in the engine runs each checkpoint's analysis through the cache and adds the comparative verdict", { timeout: 120_000 }, async () => {
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(path.join(dir, 'ex'));
  const cacheDir = path.join(dir, 'cache');
  const engine = new EngineClient({ workerPath: WORKER, cacheDir });
  try {
    // The dashboard analysed one checkpoint already: the comparison reuses that entry.
    const one = await engine.run({ kind: 'analyze', base, checkpoint: checkpoints[0], passes: 'full', settings: SETTINGS, device: 'cpu' });
    const before = (await listCache(cacheDir)).filter((f) => f.endsWith('.json'));
    assert.equal(before.length, 1);
    const spec: JobSpec = {
      kind: 'compare',
      base,
      checkpoints: [checkpoints[0], checkpoints[2]],
      labels: ['a', 'c'],
      eta: 1e-3,
      settings: SETTINGS,
      device: 'cpu',
    };
    const res = await engine.run(spec);
    const report = res.result as ConsistencyReport;
    assert.ok(report.regime, 'the comparison carries the comparative verdict');
    assert.equal(report.regime.pairs.length, 1);
    assert.deepEqual([report.regime.pairs[0].a, report.regime.pairs[0].b], ['a', 'c']);
    assert.equal(report.regime.runs[0].verdict?.label, (one.result as CheckpointReport).verdict?.label);
    // The second checkpoint's analysis and the comparison itself are now cached too.
    assert.equal((await listCache(cacheDir)).filter((f) => f.endsWith('.json')).length, 3);
    const again = await engine.run(spec);
    assert.equal(again.fromCache, true);
    assert.deepEqual((again.result as ConsistencyReport).regime, report.regime);
  } finally {
    await engine.dispose();
  }
});

test('a result cache that cannot be written is a warning: the finished analysis is still returned', async () => {
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(path.join(dir, 'ex'));
  // The cache path is a file: every cache read misses and every write fails.
  const cacheDir = path.join(dir, 'not-a-folder');
  await fsp.writeFile(cacheDir, 'a file where the cache folder should be');
  const lines: string[] = [];
  const engine = new EngineClient({ workerPath: WORKER, cacheDir, log: (l) => lines.push(l) });
  try {
    const r = await engine.run({ kind: 'analyze', base, checkpoint: checkpoints[0], passes: 'diff', settings: SETTINGS, device: 'cpu' });
    assert.equal((r.result as CheckpointReport).kind, 'gatescope.checkpoint-report');
    assert.equal(r.fromCache, false);
    assert.ok(
      lines.some((l) => /warning: the result cache could not store this result .*the result is returned, uncached/.test(l)),
      lines.join('\n'),
    );
    assert.equal(await fsp.readFile(cacheDir, 'utf8'), 'a file where the cache folder should be', 'the file is untouched');
  } finally {
    await engine.dispose();
  }
});

test('every error an engine job can meet reaches the client as one line naming the file and the problem', { timeout: 120_000 }, async () => {
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(path.join(dir, 'ex'));
  const other = path.join(dir, 'other-model', 'model.safetensors');
  await fsp.mkdir(path.dirname(other), { recursive: true });
  await fsp.writeFile(other, validFile({ 'encoder.block.0.weight': { dtype: 'F32', shape: [2], data: f32Bytes([1, 2]) } }));
  const half = path.join(dir, 'half', 'model.safetensors');
  await fsp.mkdir(path.dirname(half), { recursive: true });
  const whole = await fsp.readFile(path.join(checkpoints[0], 'model.safetensors')).catch(async () => fsp.readFile(checkpoints[0]));
  await fsp.writeFile(half, whole.subarray(0, Math.floor(whole.length / 2)));
  const logs: string[] = [];
  const engine = new EngineClient({ workerPath: WORKER, cacheDir: path.join(dir, 'cache'), log: (l) => logs.push(l) });
  const analyze = (checkpoint: string, device: 'cpu' | 'cuda' = 'cpu', passes: 'diff' | 'full' = 'diff'): JobSpec => ({
    kind: 'analyze',
    base,
    checkpoint,
    passes,
    settings: SETTINGS,
    device,
  });
  const cases: { name: string; spec: JobSpec; names: RegExp; incomplete?: boolean; mayPass?: boolean }[] = [
    { name: 'missing checkpoint', spec: analyze(path.join(dir, 'nowhere')), names: /nowhere: io: cannot open checkpoint: no such file or folder$/ },
    { name: 'a different model', spec: analyze(path.dirname(other)), names: /other-model.*pair/ },
    { name: 'half-written checkpoint', spec: analyze(path.dirname(half)), names: /half.*(shorter|still being written)/, incomplete: true },
    // Passes on a machine with CUDA; elsewhere the refusal must be one line.
    { name: 'CUDA without CUDA', spec: analyze(checkpoints[0], 'cuda', 'full'), names: /CUDA|cuda/, mayPass: true },
    {
      name: 'scramble into a checkpoint folder',
      spec: { kind: 'scramble', base, out: checkpoints[1], layers: [0], rotate: true, permute: false, rotation: 'haar', seed: 1 },
      names: /checkpoint|weights/,
    },
    {
      name: 'mask over an existing weights file',
      spec: { kind: 'mask', base, out: other, maskKind: 'union', alpha: 0.5, k: 8, allModules: false, device: 'cpu' },
      names: /model\.safetensors/,
    },
  ];
  try {
    for (const c of cases) {
      let error: unknown;
      try {
        await engine.run(c.spec);
      } catch (e) {
        error = e;
      }
      if (error === undefined && c.mayPass) continue;
      assert.ok(error instanceof EngineJobError, `${c.name}: expected an EngineJobError, got ${String(error)}`);
      assert.doesNotMatch(error.message, /\n/, `${c.name}: one line`);
      assert.doesNotMatch(error.message, /\bat .*:\d+:\d+/, `${c.name}: no stack frame`);
      assert.match(error.message, c.names, `${c.name}: ${error.message}`);
      if (c.incomplete !== undefined) assert.equal(error.incomplete, c.incomplete, c.name);
    }
  } finally {
    await engine.dispose();
  }
  assert.ok(!logs.some((l) => /TypeError|ReferenceError/.test(l)), `no internal error on these paths: ${logs.join('\n')}`);
});
