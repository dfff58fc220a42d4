/**
 * The spectral pass's randomized path against exact answers on LLM-like spectra (power-law singular
 * values, no clean gaps) with RL-sized and SFT-sized updates of known geometry, and the base-subspace
 * cache that lets every checkpoint of a base skip the base's iterations.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { createBackend, type ComputeBackend } from '../../src/compute/backend';
import { sharedSubspaceSvd, SUBSPACE_TOLERANCE } from '../../src/linalg/shared-subspace';
import { plantedPair, normalizedShift, maxAbsDifference, RL_SIZED, SFT_SIZED, type PlantedOptions } from '../../src/examples/planted-spectra';
import { BasisCache } from '../../src/engine/basis-cache';
import { analyzePair, type TensorPair } from '../../src/analysis/spectral';
import { DEFAULT_SETTINGS } from '../../src/report/schema';
import { writeSyntheticRun } from '../../src/examples/synthetic';
import { runCli } from '../support/cli';
import { tempDir } from '../support/st';

let backend: ComputeBackend;
before(async () => {
  backend = await createBackend({ device: 'cpu' });
});
after(async () => {
  await backend.dispose();
});

const KK = 256;
const K = 64;
const SVD = { oversample: 10, powerIterations: 4, seed: 1234 };
const RL = RL_SIZED;
const SFT = SFT_SIZED;

for (const [m, n, kind, update] of [
  [8960, 1536, 'RL', RL],
  [8960, 1536, 'SFT', SFT],
  [1536, 1536, 'RL', RL],
] as const) {
  test(`${m} x ${n}, power-law spectrum, ${kind}-sized update: NSS within 2% and angles within 0.05 degrees of exact`, { timeout: 300_000 }, async () => {
    const o: PlantedOptions = { m, n, decay: 0.5, k: K, kk: KK, seed: 11 + m, ...update };
    const p = await plantedPair(backend, o);
    assert.ok(Math.abs(p.updateRel - o.updateRel) / o.updateRel < 0.05, `the update is ${kind}-sized: ${p.updateRel}`);
    const r = await sharedSubspaceSvd(backend, p.W0, p.W1, p.dW, { kk: KK, k: K, ...SVD });
    const got = normalizedShift(r.base.S, r.checkpoint.S, KK);
    assert.ok(Math.abs(got - p.nss) <= 0.02 * p.nss, `NSS ${got} vs exact ${p.nss}`);
    assert.ok(maxAbsDifference(r.anglesLeftDeg, p.anglesLeftDeg) <= 0.05, `left angles off by ${maxAbsDifference(r.anglesLeftDeg, p.anglesLeftDeg)} deg`);
    assert.ok(maxAbsDifference(r.anglesRightDeg, p.anglesRightDeg) <= 0.05, `right angles off by ${maxAbsDifference(r.anglesRightDeg, p.anglesRightDeg)} deg`);
    // The values themselves: the top 64 to 1e-5 relative, and none above the exact one by more than rounding (Ritz values are lower bounds).
    for (let i = 0; i < KK; i++) {
      assert.ok(r.base.S[i] <= p.sigma0[i] * (1 + 1e-5), `base value ${i} above the exact one`);
      if (i < K) assert.ok(Math.abs(r.base.S[i] - p.sigma0[i]) <= 1e-5 * p.sigma0[i], `base value ${i}: ${r.base.S[i]} vs ${p.sigma0[i]}`);
      if (i < K) assert.ok(Math.abs(r.checkpoint.S[i] - p.sigma1[i]) <= 1e-5 * p.sigma1[i], `checkpoint value ${i}`);
    }
    // Weyl: no value moves by more than ||dW||_2 <= ||dW||_F.
    const dFro = Math.sqrt(p.dW.data.reduce((a, x) => a + x * x, 0));
    for (let i = 0; i < KK; i++) assert.ok(Math.abs(r.checkpoint.S[i] - r.base.S[i]) <= dFro);
    assert.ok(r.baseConvergence?.converged && r.checkpointConvergence.converged, 'both iterations converged');
    assert.ok(r.checkpointConvergence.error <= SUBSPACE_TOLERANCE);
    // The base's subspace given back: the same numbers, with no base iterations.
    const cached = await sharedSubspaceSvd(backend, p.W0, p.W1, p.dW, { kk: KK, k: K, ...SVD, baseBasis: r.baseBasis });
    assert.equal(cached.baseConvergence, null);
    assert.deepEqual(cached.checkpoint.S, r.checkpoint.S);
    assert.deepEqual(cached.base.S, r.base.S);
    assert.deepEqual(cached.anglesLeftDeg, r.anglesLeftDeg);
  });
}

test('a stored base basis of the wrong size is refused, not misused', async () => {
  const p = await plantedPair(backend, { m: 400, n: 300, decay: 0.5, k: 8, kk: 32, seed: 3, ...RL });
  await assert.rejects(
    sharedSubspaceSvd(backend, p.W0, p.W1, p.dW, { kk: 32, k: 8, ...SVD, baseBasis: new Float32Array(10) }),
    /stored base basis has 10 values/,
  );
});

function pairFrom(name: string, W0: Float32Array, W1: Float32Array, m: number, n: number): TensorPair {
  return {
    name,
    m,
    n,
    w0: W0,
    w1: W1,
    mask: Uint8Array.from(W0, (x, i) => (x === W1[i] ? 0 : 1)),
    changed: W0.reduce((a, x, i) => a + (x === W1[i] ? 0 : 1), 0),
    dtype0: 'F32',
    dtype1: 'F32',
    nonFinite: 0,
  };
}

test('the spectral pass reuses a cached base subspace: the same report, no base iterations, hits counted', { timeout: 120_000 }, async () => {
  const dir = await tempDir();
  const cache = new BasisCache(path.join(dir, 'bases'));
  const settings = { ...DEFAULT_SETTINGS, k: 16, kSpectrum: 64 };
  const p = await plantedPair(backend, { m: 600, n: 400, decay: 0.5, k: 16, kk: 64, seed: 5, ...RL });
  const pair = pairFrom('model.layers.0.mlp.up_proj.weight', p.W0.data, p.W1.data, 600, 400);
  const stats = { hits: 0, misses: 0 };
  const basis = { get: (len: number) => cache.get('key', len), put: (d: Float32Array) => cache.put('key', d), stats };
  const cold = await analyzePair(backend, pair, settings, { basis });
  assert.deepEqual(stats, { hits: 0, misses: 1 });
  assert.equal(cold.spectral.subspace?.baseFromCache, false);
  assert.ok((cold.spectral.subspace?.baseIterations ?? 0) >= 5, 'the base iterated at least powerIterations + 1 times');
  const warm = await analyzePair(backend, pair, settings, { basis });
  assert.deepEqual(stats, { hits: 1, misses: 1 });
  assert.equal(warm.spectral.subspace?.baseFromCache, true);
  assert.equal(warm.spectral.subspace?.baseIterations, null);
  const strip = (s: typeof cold.spectral): unknown => ({ ...s, subspace: { ...s.subspace, baseFromCache: null, baseIterations: null, baseConverged: null } });
  assert.deepEqual(strip(warm.spectral), strip(cold.spectral));
  assert.deepEqual(warm.verdict, cold.verdict);
  // And against an analysis that has no store at all.
  const plain = await analyzePair(backend, pair, settings);
  assert.deepEqual(plain.spectral.nss, cold.spectral.nss);
  assert.ok(Math.abs(plain.spectral.nss - p.nss) <= 0.02 * p.nss, `NSS ${plain.spectral.nss} vs exact ${p.nss}`);
});

test('the base-subspace cache: round trip, a corrupt or short entry is a miss and goes, the size limit holds, an unwritable folder is a warning', async () => {
  const dir = await tempDir();
  const lines: string[] = [];
  const cache = new BasisCache(path.join(dir, 'bases'), 3 * (8 + 4000 + 32), (l) => lines.push(l));
  const data = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i));
  await cache.put('a', data);
  assert.deepEqual(await cache.get('a', 1000), data);
  assert.equal(await cache.get('a', 999), undefined, 'another length is a miss');
  await cache.put('a', data);
  const file = path.join(dir, 'bases', 'a.basis');
  const bytes = await fsp.readFile(file);
  bytes[100] ^= 0xff;
  await fsp.writeFile(file, bytes);
  assert.equal(await cache.get('a', 1000), undefined, 'a flipped byte fails the digest');
  assert.equal(
    await fsp.stat(file).then(
      () => true,
      () => false,
    ),
    false,
    'and the entry is removed',
  );
  assert.ok(lines.some((l) => /does not check out/.test(l)));
  await cache.put('b', data);
  await fsp.writeFile(path.join(dir, 'bases', 'b.basis'), (await fsp.readFile(path.join(dir, 'bases', 'b.basis'))).subarray(0, 50));
  assert.equal(await cache.get('b', 1000), undefined, 'a truncated entry is a miss');
  for (const [i, key] of ['c', 'd', 'e', 'f'].entries()) {
    await cache.put(key, data);
    const t = new Date(Date.now() - (10 - i) * 1000);
    await fsp.utimes(path.join(dir, 'bases', `${key}.basis`), t, t);
  }
  await cache.evict();
  const left = (await fsp.readdir(path.join(dir, 'bases'))).filter((f) => f.endsWith('.basis')).sort();
  assert.deepEqual(left, ['d.basis', 'e.basis', 'f.basis'], 'the oldest went first');
  const blocked = path.join(dir, 'file-not-folder');
  await fsp.writeFile(blocked, 'x');
  const bad = new BasisCache(path.join(blocked, 'bases'), undefined, (l) => lines.push(l));
  await bad.put('a', data);
  assert.ok(lines.some((l) => /could not store/.test(l)));
  assert.equal(await bad.get('a', 1000), undefined);
});

test(
  'gatescope analyze caches base subspaces: --cache-dir, --verbose hits, the same report, --no-cache, never inside a checkpoint',
  { timeout: 300_000 },
  async () => {
    const dir = await tempDir();
    // Matrices wider than kSpectrum + oversample take the shared-subspace path (smaller ones the exact SVD).
    const { base, checkpoints } = await writeSyntheticRun(path.join(dir, 'run'), {
      shape: { hidden: 320, intermediate: 640, layers: 1, heads: 4, kvHeads: 2, vocab: 64 },
      steps: [10, 20],
    });
    const cacheDir = path.join(dir, 'cache');
    const args = ['analyze', base, checkpoints[0], '--k-spectrum', '32', '--k', '8', '--device', 'cpu', '--cache-dir', cacheDir, '--verbose'];
    const first = await runCli([...args, '--json', path.join(dir, 'a.json')]);
    assert.equal(first.code, 0, first.err);
    const computed = /base subspaces: 0 from the cache, (\d+) computed and stored/.exec(first.err);
    assert.ok(computed && Number(computed[1]) > 0, first.err);
    assert.match(first.err, /diff pass [\d.]+ s, spectral pass [\d.]+ s \(bf16 kernel: WebAssembly SIMD\)/, 'and which diff kernel ran');
    const files = (await fsp.readdir(path.join(cacheDir, 'bases'))).filter((f) => f.endsWith('.basis'));
    assert.equal(files.length, Number(computed[1]));
    // Every checkpoint of the base reuses them.
    const second = await runCli([...args.slice(0, 2), checkpoints[1], ...args.slice(3), '--json', path.join(dir, 'b.json')]);
    assert.equal(second.code, 0, second.err);
    assert.match(second.err, new RegExp(`base subspaces: ${computed[1]} from the cache, 0 computed`));
    const again = await runCli([...args, '--json', path.join(dir, 'c.json'), '--md', path.join(dir, 'c.md')]);
    assert.match(await fsp.readFile(path.join(dir, 'c.md'), 'utf8'), new RegExp(`Spectral pass: base subspaces: ${computed[1]} from the cache, 0 computed`));
    assert.match(again.out, new RegExp(`base subspaces: ${computed[1]} from the cache, 0 computed`), 'the text report says it too');
    const a = JSON.parse(await fsp.readFile(path.join(dir, 'a.json'), 'utf8'));
    const c = JSON.parse(await fsp.readFile(path.join(dir, 'c.json'), 'utf8'));
    assert.equal(again.code, 0);
    assert.deepEqual(c.baseBases, { fromCache: Number(computed[1]), computed: 0, cached: true });
    assert.ok(typeof c.timings.diffMs === 'number' && typeof c.timings.spectralMs === 'number');
    const numbers = (r: {
      tensors: { name: string; spectral?: { nss: number; principalAnglesLeftDeg: number[]; sigmaCheckpoint: number[] } }[];
      verdict: unknown;
    }): unknown => ({
      tensors: r.tensors.map((t) => [t.name, t.spectral?.nss, t.spectral?.principalAnglesLeftDeg, t.spectral?.sigmaCheckpoint]),
      verdict: r.verdict,
    });
    assert.deepEqual(numbers(c), numbers(a), 'a cached base gives the same report');
    // --no-cache reads and writes nothing.
    const none = await runCli([
      'analyze',
      base,
      checkpoints[0],
      '--k-spectrum',
      '32',
      '--k',
      '8',
      '--device',
      'cpu',
      '--no-cache',
      '--verbose',
      '--cache-dir',
      cacheDir,
    ]);
    assert.equal(none.code, 2);
    assert.match(none.err, /--no-cache uses no cache: --cache-dir/);
    const plain = await runCli(['analyze', base, checkpoints[0], '--k-spectrum', '32', '--k', '8', '--device', 'cpu', '--no-cache', '--verbose']);
    assert.equal(plain.code, 0, plain.err);
    assert.match(plain.err, /0 from the cache, \d+ computed \(no cache\)/);
    // The default folder follows XDG_CACHE_HOME.
    const xdg = path.join(dir, 'xdg');
    const saved = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = xdg;
    try {
      const viaXdg = await runCli(['analyze', base, checkpoints[0], '--k-spectrum', '32', '--k', '8', '--device', 'cpu', '--quiet']);
      assert.equal(viaXdg.code, 0, viaXdg.err);
      assert.ok((await fsp.readdir(path.join(xdg, 'gatescope', 'bases'))).some((f) => f.endsWith('.basis')));
    } finally {
      if (saved === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = saved;
    }
    // Inside a checkpoint folder: refused before any work.
    const inside = await runCli(['analyze', base, checkpoints[0], '--device', 'cpu', '--cache-dir', path.join(base, 'cache')]);
    assert.equal(inside.code, 2);
    assert.match(inside.err, /inside the checkpoint folder/);
    assert.equal(
      await fsp.stat(path.join(base, 'cache')).then(
        () => true,
        () => false,
      ),
      false,
      'nothing was created there',
    );
  },
);

test(
  'a rank-deficient weight (rank below k): vectors stay an orthonormal basis and the test watches only the defined directions',
  { timeout: 60_000 },
  async () => {
    const m = 400;
    const n = 300;
    const r = 20;
    const A = new Float32Array(m * r);
    const B = new Float32Array(r * n);
    const { Rng } = await import('../../src/linalg/random');
    new Rng(1).fillGaussian(A);
    new Rng(2).fillGaussian(B);
    const product = async (scaleB: number): Promise<Float32Array> =>
      (await backend.matmul({ rows: m, cols: r, data: A }, { rows: r, cols: n, data: B.map((x, i) => x * (1 + scaleB * Math.sin(i))) })).data;
    const w0 = await product(0);
    const w1 = await product(1e-3); // the update stays inside the rank-20 row space
    const dW = w1.map((x, i) => x - w0[i]);
    const res = await sharedSubspaceSvd(
      backend,
      { rows: m, cols: n, data: w0 },
      { rows: m, cols: n, data: w1 },
      { rows: m, cols: n, data: dW },
      { kk: 256, k: 64, ...SVD },
    );
    assert.ok(res.baseConvergence?.converged && res.checkpointConvergence.converged, 'the defined (rank-20) part settles');
    for (const svd of [res.base, res.checkpoint]) {
      for (const [X, rows] of [
        [svd.U, m],
        [svd.V, n],
      ] as const) {
        for (let i = 0; i < 64; i++) {
          for (let j = 0; j <= i; j++) {
            let d = 0;
            for (let t = 0; t < rows; t++) d += X[t * 64 + i] * X[t * 64 + j];
            assert.ok(Math.abs(d - (i === j ? 1 : 0)) < 1e-5, `columns ${i}, ${j}: ${d}`);
          }
        }
      }
      assert.ok(svd.S[r] < 1e-5 * svd.S[0], 'values past the rank are at float32 noise');
    }
    assert.ok(Number.isFinite(res.anglesLeftDeg[r - 1]) && res.anglesLeftDeg[r - 1] < 1, `the first ${r} angles are small: ${res.anglesLeftDeg[r - 1]}`);
  },
);
