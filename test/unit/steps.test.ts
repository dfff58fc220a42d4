/**
 * `gatescope steps` against the independent numpy reference (scripts/steps-reference.py, committed as
 * examples/runs/<run>/steps-reference.json) on every example run: changed counts and payload bytes
 * exact, the XOR that the zstd frames hold byte for byte, the Gate III prediction against a direct count;
 * then the read-once walk, bad input and the CLI's contract.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { stepsOfRun, StepsError, FRAME_ENTRIES } from '../../src/analysis/steps';
import { halfUlpOfExponent, unchangedShareBelowBound, exponentCounts } from '../../src/analysis/bf16-visibility';
import { loadZstd } from '../../src/analysis/zstd';
import { SafetensorsFile } from '../../src/formats/safetensors';
import type { StepsReport } from '../../src/report/steps-schema';
import { runCli } from '../support/cli';
import { bf16, bf16Bytes, tempDir, validFile, writeFile } from '../support/st';

const EXAMPLES = path.resolve(__dirname, '..', '..', '..', 'examples');
const RUNS = ['rl-kl', 'rl-kl-fp32', 'rl-kl-seed1', 'rl-nokl', 'sft', 'sft-matched'];

interface RefTensor {
  name: string;
  numel: number;
  changed: number;
  bitsChanged: number;
  nonFinite: number;
  relUpdateNorm: number | null;
  medianUpdateUlps: number | null;
  payload: { dense: number; bitmap: number; coo: number };
  xorSha256: string | null;
}
interface RefStep {
  fromStep: number;
  toStep: number;
  changed: number;
  bitsChanged: number;
  numel: number;
  payload: { dense: number; bitmap: number; coo: number };
  prediction: { learningRate: number; optimizerSteps: number; bound: number; numel: number; unchangedAtLrCount: number; unchangedAt10LrCount: number } | null;
  tensors: RefTensor[];
}

async function reference(run: string): Promise<{ steps: RefStep[]; eta: number }> {
  return JSON.parse(await fsp.readFile(path.join(EXAMPLES, 'runs', run, 'steps-reference.json'), 'utf8')) as { steps: RefStep[]; eta: number };
}

function closeRel(a: number | null, b: number | null, tol: number, what: string): void {
  if (a === null || b === null) {
    assert.equal(a, b, what);
    return;
  }
  assert.ok(Math.abs(a - b) <= tol * Math.max(Math.abs(b), 1e-300), `${what}: ${a} vs ${b}`);
}

for (const run of RUNS) {
  test(`steps of ${run} equal the numpy reference: counts, payloads, XOR frames, prediction`, async () => {
    const ref = await reference(run);
    const frames = new Map<string, { start: number; frame: Uint8Array }[]>();
    const report = await stepsOfRun(path.join(EXAMPLES, 'runs', run), {
      eta: ref.eta,
      onFrame: (f) => {
        const key = `${f.step}\u0000${f.tensor}`;
        frames.set(key, [...(frames.get(key) ?? []), { start: f.start, frame: f.frame }]);
      },
    });
    const zstd = await loadZstd();
    assert.equal(report.steps.length, ref.steps.length, 'one step per consecutive pair, the base first');
    assert.equal(report.base !== null, true);
    for (const [s, rs] of ref.steps.entries()) {
      const st = report.steps[s];
      const where = `${run} step ${rs.fromStep}->${rs.toStep}`;
      assert.equal(st.fromStep, rs.fromStep, where);
      assert.equal(st.toStep, rs.toStep, where);
      assert.equal(st.fromBase, s === 0, where);
      assert.equal(st.changed, rs.changed, `${where}: changed`);
      assert.equal(st.bitsChanged, rs.bitsChanged, `${where}: bitsChanged`);
      assert.equal(st.numel, rs.numel, `${where}: numel`);
      assert.equal(st.unchanged, (rs.numel - rs.changed) / rs.numel, `${where}: unchanged`);
      assert.equal(st.payload.dense, rs.payload.dense, `${where}: dense`);
      assert.equal(st.payload.bitmap, rs.payload.bitmap, `${where}: bitmap`);
      assert.equal(st.payload.coo, rs.payload.coo, `${where}: coo`);
      assert.equal(st.tensors.length, rs.tensors.length, `${where}: tensors`);
      let xorTotal = 0;
      for (const rt of rs.tensors) {
        const t = st.tensors.find((x) => x.name === rt.name);
        assert.ok(t, `${where}: ${rt.name} is reported`);
        const at = `${where} ${rt.name}`;
        assert.equal(t.numel, rt.numel, at);
        assert.equal(t.changed, rt.changed, `${at}: changed`);
        assert.equal(t.bitsChanged, rt.bitsChanged, `${at}: bitsChanged`);
        assert.equal(t.nonFinite, rt.nonFinite, `${at}: nonFinite`);
        closeRel(t.relUpdateNorm, rt.relUpdateNorm, 1e-9, `${at}: relUpdateNorm`);
        // The histogram median is exact for integer ULP counts up to 256 and within 0.8% above.
        closeRel(t.medianUpdateUlps, rt.medianUpdateUlps, 0.008, `${at}: medianUpdateUlps`);
        assert.equal(t.payload.dense, rt.payload.dense, `${at}: dense`);
        assert.equal(t.payload.bitmap, rt.payload.bitmap, `${at}: bitmap`);
        assert.equal(t.payload.coo, rt.payload.coo, `${at}: coo`);
        const fs = (frames.get(`${s}\u0000${t.name}`) ?? []).sort((a, b) => a.start - b.start);
        if (rt.xorSha256 === null) {
          assert.equal(t.payload.xorZstd, null, `${at}: no XOR across a dtype change`);
          continue;
        }
        // The frames decompress to exactly the XOR numpy computed, and the payload counts exactly their bytes.
        const hash = createHash('sha256');
        for (const f of fs) hash.update(zstd.decompress(f.frame));
        assert.equal(hash.digest('hex'), rt.xorSha256, `${at}: the frames hold the XOR of the bit patterns`);
        assert.equal(fs.length, Math.ceil(rt.numel / FRAME_ENTRIES), `${at}: one frame per block`);
        const bytes = fs.reduce((a, f) => a + f.frame.length, 0);
        assert.equal(t.payload.xorZstd, rt.bitsChanged > 0 ? bytes : 0, `${at}: xorZstd counts the frames' bytes`);
        xorTotal += t.payload.xorZstd ?? 0;
      }
      if (rs.tensors.every((t) => t.xorSha256 !== null)) assert.equal(st.payload.xorZstd, xorTotal, `${where}: xorZstd sums the tensors'`);
      else assert.equal(st.payload.xorZstd, null, `${where}: xorZstd is null where a tensor changed dtype`);
      // XOR+zstd of a sparse step moves less than the dense tensors.
      if (st.payload.xorZstd !== null) assert.ok(st.payload.xorZstd < st.payload.dense, `${where}: XOR+zstd below dense`);
      const rp = rs.prediction;
      if (!rp) {
        assert.equal(st.prediction, null, `${where}: no prediction`);
        assert.ok(st.predictionUnavailable, `${where}: says why there is no prediction`);
        continue;
      }
      const p = st.prediction;
      assert.ok(p, `${where}: a prediction`);
      assert.equal(p.learningRate.value, rp.learningRate, `${where}: learning rate (${p.learningRate.source})`);
      assert.equal(p.optimizerSteps, rp.optimizerSteps, `${where}: optimizer steps (${p.optimizerStepsSource})`);
      closeRel(p.bound, rp.bound, 1e-12, `${where}: bound`);
      assert.equal(p.numel, rp.numel, `${where}: entries covered`);
      assert.equal(Math.round(p.unchangedAtLr * p.numel), rp.unchangedAtLrCount, `${where}: half-ULP > lr bound, direct count`);
      assert.equal(Math.round(p.unchangedAt10Lr * p.numel), rp.unchangedAt10LrCount, `${where}: half-ULP > 10 lr bound, direct count`);
      assert.ok(p.unchangedAt10Lr <= p.unchangedAtLr);
      const expected = p.observedUnchanged < p.unchangedAt10Lr ? 'below' : p.observedUnchanged > p.unchangedAtLr ? 'above' : 'within';
      assert.equal(p.agreement, expected, `${where}: agreement`);
      // The sparse exponent counts in the report redo the prediction for the same bound.
      assert.equal(unchangedShareBelowBound(exponentCounts(st.fromExponents), p.bound), p.unchangedAtLr, `${where}: fromExponents reproduce it`);
    }
  });
}

test('the half-ULP threshold of each exponent is half the spacing of bf16 numbers there', () => {
  for (const x of [1, 1.5, 0.02, -3e-5, 2 ** -126, 1e30]) {
    const bits = bf16(x);
    const e = (bits >>> 7) & 0xff;
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    u[0] = bits << 16;
    const w = f[0];
    u[0] = (bits + 1) << 16;
    const next = f[0];
    assert.equal(halfUlpOfExponent(e), Math.abs(next - w) / 2, `at ${x}`);
  }
  assert.equal(halfUlpOfExponent(0), 2 ** -134, "zero shares the smallest normal binade's ULP");
});

test('unchangedShareBelowBound counts what a direct count over the values counts', () => {
  const counts = new Float64Array(256);
  const halfUlps: number[] = [];
  let seed = 7;
  for (let i = 0; i < 5000; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const x = (seed / 2 ** 31 - 0.5) * 0.2;
    const e = (bf16(x) >>> 7) & 0xff;
    counts[e]++;
    halfUlps.push(halfUlpOfExponent(e));
  }
  counts[255] += 3; // NaN/Inf entries are not counted
  for (const bound of [1e-7, 3e-6, 2.4e-4, 1e-2]) {
    const direct = halfUlps.filter((h) => h > bound).length / halfUlps.length;
    assert.equal(unchangedShareBelowBound(counts, bound), direct, `bound ${bound}`);
  }
});

test('each checkpoint is read once: N checkpoints cost N reads of their tensor bytes, not 2N', async () => {
  const readBytes = new Map<string, number>();
  const original = SafetensorsFile.prototype.readElements;
  SafetensorsFile.prototype.readElements = async function (this: SafetensorsFile, t, start, count, into) {
    const out = await original.call(this, t, start, count, into);
    readBytes.set(this.path, (readBytes.get(this.path) ?? 0) + out.byteLength);
    return out;
  };
  let report: StepsReport;
  try {
    // In this thread, where the reads are counted (each worker thread reads its share the same way).
    report = await stepsOfRun(path.join(EXAMPLES, 'runs', 'sft'), { threads: 1 });
  } finally {
    SafetensorsFile.prototype.readElements = original;
  }
  assert.equal(report.checkpoints.length, 3);
  for (const file of readBytes.keys()) {
    const f = await SafetensorsFile.open(file);
    let data = 0;
    for (const t of f.tensors.values()) data += t.end - t.begin;
    await f.close();
    assert.equal(readBytes.get(file), data, `${file} read once`);
  }
  // base (1 file) + checkpoint-80 (1) + checkpoint-160 (2 shards)
  assert.equal(readBytes.size, 4);
});

test('worker threads give the same report as one thread', async () => {
  const strip = (r: StepsReport): unknown => ({ ...r, createdAt: 0, durationMs: 0 });
  for (const run of ['rl-kl', 'sft']) {
    const one = await stepsOfRun(path.join(EXAMPLES, 'runs', run), { threads: 1 });
    const two = await stepsOfRun(path.join(EXAMPLES, 'runs', run), { threads: 2 });
    assert.deepEqual(strip(two), strip(one), run);
  }
});

async function tinyRun(dir: string, steps: { step: number; values: number[]; shape?: number[] }[]): Promise<void> {
  for (const s of steps) {
    const data = bf16Bytes(s.values.map(bf16));
    await writeFile(
      path.join(dir, `checkpoint-${s.step}`, 'model.safetensors'),
      validFile({ 'model.layers.0.mlp.up_proj.weight': { dtype: 'BF16', shape: s.shape ?? [2, s.values.length / 2], data } }),
    );
    await writeFile(path.join(dir, `checkpoint-${s.step}`, 'config.json'), '{}');
  }
}

test('a run with one checkpoint and no base says there is no step to compare', async () => {
  const dir = await tempDir();
  await tinyRun(dir, [{ step: 10, values: [1, 2, 3, 4] }]);
  await assert.rejects(stepsOfRun(dir), (e: Error) => e instanceof StepsError && /no step to compare/.test(e.message) && e.message.includes('--base'));
  const r = await runCli(['steps', dir, '--quiet']);
  assert.equal(r.code, 1);
  assert.match(r.err, /no step to compare/);
});

test('checkpoints of different shapes in one run are an error naming the pair', async () => {
  const dir = await tempDir();
  await tinyRun(dir, [
    { step: 10, values: [1, 2, 3, 4] },
    { step: 20, values: [1, 2, 3, 4, 5, 6], shape: [2, 3] },
  ]);
  await assert.rejects(
    stepsOfRun(dir),
    (e: Error) => e instanceof StepsError && e.message.includes('checkpoint-10') && e.message.includes('checkpoint-20') && /different shapes/.test(e.message),
  );
});

test('a run without a base starts at its first checkpoint; an incomplete checkpoint is left out and named', async () => {
  const dir = await tempDir();
  await tinyRun(dir, [
    { step: 10, values: [1, 2, 3, 4] },
    { step: 20, values: [1, 2.5, 3, 4] },
    { step: 30, values: [1, 2.5, 3, 4.5] },
  ]);
  // Training still saving step 40: the file is shorter than its header says.
  const whole = validFile({ 'model.layers.0.mlp.up_proj.weight': { dtype: 'BF16', shape: [2, 2], data: bf16Bytes([1, 2, 3, 4].map(bf16)) } });
  await writeFile(path.join(dir, 'checkpoint-40', 'model.safetensors'), whole.subarray(0, whole.length - 3));
  await writeFile(path.join(dir, 'checkpoint-40', 'config.json'), '{}');
  const r = await stepsOfRun(dir, { learningRate: 1e-3, learningRateSource: 'test' });
  assert.equal(r.base, null);
  assert.deepEqual(
    r.steps.map((s) => [s.fromStep, s.toStep, s.changed, s.bitsChanged]),
    [
      [10, 20, 1, 1],
      [20, 30, 1, 1],
    ],
  );
  assert.equal(r.skipped.length, 1);
  assert.match(r.skipped[0].path, /checkpoint-40/);
  assert.equal(r.skipped[0].state, 'incomplete');
  const s = r.steps[0];
  assert.deepEqual(s.payload, { dense: 8, bitmap: 1 + 2, coo: 4 + 2, xorZstd: s.payload.xorZstd });
  assert.ok(s.payload.xorZstd! > 0);
  // HF Trainer numbering: 10 optimizer steps x 1e-3 = 1e-2; the half ULPs of 1, 2, 3, 4 are 2^-8, 2^-7, 2^-7, 2^-6:
  // only 4's exceeds 1e-2, none exceeds 1e-1. Three of four entries stayed: above the prediction.
  assert.equal(s.prediction?.optimizerSteps, 10);
  assert.equal(s.prediction?.unchangedAtLr, 0.25);
  assert.equal(s.prediction?.unchangedAt10Lr, 0);
  assert.equal(s.prediction?.agreement, 'above');
  assert.equal(s.prediction?.learningRate.source, 'test');
});

test('gatescope steps writes the JSON contract with paths relative to the report, CSV and Markdown', async () => {
  const out = await tempDir();
  const json = path.join(out, 'steps.json');
  const r = await runCli([
    'steps',
    path.join(EXAMPLES, 'runs', 'rl-kl'),
    '--json',
    json,
    '--csv',
    path.join(out, 's.csv'),
    '--md',
    path.join(out, 's.md'),
    '--quiet',
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /base -> 40/);
  assert.match(r.out, /40 -> 80/);
  const rep = JSON.parse(await fsp.readFile(json, 'utf8')) as StepsReport;
  assert.equal(rep.kind, 'gatescope.steps');
  for (const s of rep.steps) {
    for (const k of ['from', 'to', 'fromStep', 'toStep', 'changed', 'numel', 'unchanged', 'relUpdateNorm', 'payload'] as const) assert.ok(k in s, k);
    assert.deepEqual(Object.keys(s.payload).sort(), ['bitmap', 'coo', 'dense', 'xorZstd']);
    assert.ok(!path.isAbsolute(s.from) && !path.isAbsolute(s.to), 'paths relative to the report');
    assert.ok((await fsp.stat(path.resolve(out, s.to))).isDirectory());
  }
  assert.equal(rep.steps[0].prediction?.learningRate.value, 3e-6);
  const csv = await fsp.readFile(path.join(out, 's.csv'), 'utf8');
  assert.equal(csv.trim().split('\n').length, 1 + rep.steps.reduce((a, s) => a + s.tensors.length, 0));
  assert.match(await fsp.readFile(path.join(out, 's.md'), 'utf8'), /Gate III: what bf16 predicts/);
  // --lr overrides what the run's files say; --no-base starts at the first checkpoint.
  const r2 = await runCli(['steps', path.join(EXAMPLES, 'runs', 'rl-kl'), '--lr', '1e-6', '--no-base', '--json', json, '--quiet']);
  assert.equal(r2.code, 0, r2.err);
  const rep2 = JSON.parse(await fsp.readFile(json, 'utf8')) as StepsReport;
  assert.equal(rep2.steps.length, 1);
  assert.equal(rep2.base, null);
  assert.deepEqual([rep2.steps[0].fromStep, rep2.steps[0].toStep], [40, 80]);
  assert.equal(rep2.steps[0].prediction?.learningRate.source, '--lr');
  assert.equal(rep2.steps[0].prediction?.bound, 1e-6 * 80);
});

test('gatescope steps: usage errors', async () => {
  const run = path.join(EXAMPLES, 'runs', 'rl-kl');
  for (const args of [
    ['steps'],
    ['steps', run, run],
    ['steps', run, '--base', path.join(EXAMPLES, 'base'), '--no-base'],
    ['steps', run, '--lr', '-1'],
    ['steps', path.join(run, 'verl_config.yaml')],
  ]) {
    const r = await runCli([...args, '--quiet']);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
  }
  // Nothing is written inside a checkpoint folder.
  const r = await runCli(['steps', run, '--json', path.join(run, 'global_step_40', 'actor', 'huggingface', 'x.json'), '--quiet']);
  assert.equal(r.code, 2);
});
