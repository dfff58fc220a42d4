/**
 * No confident wrong answer: checkpoints that pair with nothing, tensors with no finite entry, and
 * zero, rank-deficient or huge-valued matrices in the spectral pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { analyzeCheckpoint } from '../../src/analysis/analyze';
import { compareRuns } from '../../src/analysis/consistency';
import { createSpectralPass, analyzePair, type TensorPair } from '../../src/analysis/spectral';
import { ZERO_BASE } from '../../src/analysis/verdict';
import { ALL_NON_FINITE, NO_ENTRIES } from '../../src/analysis/diff';
import { createReferenceBackend } from '../../src/compute/reference-backend';
import { CheckpointFormatError, PairingError } from '../../src/formats/errors';
import { formatCheckpointReport } from '../../src/report/format-text';
import { reportsToCsv } from '../../src/report/csv';
import { reportsToHtml } from '../../src/report/html';
import { heatmapData } from '../../src/ui-model/heatmap';
import { DEFAULT_SETTINGS, type CheckpointReport } from '../../src/report/schema';
import { validFile, bf16Bytes, f32Bytes, tempDir, writeFile, bf16, type RawTensor } from '../support/st';
import { runCli } from '../support/cli';

const Q = 'model.layers.0.self_attn.q_proj.weight';
const K = 'model.layers.0.self_attn.k_proj.weight';
const UP = 'model.layers.0.mlp.up_proj.weight';
const NORM = 'model.layers.0.input_layernorm.weight';

function bf16Tensor(shape: number[], values: number[]): RawTensor {
  return { dtype: 'BF16', shape, data: bf16Bytes(values.map(bf16)) };
}

/** A small model: three weights and a norm, bf16; `shift` changes the first entry of each weight. */
function model(prefix: string, shift = 0, names: string[] = [Q, K, UP, NORM]): Record<string, RawTensor> {
  const out: Record<string, RawTensor> = {};
  names.forEach((name, t) => {
    const shape = name === NORM ? [4] : [2, 4];
    const n = shape.reduce((a, b) => a * b, 1);
    out[prefix + name] = bf16Tensor(
      shape,
      Array.from({ length: n }, (_, i) => 1 + i + t + (i === 0 ? shift : 0)),
    );
  });
  return out;
}

async function pairOfFiles(base: Record<string, RawTensor>, ckpt: Record<string, RawTensor>): Promise<{ base: string; ckpt: string }> {
  const dir = await tempDir();
  return {
    base: await writeFile(path.join(dir, 'base', 'model.safetensors'), validFile(base)),
    ckpt: await writeFile(path.join(dir, 'ckpt', 'model.safetensors'), validFile(ckpt)),
  };
}

const diffOnly = { settings: DEFAULT_SETTINGS, passes: 'diff' as const };

// ---- pairing -------------------------------------------------------------------------------------

for (const [label, basePrefix, ckptPrefix] of [
  ['torch.compile', '', '_orig_mod.'],
  ['DDP', '', 'module.'],
  ['PEFT merge', '', 'base_model.model.'],
  ['stacked DDP + compile', '', 'module._orig_mod.'],
  ['prefix on the base side', '_orig_mod.', ''],
  ['different prefixes on both sides', 'module.', '_orig_mod.'],
] as const) {
  test(`pairing strips wrapper prefixes: ${label}`, async () => {
    const f = await pairOfFiles(model(basePrefix), model(ckptPrefix, 4));
    const r = await analyzeCheckpoint(f.base, f.ckpt, diffOnly);
    assert.deepEqual(r.pairing, { basePrefix, checkpointPrefix: ckptPrefix, paired: 4, baseFloatTensors: 4 });
    assert.equal(r.tensors.length, 4);
    assert.deepEqual(r.tensors.map((t) => t.name).sort(), [Q, K, UP, NORM].map((n) => basePrefix + n).sort(), 'report names are the base names');
    assert.deepEqual(r.mismatches, []);
    // The first entry of every tensor moved: 4 of 28 entries (three weights of 8, a norm of 4).
    assert.equal(r.summary.changed, 4);
    assert.equal(r.summary.unchanged, 24 / 28);
    assert.equal(r.tensors.find((t) => t.name.endsWith('q_proj.weight'))!.module, 'q');
    const text = formatCheckpointReport(r);
    assert.match(text, new RegExp(`names paired after stripping "${(ckptPrefix || basePrefix).replace(/\./g, '\\.')}"`));
  });
}

test('pairing strips nothing when both sides carry the same prefix', async () => {
  const f = await pairOfFiles(model('module.'), model('module.', 1));
  const r = await analyzeCheckpoint(f.base, f.ckpt, diffOnly);
  assert.deepEqual(r.pairing, { basePrefix: '', checkpointPrefix: '', paired: 4, baseFloatTensors: 4 });
  assert.ok(!formatCheckpointReport(r).includes('stripping'));
});

test('pairing strips a prefix only where the rest matches: a name that merely starts with "module." stays', async () => {
  // The base really has a tensor called "module.x"; the checkpoint has it too, unprefixed names elsewhere.
  const base = { ...model(''), 'module.extra.weight': bf16Tensor([2], [1, 2]) };
  const ckpt = { ...model('', 2), 'module.extra.weight': bf16Tensor([2], [1, 2]) };
  const f = await pairOfFiles(base, ckpt);
  const r = await analyzeCheckpoint(f.base, f.ckpt, diffOnly);
  assert.deepEqual(r.pairing, { basePrefix: '', checkpointPrefix: '', paired: 5, baseFloatTensors: 5 });
});

test('the spectral pass and the diff threads find the checkpoint tensors of a prefixed checkpoint', async () => {
  const rng = (seed: number) => () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5;
  const r0 = rng(7);
  const big = (prefix: string, noise: number): Record<string, RawTensor> => {
    const out: Record<string, RawTensor> = {};
    for (const name of [Q, K, UP]) {
      const vals = Array.from({ length: 16 * 24 }, () => r0());
      out[prefix + name] = bf16Tensor(
        [16, 24],
        vals.map((v, i) => v + (i % 3 === 0 ? noise : 0)),
      );
    }
    return out;
  };
  const baseT = big('', 0);
  const ckptT: Record<string, RawTensor> = {};
  // The same base values, 1/3 of them moved, under "_orig_mod.".
  for (const [name, t] of Object.entries(baseT)) {
    const bits = new Uint16Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
    const moved = Array.from(bits, (b, i) => (i % 3 === 0 ? (b + 3) & 0xffff : b));
    ckptT[`_orig_mod.${name}`] = { dtype: 'BF16', shape: t.shape, data: bf16Bytes(moved) };
  }
  const f = await pairOfFiles(baseT, ckptT);
  const full = await analyzeCheckpoint(f.base, f.ckpt, {
    settings: DEFAULT_SETTINGS,
    passes: 'full',
    spectral: createSpectralPass(createReferenceBackend()),
    threads: 1,
  });
  for (const t of full.tensors) {
    assert.ok(t.spectral, `${t.name} went through the spectral pass`);
    assert.equal(t.changed, 128);
  }
  const threaded = await analyzeCheckpoint(f.base, f.ckpt, {
    ...diffOnly,
    threads: 2,
    threadScript: path.join(__dirname, '../../src/analysis/diff-thread.js'),
  });
  assert.deepEqual(
    threaded.tensors.map((t) => [t.name, t.changed]),
    full.tensors.map((t) => [t.name, t.changed]),
  );
  assert.equal(threaded.pairing?.checkpointPrefix, '_orig_mod.');
});

test('a completely different model is a PairingError that names both paths, the counts and examples', async () => {
  const other = { 'transformer.h.0.attn.c_attn.weight': bf16Tensor([2, 2], [1, 2, 3, 4]), 'transformer.h.0.mlp.c_fc.weight': bf16Tensor([2, 2], [1, 2, 3, 4]) };
  const f = await pairOfFiles(model(''), other);
  await assert.rejects(analyzeCheckpoint(f.base, f.ckpt, diffOnly), (e: unknown) => {
    assert.ok(e instanceof PairingError);
    assert.ok(e instanceof CheckpointFormatError, 'the CLI maps it like any checkpoint error');
    assert.equal(e.problem, 'pairing');
    assert.equal(e.file, f.ckpt);
    assert.ok(e.message.includes(f.ckpt) && e.message.includes(f.base), e.message);
    assert.match(e.message, /0 of the base's 4 float tensors pair/);
    assert.match(
      e.message,
      /Unpaired in the base: "model\.layers\.0\.input_layernorm\.weight", "model\.layers\.0\.mlp\.up_proj\.weight", "model\.layers\.0\.self_attn\.k_proj\.weight" and 1 more\./,
    );
    assert.match(e.message, /Unpaired in the checkpoint: "transformer\.h\.0\.attn\.c_attn\.weight", "transformer\.h\.0\.mlp\.c_fc\.weight"\./);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
});

test('every shape differing is a PairingError that lists the shapes', async () => {
  const base = model('');
  const ckpt: Record<string, RawTensor> = {};
  for (const [name, t] of Object.entries(base)) ckpt[name] = { ...t, shape: t.shape.length === 2 ? [t.shape[1], t.shape[0]] : [2, 2] };
  const f = await pairOfFiles(base, ckpt);
  await assert.rejects(analyzeCheckpoint(f.base, f.ckpt, diffOnly), (e: unknown) => {
    assert.ok(e instanceof PairingError);
    assert.match(e.message, /0 of the base's 4 float tensors pair/);
    assert.match(
      e.message,
      /Shape differs: "model\.layers\.0\.input_layernorm\.weight" \(base \[4\] vs checkpoint \[2, 2\]\), "model\.layers\.0\.mlp\.up_proj\.weight" \(base \[2, 4\] vs checkpoint \[4, 2\]\), .* and 1 more\./,
    );
    assert.match(e.message, /Unpaired in the checkpoint: "model\.layers\.0\.input_layernorm\.weight"/);
    return true;
  });
});

test('fewer than half of the base tensors paired is an error, half is a report with the rest in mismatches', async () => {
  const names = [Q, K, UP, NORM];
  const fewer = await pairOfFiles(model(''), model('', 1, [Q]));
  await assert.rejects(analyzeCheckpoint(fewer.base, fewer.ckpt, diffOnly), /1 of the base's 4 float tensors pair/);
  // A shape mismatch counts as unpaired for the rule.
  const shapes = { ...model('', 1, [Q]), [K]: bf16Tensor([4, 2], [1, 2, 3, 4, 5, 6, 7, 8]) };
  const withShape = await pairOfFiles(model(''), shapes);
  await assert.rejects(
    analyzeCheckpoint(withShape.base, withShape.ckpt, diffOnly),
    /1 of the base's 4 float tensors pair.*Shape differs: "model\.layers\.0\.self_attn\.k_proj\.weight"/,
  );
  const half = await pairOfFiles(model(''), { ...model('', 1, [Q, K]), [UP]: bf16Tensor([4, 2], [1, 2, 3, 4, 5, 6, 7, 8]) });
  const r = await analyzeCheckpoint(half.base, half.ckpt, diffOnly);
  assert.deepEqual(r.pairing, { basePrefix: '', checkpointPrefix: '', paired: 2, baseFloatTensors: names.length });
  assert.deepEqual(
    r.mismatches.map((m) => [m.name, m.problem]),
    [
      [NORM, 'only-in-base'],
      [UP, 'shape-mismatch'],
    ],
  );
  assert.match(formatCheckpointReport(r), /2 of the base's 4 float tensors compared/);
});

test('the CLI answers a non-pairing checkpoint with exit 1 and one line naming both paths', async () => {
  const f = await pairOfFiles(model(''), { 'other.weight': bf16Tensor([2], [1, 2]) });
  const r = await runCli(['diff', f.base, f.ckpt]);
  assert.equal(r.code, 1);
  assert.equal(r.out, '');
  const lines = r.err.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, r.err);
  assert.match(lines[0], /^gatescope: checkpoint .* does not pair with base .*: 0 of the base's 4 float tensors pair/);
  assert.ok(lines[0].includes(path.basename(path.dirname(f.ckpt))) && lines[0].includes(path.basename(path.dirname(f.base))));
  assert.ok(!/unchanged/.test(r.err + r.out));
});

// ---- tensors without a finite entry ------------------------------------------------------------

async function nonFiniteRun(): Promise<CheckpointReport> {
  // Layer 0: q all NaN in the checkpoint, k all Inf in the base; layer 1: a healthy up_proj and an empty tensor.
  const nan = 0x7fc0;
  const inf = 0x7f80;
  const mk = (q: number[], k: number[], up: number[]): Record<string, RawTensor> => ({
    [Q]: { dtype: 'BF16', shape: [2, 2], data: bf16Bytes(q) },
    [K]: { dtype: 'BF16', shape: [2, 2], data: bf16Bytes(k) },
    'model.layers.1.mlp.up_proj.weight': { dtype: 'BF16', shape: [2, 2], data: bf16Bytes(up) },
    'model.layers.1.mlp.empty.weight': { dtype: 'F32', shape: [0, 3], data: new Uint8Array(0) },
  });
  const one = bf16(1);
  const two = bf16(2);
  const f = await pairOfFiles(
    mk([one, one, one, one], [inf, inf, inf, inf], [one, one, one, one]),
    mk([nan, nan, nan, nan], [one, one, one, one], [one, two, one, one]),
  );
  return analyzeCheckpoint(f.base, f.ckpt, diffOnly);
}

test('a tensor whose every entry is NaN or Inf has unchanged null with the reason, never 1', async () => {
  const r = await nonFiniteRun();
  const byName = new Map(r.tensors.map((t) => [t.name, t]));
  for (const name of [Q, K]) {
    const t = byName.get(name)!;
    assert.equal(t.unchanged, null, name);
    assert.equal(t.unchangedLegacyAbs, null, name);
    assert.equal(t.unchangedUnavailable, ALL_NON_FINITE);
    assert.equal(t.nonFinite, 4);
  }
  const empty = byName.get('model.layers.1.mlp.empty.weight')!;
  assert.equal(empty.unchanged, null);
  assert.equal(empty.unchangedUnavailable, NO_ENTRIES);
  const up = byName.get('model.layers.1.mlp.up_proj.weight')!;
  assert.equal(up.unchanged, 3 / 4);
  assert.equal(up.unchangedUnavailable, undefined);
  // Summaries pool only finite entries; layer 0 and the q/k groups have none and are left out.
  assert.equal(r.summary.unchanged, 3 / 4);
  assert.equal(r.summary.unchangedLegacyAbs, 3 / 4);
  assert.equal(r.summary.nonFinite, 8);
  assert.equal(r.summary.byLayer['0'], undefined);
  assert.equal(r.summary.byModule.q, undefined);
  assert.equal(r.summary.byModule.k, undefined);
  assert.equal(r.summary.byLayer['1'].unchanged, 3 / 4);
  // Renderers: '-' or an empty cell, never 100%.
  const text = formatCheckpointReport(r);
  assert.match(text, /3 tensor\(s\) with no finite entry, left out of every unchanged share: /);
  assert.ok(!text.includes('100.0%'), text);
  const csv = reportsToCsv([r]).split('\n');
  const header = csv[0].split(',');
  const qRow = csv.find((l) => l.includes('q_proj'))!.split(',');
  assert.equal(qRow[header.indexOf('unchanged')], '');
  assert.equal(qRow[header.indexOf('unchangedLegacyAbs')], '');
  const heat = heatmapData(r, 'unchanged');
  const cell = heat.cells.find((c) => c.layer === 0 && c.module === 'q')!;
  assert.equal(cell.value, null);
  const html = reportsToHtml([r]);
  assert.match(html, /3 tensors with no finite entry/);
});

test('a checkpoint whose every compared entry is NaN has no unchanged share at all', async () => {
  const nan = 0x7fc0;
  const mk = (v: number): Record<string, RawTensor> => ({
    [Q]: { dtype: 'BF16', shape: [2, 2], data: bf16Bytes([v, v, v, v]) },
    [NORM]: { dtype: 'BF16', shape: [2], data: bf16Bytes([v, v]) },
  });
  const f = await pairOfFiles(mk(bf16(1)), mk(nan));
  const r = await analyzeCheckpoint(f.base, f.ckpt, diffOnly);
  assert.equal(r.summary.unchanged, null);
  assert.equal(r.summary.unchangedLinear, null);
  assert.equal(r.summary.unchangedNoEmbedNorm, null);
  assert.equal(r.summary.unchangedLegacyAbs, null);
  assert.deepEqual(r.summary.byModule, {});
  assert.deepEqual(r.summary.byLayer, {});
  const json = JSON.parse(JSON.stringify(r)) as CheckpointReport;
  assert.equal(json.summary.unchanged, null);
  const text = formatCheckpointReport(r);
  assert.match(text, /unchanged \(M1, [^)]*\): - of all float entries, - of linear weights/);
  assert.ok(!text.includes('100.0%'));
  // The full pass gives the all-NaN matrix no spectrum instead of numbers.
  const full = await analyzeCheckpoint(f.base, f.ckpt, {
    settings: DEFAULT_SETTINGS,
    passes: 'full',
    spectral: createSpectralPass(createReferenceBackend()),
    threads: 1,
  });
  const q = full.tensors.find((t) => t.name === Q)!;
  assert.equal(q.spectral, undefined);
  assert.match(q.spectralSkipped!, /NaN or Inf/);
});

// ---- dtype mismatches: one line per dtype pair -----------------------------------------------------

test('a fp32 checkpoint of a bf16 base prints one dtype line per dtype pair, the JSON keeps one entry per tensor', async () => {
  const names = Array.from({ length: 6 }, (_, i) => `model.layers.${i}.mlp.down_proj.weight`);
  const base: Record<string, RawTensor> = {};
  const ckpt: Record<string, RawTensor> = {};
  for (const n of names) {
    base[n] = bf16Tensor([2, 2], [1, 2, 3, 4]);
    ckpt[n] = { dtype: 'F32', shape: [2, 2], data: f32Bytes([1, 2.001, 3, 4]) };
  }
  base[NORM] = bf16Tensor([2], [1, 1]);
  ckpt[NORM] = { dtype: 'F16', shape: [2], data: new Uint8Array(new Uint16Array([0x3c00, 0x3c00]).buffer) };
  const f = await pairOfFiles(base, ckpt);
  const r = await analyzeCheckpoint(f.base, f.ckpt, diffOnly);
  assert.equal(r.mismatches.filter((m) => m.problem === 'dtype-mismatch').length, 7);
  const text = formatCheckpointReport(r);
  assert.ok(!text.includes('dtype-mismatch'), text);
  const lines = text.split('\n').filter((l) => l.includes('dtype differs'));
  assert.deepEqual(
    lines.map((l) => l.trim()),
    [
      'dtype differs in 1 tensor: BF16 in base, F16 in checkpoint (compared as floats with the relative rule)',
      'dtype differs in 6 tensors: BF16 in base, F32 in checkpoint (compared as floats with the relative rule; Gate III probe reported)',
    ],
  );
  const html = reportsToHtml([r]);
  assert.ok(
    html.includes('<li>dtype differs in 6 tensors: BF16 in base, F32 in checkpoint (compared as floats with the relative rule; Gate III probe reported)</li>'),
  );
  assert.ok(!html.includes('dtype-mismatch'));
});

// ---- the spectral pass on zero, rank-deficient and huge matrices -------------------------------------

function pairOf(m: number, n: number, w0: Float32Array, w1: Float32Array): TensorPair {
  const mask = new Uint8Array(m * n);
  let changed = 0;
  for (let i = 0; i < mask.length; i++)
    if (w0[i] !== w1[i]) {
      mask[i] = 1;
      changed++;
    }
  return { name: 'model.layers.0.mlp.up_proj.weight', m, n, w0, w1, mask, changed, dtype0: 'F32', dtype1: 'F32', nonFinite: 0 };
}

function randomMatrix(seed: number, m: number, n: number, scale = 1): Float32Array {
  let s = seed;
  const out = new Float32Array(m * n);
  for (let i = 0; i < out.length; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out[i] = (s / 2147483648 - 0.5) * scale;
  }
  return out;
}

function allFinite(x: unknown, at = '$'): string[] {
  if (typeof x === 'number') return Number.isFinite(x) ? [] : [at];
  if (Array.isArray(x)) return x.flatMap((v, i) => allFinite(v, `${at}[${i}]`));
  if (x && typeof x === 'object') return Object.entries(x).flatMap(([k, v]) => allFinite(v, `${at}.${k}`));
  return [];
}

const spectralSettings = { ...DEFAULT_SETTINGS, k: 8, kSpectrum: 256 };

for (const [label, m, n] of [
  ['square, full SVD', 24, 24],
  ['rectangular, full SVD', 20, 36],
  ['square, randomized SVD', 300, 300],
] as const) {
  test(`analyzePair: a zero row, a zero column and entries near the float32 limit give finite measures (${label})`, async () => {
    const backend = createReferenceBackend();
    const w0 = randomMatrix(3, m, n);
    for (let j = 0; j < n; j++) w0[j] = 0; // zero row
    // A zero column too where the matrix is not square (on a square one the zero row alone is the case
    // that crashed: one null direction spread over every coordinate).
    if (m !== n) for (let i = 0; i < m; i++) w0[i * n + 1] = 0;
    const w1 = w0.map((x, i) => (i % 5 === 0 ? x + 0.01 : x));
    // k covering the whole short side (kSpectrum = all values) is the case that crashed on the full path.
    const settings = m <= 256 ? { ...spectralSettings, k: Math.min(m, n) } : spectralSettings;
    const r = await analyzePair(backend, pairOf(m, n, w0, w1), settings);
    assert.deepEqual(allFinite(r.spectral), []);
    assert.equal(r.spectral.svdMethod, m <= 256 ? 'full' : 'randomized');
    // The full path returns every value: a zero row leaves the square matrix rank-deficient.
    if (m === n && m <= 256) assert.ok(r.spectral.sigmaBase[m - 1] <= 1e-5 * r.spectral.sigmaBase[0], `smallest ${r.spectral.sigmaBase[m - 1]}`);
    // The same matrices scaled near the float32 limit (entries up to 2.5e38): every ratio is the same
    // and every measure with a unit scales with it.
    const big = 5e38;
    const rb = await analyzePair(
      backend,
      pairOf(
        m,
        n,
        w0.map((x) => x * big),
        w1.map((x) => x * big),
      ),
      settings,
    );
    assert.deepEqual(allFinite(rb.spectral), []);
    // Relative 1e-6 (float32 data, scaled); shares in [0, 1] also within 1e-6 absolute (k = the whole side makes them ~0).
    const close = (a: number, b: number, what: string, abs = 0): void =>
      assert.ok(Math.abs(a - b) <= 1e-6 * Math.max(Math.abs(a), Math.abs(b)) + abs, `${what}: ${a} vs ${b}`);
    close(rb.spectral.sigmaBase[0], r.spectral.sigmaBase[0] * big, 'sigma_1');
    close(rb.spectral.updateSpectralNorm, r.spectral.updateSpectralNorm * big, '||dW||_2');
    close(rb.spectral.nss, r.spectral.nss, 'NSS', 1e-6);
    close(rb.spectral.offPrincipalEnergy, r.spectral.offPrincipalEnergy, 'off-principal energy', 1e-6);
    assert.equal(rb.verdict.label, r.verdict.label);
  });
}

test('analyzePair: a zero base has no regime; the spectral pass skips it with the reason', async () => {
  const backend = createReferenceBackend();
  const m = 16;
  const n = 24;
  const r = await analyzePair(backend, pairOf(m, n, new Float32Array(m * n), randomMatrix(5, m, n)), spectralSettings);
  assert.equal(r.degenerate, ZERO_BASE);
  assert.equal(r.verdict.label, 'inconclusive');
  assert.deepEqual(allFinite(r.spectral), []);
  const base = {
    [UP]: { dtype: 'F32', shape: [m, n], data: f32Bytes(Array.from({ length: m * n }, () => 0)) },
    [Q]: { dtype: 'F32', shape: [m, n], data: f32Bytes(Array.from(randomMatrix(1, m, n))) },
  };
  const ckpt = {
    [UP]: { dtype: 'F32', shape: [m, n], data: f32Bytes(Array.from(randomMatrix(5, m, n))) },
    [Q]: { dtype: 'F32', shape: [m, n], data: f32Bytes(Array.from(randomMatrix(2, m, n))) },
  };
  const f = await pairOfFiles(base, ckpt);
  const full = await analyzeCheckpoint(f.base, f.ckpt, {
    settings: spectralSettings,
    passes: 'full',
    spectral: createSpectralPass(createReferenceBackend()),
    threads: 1,
  });
  const up = full.tensors.find((t) => t.name === UP)!;
  assert.equal(up.spectral, undefined);
  assert.equal(up.spectralSkipped, ZERO_BASE);
  assert.ok(full.tensors.find((t) => t.name === Q)!.spectral);
});

test('the full analysis of a checkpoint with NaN rows (zeroed for the spectral pass) does not fail', async () => {
  const m = 24;
  const n = 24;
  const w0 = Array.from(randomMatrix(11, m, n));
  const w1 = w0.map((x, i) => (i < n ? NaN : i % 4 === 0 ? x + 0.05 : x));
  const f = await pairOfFiles({ [UP]: { dtype: 'F32', shape: [m, n], data: f32Bytes(w0) } }, { [UP]: { dtype: 'F32', shape: [m, n], data: f32Bytes(w1) } });
  // k = 64 capped at 24: the whole side, on the full SVD path.
  const r = await analyzeCheckpoint(f.base, f.ckpt, {
    settings: DEFAULT_SETTINGS,
    passes: 'full',
    spectral: createSpectralPass(createReferenceBackend()),
    threads: 1,
  });
  const t = r.tensors[0];
  assert.equal(t.nonFinite, n);
  assert.ok(t.spectral);
  assert.deepEqual(allFinite(t.spectral), []);
  assert.equal(t.verdict?.label, 'inconclusive');
  assert.match(t.verdict.reason!, /non-finite/);
});

test('compare pairs like the diff: a torch.compile checkpoint beside a plain one is compared, a different model refused', async () => {
  const dir = await tempDir();
  const base = await writeFile(path.join(dir, 'base', 'model.safetensors'), validFile(model('')));
  const plain = await writeFile(path.join(dir, 'a', 'model.safetensors'), validFile(model('', 3)));
  const compiled = await writeFile(path.join(dir, 'b', 'model.safetensors'), validFile(model('_orig_mod.', 3)));
  const other = await writeFile(path.join(dir, 'c', 'model.safetensors'), validFile(model('', 3, ['encoder.w1', 'encoder.w2'])));
  const r = await compareRuns(base, [plain, compiled], { eta: 1e-3, labels: ['a', 'b'] });
  // The same update under two namings: every tensor compared, and the two masks identical (Jaccard 1).
  assert.equal(r.tensors.length, 4);
  assert.equal(r.jaccard[0][1], 1);
  assert.ok(r.runs[0].density > 0, 'the update is seen');
  await assert.rejects(
    compareRuns(base, [plain, other], { eta: 1e-3, labels: ['a', 'c'] }),
    (e: unknown) => e instanceof PairingError && /c\/model\.safetensors/.test(e.message),
  );
});
