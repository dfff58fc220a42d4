/**
 * The single-run verdict, calibrated on planted updates of known geometry built from real weights (the
 * bundled example base): inside the top-k singular subspaces, in a random part of the bottom half of the
 * singular directions, isotropic, and mixtures, at relative norms 1e-3 to 5e-2, stored in bf16 (the
 * checkpoint's rounding applied to W0 + dW). Inside must come out principal-targeting, bottom
 * off-principal, isotropic inconclusive, at every size; a mixture never gets the label opposite to its
 * non-isotropic part. Degenerate checkpoints (bit-identical, non-finite) get no regime.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { Checkpoint } from '../../src/formats/checkpoint';
import { decodeToFloat32 } from '../../src/formats/dtype';
import { createBackend, type ComputeBackend } from '../../src/compute/backend';
import { analyzePair, summarizeSpectral, type TensorPair, type PairSpectral } from '../../src/analysis/spectral';
import { roundBf16 } from '../../src/analysis/nulls';
import { isLinearWeight } from '../../src/core/names';
import { classifyModule } from '../../src/core/names';
import { jacobiSvd, type DenseSvd } from '../../src/linalg/svd';
import { Rng } from '../../src/linalg/random';
import { DEFAULT_SETTINGS, type CheckpointReport, type TensorDiff, type VerdictLabel } from '../../src/report/schema';
import { summarize } from '../../src/report/summarize';
import { comparePair, compareRegimes, ComparisonError } from '../../src/analysis/regime-compare';

const BASE = path.resolve(__dirname, '..', '..', '..', 'examples', 'base');
const K = 16;
const SETTINGS = { ...DEFAULT_SETTINGS, k: K };
const SIZES = [1e-3, 5e-3, 1e-2, 5e-2];

interface BaseWeight {
  name: string;
  m: number;
  n: number;
  w0: Float32Array;
  svd: DenseSvd;
}

let backend: ComputeBackend;
const weights: BaseWeight[] = [];

before(async () => {
  process.env.ORT_DISABLE_TELEMETRY = '1';
  backend = await createBackend({ device: 'cpu', threads: 1 });
  const ck = await Checkpoint.open(BASE);
  try {
    // Every other layer's linear weights: all module kinds and shapes, half the time.
    for (const [name, ref] of ck.tensors) {
      const shape = ref.info.shape;
      if (shape.length !== 2 || !isLinearWeight(name, shape, classifyModule(name))) continue;
      const layer = /layers\.(\d+)\./.exec(name);
      if (!layer || Number(layer[1]) % 2 !== 0) continue;
      const [m, n] = shape;
      const raw = await ref.file.readElements(ref.info, 0, m * n);
      const w0 = new Float32Array(m * n);
      decodeToFloat32(ref.info.dtype, raw, m * n, w0);
      weights.push({ name, m, n, w0, svd: jacobiSvd(Float64Array.from(w0), m, n) });
    }
  } finally {
    await ck.close();
  }
});

after(async () => {
  await backend?.dispose();
});

type Kind = 'inside' | 'bottom' | 'isotropic' | 'inside+isotropic' | 'bottom+isotropic';

/** A unit-Frobenius-norm update of the given geometry. */
function direction(w: BaseWeight, kind: Kind, rng: Rng): Float64Array {
  const { m, n, svd } = w;
  const p = svd.p;
  const lowRank = (cols: number[]): Float64Array => {
    const r = cols.length;
    const C = Float64Array.from({ length: r * r }, () => rng.nextGaussian());
    const d = new Float64Array(m * n);
    for (let a = 0; a < r; a++)
      for (let b = 0; b < r; b++) {
        const c = C[a * r + b];
        const ia = cols[a];
        const ib = cols[b];
        for (let i = 0; i < m; i++) {
          const u = svd.U[i * p + ia] * c;
          for (let j = 0; j < n; j++) d[i * n + j] += u * svd.V[j * p + ib];
        }
      }
    return d;
  };
  const unit = (d: Float64Array): Float64Array => {
    let s = 0;
    for (const x of d) s += x * x;
    const f = 1 / Math.sqrt(s);
    return d.map((x) => x * f);
  };
  const iso = (): Float64Array => unit(Float64Array.from({ length: m * n }, () => rng.nextGaussian()));
  const inside = (): Float64Array => unit(lowRank(Array.from({ length: K }, (_, i) => i)));
  const bottom = (): Float64Array => {
    // Rank 8 inside a random part of the bottom half of the singular directions.
    const half = Math.floor(p / 2);
    const pool = Array.from({ length: p - half }, (_, i) => half + i);
    for (let i = pool.length - 1; i > 0; i--) {
      const j = rng.nextU32() % (i + 1);
      [pool[i], pool[j]] = [pool[j], pool[i]];
    }
    return unit(lowRank(pool.slice(0, 8)));
  };
  const mix = (a: Float64Array, b: Float64Array): Float64Array => unit(a.map((x, i) => Math.SQRT1_2 * x + Math.SQRT1_2 * b[i]));
  switch (kind) {
    case 'inside':
      return inside();
    case 'bottom':
      return bottom();
    case 'isotropic':
      return iso();
    case 'inside+isotropic':
      return mix(inside(), iso());
    case 'bottom+isotropic':
      return mix(bottom(), iso());
  }
}

function frobenius(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

/** W1 = bf16(W0 + rel * ||W0||_F * d): the update as a bf16 checkpoint stores it. */
function planted(w: BaseWeight, d: Float64Array, rel: number): TensorPair {
  const scale = rel * frobenius(w.w0);
  const w1 = new Float32Array(w.w0.length);
  const mask = new Uint8Array(w.w0.length);
  let changed = 0;
  for (let i = 0; i < w1.length; i++) {
    w1[i] = roundBf16(w.w0[i] + scale * d[i]);
    if (w1[i] !== w.w0[i]) {
      mask[i] = 1;
      changed++;
    }
  }
  return { name: w.name, m: w.m, n: w.n, w0: w.w0, w1, mask, changed, dtype0: 'BF16', dtype1: 'BF16', nonFinite: 0 };
}

function diffOf(p: TensorPair): TensorDiff {
  return {
    name: p.name,
    module: classifyModule(p.name),
    layer: null,
    shape: [p.m, p.n],
    dtype: 'BF16',
    numel: p.m * p.n,
    unchanged: 1 - p.changed / (p.m * p.n),
    changed: p.changed,
    nonFinite: p.nonFinite,
    unchangedLegacyAbs: 0,
    relUpdateNorm: null,
    updateNormFro: 0,
    baseNormFro: 0,
    maxAbsUpdate: 0,
    medianUpdateUlps: null,
  };
}

async function plantedRun(kind: Kind, rel: number, seed: number): Promise<{ label: VerdictLabel; perTensor: VerdictLabel[]; results: PairSpectral[] }> {
  const rng = new Rng(seed);
  const results: { t: TensorDiff; r: PairSpectral }[] = [];
  for (const w of weights) {
    const pair = planted(w, direction(w, kind, rng), rel);
    results.push({ t: diffOf(pair), r: await analyzePair(backend, pair, SETTINGS) });
  }
  const run = summarizeSpectral(results)!;
  if (process.env.GATESCOPE_VERDICT_DEBUG)
    console.log(
      `RUN ${kind} ${rel} ${run.verdict.label} ${run.verdict.evidence.map((e) => `${e.measure} ${e.ratio?.toFixed(3)}/${e.ratioDirectionBlind?.toFixed(3)}`).join('; ')}`,
    );
  return { label: run.verdict.label, perTensor: results.map((x) => x.r.verdict.label), results: results.map((x) => x.r) };
}

/** Mixtures (half the energy isotropic) must never get the opposite label; which label they get is theirs. */
const EXPECTED: Record<Kind, { run: VerdictLabel | null; never: VerdictLabel }> = {
  inside: { run: 'principal-targeting', never: 'off-principal' },
  bottom: { run: 'off-principal', never: 'principal-targeting' },
  isotropic: { run: 'inconclusive', never: 'off-principal' },
  'inside+isotropic': { run: null, never: 'off-principal' },
  'bottom+isotropic': { run: null, never: 'principal-targeting' },
};

test('the example base is bundled and has linear weights to plant updates in', () => {
  assert.ok(weights.length >= 7, `${weights.length} weights`);
});

for (const kind of Object.keys(EXPECTED) as Kind[]) {
  test(`planted ${kind} updates, stored in bf16, relative norm 1e-3 to 5e-2: ${EXPECTED[kind].run ?? `never ${EXPECTED[kind].never}`}`, async () => {
    const seen: string[] = [];
    for (const [i, rel] of SIZES.entries()) {
      const r = await plantedRun(kind, rel, 100 + i);
      seen.push(`${rel}: ${r.label}`);
      if (EXPECTED[kind].run) assert.equal(r.label, EXPECTED[kind].run, `${kind} at ${rel}: ${r.label} (${seen.join(', ')})`);
      else assert.notEqual(r.label, EXPECTED[kind].never, `${kind} at ${rel}: ${r.label}`);
      // Per tensor: never the opposite regime; isotropic never gets any regime at all.
      for (const [j, l] of r.perTensor.entries()) {
        assert.notEqual(l, EXPECTED[kind].never, `${kind} at ${rel}, ${weights[j].name}: ${l}`);
        if (process.env.GATESCOPE_VERDICT_DEBUG)
          console.log(
            kind,
            rel,
            weights[j].name,
            l,
            r.results[j].verdict.evidence.map((e) => `${e.measure} ${e.ratio?.toFixed(3)}/${e.ratioDirectionBlind?.toFixed(3)}`).join('; '),
          );
        if (kind === 'isotropic') assert.equal(l, 'inconclusive', `isotropic at ${rel}, ${weights[j].name}: ${l}`);
      }
    }
  });
}

test("the nulls follow the update through bf16 storage: a planted update's ratios do not drift with its size", async () => {
  const ratios: number[] = [];
  for (const rel of [1e-3, 5e-2]) {
    const r = await plantedRun('inside', rel, 7);
    const e = r.results.map((x) => (1 - x.spectral.offPrincipalEnergy) / x.spectral.nulls.gradientLike.principalEnergy);
    ratios.push(e.sort((a, b) => a - b)[Math.floor(e.length / 2)]);
  }
  // Raw energy shares differ by 2x between these sizes (rounding noise dilutes the small one); the ratios to the null much less.
  assert.ok(ratios[0] / ratios[1] > 0.6 && ratios[0] / ratios[1] < 1.6, `ratios ${ratios.join(', ')}`);
});

test('degenerate checkpoints get no regime: bit-identical, and non-finite values', async () => {
  const results: { t: TensorDiff; r: PairSpectral }[] = [];
  for (const w of weights.slice(0, 3)) {
    const same: TensorPair = {
      name: w.name,
      m: w.m,
      n: w.n,
      w0: w.w0,
      w1: Float32Array.from(w.w0),
      mask: new Uint8Array(w.w0.length),
      changed: 0,
      dtype0: 'BF16',
      dtype1: 'BF16',
      nonFinite: 0,
    };
    const r = await analyzePair(backend, same, SETTINGS);
    assert.equal(r.verdict.label, 'inconclusive');
    assert.equal(r.verdict.reason, 'no update');
    results.push({ t: diffOf(same), r });
  }
  const run = summarizeSpectral(results)!.verdict;
  assert.equal(run.label, 'inconclusive');
  assert.match(run.reason!, /no update/);
  assert.deepEqual(run.evidence, []);

  // k as large as a side of the matrix: the top-k subspace is everything there, so no regime.
  const sq = weights.find((x) => x.m === x.n)!;
  const full = await analyzePair(backend, planted(sq, direction(sq, 'isotropic', new Rng(4)), 1e-2), { ...SETTINGS, k: sq.n });
  assert.equal(full.verdict.label, 'inconclusive');
  assert.match(full.verdict.reason!, /covers a whole side/);

  const w = weights[0];
  const pair = planted(w, direction(w, 'bottom', new Rng(3)), 1e-2);
  const r = await analyzePair(backend, { ...pair, nonFinite: 12 }, SETTINGS);
  assert.equal(r.verdict.label, 'inconclusive');
  assert.match(r.verdict.reason!, /non-finite/);
});

/** A checkpoint report of planted updates (the fields the comparative verdict reads). */
async function plantedReport(kind: Kind, rel: number, seed: number, scale = 1): Promise<CheckpointReport> {
  const rng = new Rng(seed);
  const tensors: TensorDiff[] = [];
  for (const w of weights) {
    const pair = planted(w, direction(w, kind, rng), rel * scale);
    const r = await analyzePair(backend, pair, SETTINGS);
    let d2 = 0;
    for (let i = 0; i < pair.w0.length; i++) d2 += (pair.w1[i] - pair.w0[i]) ** 2;
    const t = diffOf(pair);
    t.updateNormFro = Math.sqrt(d2);
    t.baseNormFro = frobenius(w.w0);
    t.relUpdateNorm = t.updateNormFro / t.baseNormFro;
    t.layer = Number(/layers\.(\d+)\./.exec(w.name)![1]);
    t.spectral = r.spectral;
    t.verdict = r.verdict;
    tensors.push(t);
  }
  return {
    schemaVersion: 2,
    kind: 'gatescope.checkpoint-report',
    tool: { name: 'gatescope', version: 'test' },
    createdAt: '',
    base: BASE,
    checkpoint: `${kind}-${rel * scale}`,
    step: null,
    settings: SETTINGS,
    passes: 'full',
    summary: summarize(tensors),
    tensors,
    mismatches: [],
    durationMs: 0,
  };
}

test('comparative verdict: the same geometry at two sizes is "no difference beyond the update size", with the right size ratio', async () => {
  // The same directions (same seed) at 1x and 2.5x: a gradient-like geometry (half inside the top-k, half
  // isotropic), at an RL-like size where bf16 rounding is much of the stored update, and at an SFT-like size.
  for (const rel of [2e-3, 1e-2]) {
    const small = await plantedReport('inside+isotropic', rel, 21);
    const large = await plantedReport('inside+isotropic', rel, 21, 2.5);
    const pair = comparePair('small', small, 'large', large);
    assert.equal(pair.moreOffPrincipal, null, `${rel}: ${pair.summary} ${JSON.stringify(pair.evidence)}`);
    assert.match(pair.summary, /no difference beyond the update size/);
    assert.ok(pair.updateSizeRatio !== null && Math.abs(pair.updateSizeRatio - 1 / 2.5) < 0.04, `${rel}: size ratio ${pair.updateSizeRatio}`);
    assert.equal(pair.evidence.length, 4);
    for (const e of pair.evidence) assert.ok(e.ciLow <= e.ratio && e.ratio <= e.ciHigh, `${e.measure}: ${e.ciLow} ${e.ratio} ${e.ciHigh}`);
  }
});

test('comparative verdict: an update in the bottom directions is more off-principal than one inside the top-k, at equal size', async () => {
  const inside = await plantedReport('inside', 1e-2, 31);
  const bottom = await plantedReport('bottom', 1e-2, 32);
  const pair = comparePair('inside', inside, 'bottom', bottom);
  assert.equal(pair.moreOffPrincipal, 'bottom', pair.summary);
  assert.ok(pair.evidence.filter((e) => e.leans === 'bottom').length >= 2, JSON.stringify(pair.evidence));
  assert.ok(pair.evidence.every((e) => e.leans !== 'inside'));
  // And the other way round, labels follow the runs.
  assert.equal(comparePair('bottom', bottom, 'inside', inside).moreOffPrincipal, 'bottom');
  const all = compareRegimes(['inside', 'bottom'], [inside, bottom]);
  assert.equal(all.pairs.length, 1);
  assert.equal(all.runs[0].layers.length, new Set(weights.map((w) => /layers\.(\d+)\./.exec(w.name)![1])).size);
});

test('comparative verdict refuses runs of different bases and pairs with no shared linear weight', async () => {
  const a = await plantedReport('isotropic', 1e-2, 41);
  const b = { ...a, base: '/elsewhere/base' };
  assert.throws(
    () => compareRegimes(['a', 'b'], [a, b]),
    (e: unknown) => e instanceof ComparisonError && /different bases/.test(e.message) && e.message.includes('/elsewhere/base'),
  );
  const none = { ...a, tensors: a.tensors.map((t) => ({ ...t, name: `other.${t.name}` })) };
  assert.throws(
    () => comparePair('a', a, 'c', none),
    (e: unknown) => e instanceof ComparisonError && /share no analysed linear weight/.test(e.message),
  );
  // Shared weights, but none with a regime in both: a pair that says so, with no ratios.
  const still = { ...a, tensors: a.tensors.map((t) => ({ ...t, changed: 0, verdict: { label: 'inconclusive' as const, reason: 'no update', evidence: [] } })) };
  const p = comparePair('a', a, 'still', still);
  assert.equal(p.moreOffPrincipal, null);
  assert.deepEqual(p.evidence, []);
  assert.equal(p.updateSizeRatio, null);
  assert.match(p.summary, /no comparison: no shared weight has a regime in both runs \(no update\)/);
});
