import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { Checkpoint } from '../../src/formats/checkpoint';
import { SafetensorsFile } from '../../src/formats/safetensors';
import { decodeToFloat32, decodeToFloat64 } from '../../src/formats/dtype';
import { writeSafetensors, float32ToBf16Bytes, type TensorSpec } from '../../src/formats/writer';
import { qwenTensorSpecs, qwenConfig, gaussian, rng, type SyntheticShape } from '../../src/examples/synthetic';
import {
  scrambleCheckpoint,
  haarOrthogonal,
  hadamard,
  attentionGeometry,
  planLayer,
  type ScrambleOptions,
  type ScrambleSummary,
} from '../../src/transform/scramble';
import { exportMasks, type MaskKind } from '../../src/transform/mask';
import { bf16BitsOf, encodeFloatBits, encodeFromFloat64 } from '../../src/formats/encode';
import { TransformInputError } from '../../src/transform/guard';
import { createBackend, type ComputeBackend } from '../../src/compute/backend';
import { jacobiSvd } from '../../src/linalg/svd';
import { Rng } from '../../src/linalg/random';
import { main } from '../../src/cli';
import { tempDir } from '../support/st';

/** 4 query heads sharing 2 KV heads (grouped-query), head_dim 8. */
const TINY: SyntheticShape = { hidden: 32, intermediate: 48, layers: 3, heads: 4, kvHeads: 2, vocab: 16 };

/**
 * A tiny Qwen-style base with Gaussian weights; `extra` matrices get a decaying spectrum
 * (sum_r 0.7^r a_r b_r^T plus noise), like trained weights, so that their top-k subspace is well defined.
 */
async function writeBase(dir: string, dtype: 'BF16' | 'F32', shape: SyntheticShape = TINY, extra: TensorSpec[] = []): Promise<string> {
  const specs = [...qwenTensorSpecs(shape), ...extra].map((s) => ({ ...s, dtype }));
  const g = gaussian(rng(42));
  const values = new Map<string, Float32Array>();
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const isNorm = s.shape.length === 1 && !s.name.endsWith('bias');
    const v = Float32Array.from({ length: n }, () => (isNorm ? 1 + 0.05 * g() : 0.2 * g()));
    if (s.shape.length === 2 && extra.some((e) => e.name === s.name)) {
      const [m, c] = s.shape;
      for (let r = 0; r < 12; r++) {
        const a = Float64Array.from({ length: m }, () => g());
        const b = Float64Array.from({ length: c }, () => g());
        for (let i = 0; i < m; i++) for (let j = 0; j < c; j++) v[i * c + j] += 0.7 ** r * a[i] * b[j];
      }
    }
    values.set(s.name, v);
  }
  await fsp.mkdir(dir, { recursive: true });
  await writeSafetensors(
    path.join(dir, 'model.safetensors'),
    specs,
    (s) => (dtype === 'BF16' ? float32ToBf16Bytes(values.get(s.name)!) : new Uint8Array(values.get(s.name)!.buffer)),
    { metadata: { format: 'pt' } },
  );
  await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(qwenConfig(shape), null, 2));
  await fsp.writeFile(path.join(dir, 'generation_config.json'), '{"do_sample": false}');
  await fsp.writeFile(path.join(dir, 'tokenizer.json'), '{"version": "1.0"}');
  await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), '{}');
  return dir;
}

async function loadWeights(p: string): Promise<Map<string, Float64Array>> {
  const ck = await Checkpoint.open(p);
  try {
    const out = new Map<string, Float64Array>();
    for (const { file, info } of ck.tensors.values()) {
      const v = new Float64Array(info.numel);
      decodeToFloat64(info.dtype, await file.readElements(info, 0, info.numel), info.numel, v);
      out.set(info.name, v);
    }
    return out;
  } finally {
    await ck.close();
  }
}

async function rawTensors(p: string): Promise<Map<string, Buffer>> {
  const ck = await Checkpoint.open(p);
  try {
    const out = new Map<string, Buffer>();
    for (const { file, info } of ck.tensors.values()) out.set(info.name, Buffer.from(await file.readElements(info, 0, info.numel)));
    return out;
  } finally {
    await ck.close();
  }
}

/** y = x W^T + b for row-major x (T x n), W (m x n). */
function linear(x: Float64Array, T: number, W: Float64Array, m: number, n: number, b?: Float64Array): Float64Array {
  const y = new Float64Array(T * m);
  for (let t = 0; t < T; t++)
    for (let i = 0; i < m; i++) {
      let s = b ? b[i] : 0;
      for (let j = 0; j < n; j++) s += x[t * n + j] * W[i * n + j];
      y[t * m + i] = s;
    }
  return y;
}

/** HF rotate_half RoPE on every head of a T x (heads*d) activation, in place. */
function rope(x: Float64Array, T: number, heads: number, d: number, theta = 10000): void {
  const half = d / 2;
  for (let t = 0; t < T; t++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < half; i++) {
        const ang = t * theta ** (-(2 * i) / d);
        const o = t * heads * d + h * d;
        const a = x[o + i];
        const b = x[o + i + half];
        x[o + i] = a * Math.cos(ang) - b * Math.sin(ang);
        x[o + i + half] = b * Math.cos(ang) + a * Math.sin(ang);
      }
}

/** RMSNorm of each consecutive group of `w.length` features of a T-row activation, in place. */
function rmsNorm(x: Float64Array, T: number, width: number, w: Float64Array): void {
  for (let o = 0; o < T * width; o += w.length) {
    let ss = 0;
    for (let i = 0; i < w.length; i++) ss += x[o + i] ** 2;
    const r = 1 / Math.sqrt(ss / w.length + 1e-6);
    for (let i = 0; i < w.length; i++) x[o + i] *= r * w[i];
  }
}

/**
 * One self-attention block: q/k/v projections with biases, q/k norms when present (per head as in
 * Qwen3 or over all heads as in OLMo2), RoPE, grouped-query causal softmax attention, o_proj.
 */
function attentionBlock(W: Map<string, Float64Array>, layer: number, s: SyntheticShape, x: Float64Array, T: number): Float64Array {
  const p = `model.layers.${layer}.self_attn.`;
  const H = s.heads;
  const KV = s.kvHeads;
  const d = s.hidden / H;
  const G = H / KV;
  const q = linear(x, T, W.get(`${p}q_proj.weight`)!, H * d, s.hidden, W.get(`${p}q_proj.bias`));
  const k = linear(x, T, W.get(`${p}k_proj.weight`)!, KV * d, s.hidden, W.get(`${p}k_proj.bias`));
  const v = linear(x, T, W.get(`${p}v_proj.weight`)!, KV * d, s.hidden, W.get(`${p}v_proj.bias`));
  const qn = W.get(`${p}q_norm.weight`);
  const kn = W.get(`${p}k_norm.weight`);
  if (qn) rmsNorm(q, T, H * d, qn);
  if (kn) rmsNorm(k, T, KV * d, kn);
  rope(q, T, H, d);
  rope(k, T, KV, d);
  const att = new Float64Array(T * H * d);
  for (let j = 0; j < H; j++) {
    const h = Math.floor(j / G);
    for (let t = 0; t < T; t++) {
      const scores: number[] = [];
      for (let u = 0; u <= t; u++) {
        let dot = 0;
        for (let a = 0; a < d; a++) dot += q[t * H * d + j * d + a] * k[u * KV * d + h * d + a];
        scores.push(dot / Math.sqrt(d));
      }
      const mx = Math.max(...scores);
      const e = scores.map((z) => Math.exp(z - mx));
      const z = e.reduce((a, b) => a + b, 0);
      for (let u = 0; u <= t; u++) for (let a = 0; a < d; a++) att[t * H * d + j * d + a] += (e[u] / z) * v[u * KV * d + h * d + a];
    }
  }
  return linear(att, T, W.get(`${p}o_proj.weight`)!, s.hidden, H * d, W.get(`${p}o_proj.bias`));
}

function maxAbs(a: Float64Array): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}

function maxDiff(a: Float64Array, b: Float64Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function randomInput(T: number, n: number, seed: number): Float64Array {
  const r = new Rng(seed);
  return Float64Array.from({ length: T * n }, () => r.nextGaussian());
}

let dir: string;
let baseBf16: string;
let baseF32: string;
let backend: ComputeBackend;
before(async () => {
  process.env.ORT_DISABLE_TELEMETRY = '1';
  dir = await tempDir('gatescope-transform-');
  baseBf16 = await writeBase(path.join(dir, 'base-bf16'), 'BF16');
  baseF32 = await writeBase(path.join(dir, 'base-f32'), 'F32');
  backend = await createBackend({ device: 'cpu', threads: 1 });
});
after(async () => {
  await backend.dispose();
  await fsp.rm(dir, { recursive: true, force: true });
});

const MODES: [string, Pick<ScrambleOptions, 'rotate' | 'permute' | 'rotation'>][] = [
  ['rotate', { rotate: true, permute: false, rotation: 'haar' }],
  ['permute', { rotate: false, permute: true, rotation: 'haar' }],
  ['rotate+permute', { rotate: true, permute: true, rotation: 'haar' }],
  ['hadamard+permute', { rotate: true, permute: true, rotation: 'hadamard' }],
];

test('scrambled layers compute the same attention outputs (F32: tight; BF16: within bf16 rounding; permutations: exact)', async () => {
  const T = 6;
  const x = randomInput(T, TINY.hidden, 5);
  for (const [baseName, base] of [
    ['f32', baseF32],
    ['bf16', baseBf16],
  ] as const) {
    const W0 = await loadWeights(base);
    const raw0 = await rawTensors(base);
    for (const [label, mode] of MODES) {
      const out = path.join(dir, 'scr', `${baseName}-${label}`);
      const summary = await scrambleCheckpoint(base, { ...mode, layers: [0, 2], seed: 11, out });
      const W1 = await loadWeights(out);
      for (const layer of [0, 1, 2]) {
        const y0 = attentionBlock(W0, layer, TINY, x, T);
        const y1 = attentionBlock(W1, layer, TINY, x, T);
        const err = maxDiff(y0, y1) / maxAbs(y0);
        const tol = layer === 1 || !mode.rotate ? 1e-12 : baseName === 'f32' ? 1e-6 : 1e-2;
        assert.ok(err <= tol, `${baseName} ${label} layer ${layer}: relative error ${err} > ${tol}`);
      }
      if (mode.rotate) {
        // The check has teeth: the rotated values without the matching o_proj give a different function.
        const broken = new Map(W1).set('model.layers.0.self_attn.o_proj.weight', W0.get('model.layers.0.self_attn.o_proj.weight')!);
        const y0 = attentionBlock(W0, 0, TINY, x, T);
        assert.ok(maxDiff(y0, attentionBlock(broken, 0, TINY, x, T)) / maxAbs(y0) > 0.1);
      }
      // The geometry did change in the scrambled layers, and nothing else changed at all.
      const raw1 = await rawTensors(out);
      const changed = new Set(summary.changedTensors);
      for (const [name, bytes] of raw0) {
        if (changed.has(name)) assert.ok(!bytes.equals(raw1.get(name)!), `${label}: ${name} is listed as changed but is identical`);
        else assert.ok(bytes.equals(raw1.get(name)!), `${label}: ${name} changed but is not listed`);
      }
      const v = 'model.layers.0.self_attn.v_proj.weight';
      const q = 'model.layers.0.self_attn.q_proj.weight';
      const o = 'model.layers.0.self_attn.o_proj.weight';
      assert.equal(changed.has(v), true);
      assert.equal(changed.has(o), true);
      assert.equal(changed.has(q), mode.permute, `${label}: q changes only with permute`);
      assert.equal(changed.has('model.layers.1.self_attn.v_proj.weight'), false);
      assert.equal(changed.has('model.layers.0.self_attn.o_proj.bias'), false);
      if (mode.permute) {
        const L0 = summary.perLayer[0];
        assert.notDeepEqual(L0.kvPermutation, [0, 1], 'the KV permutation moves heads');
        // Query heads follow their KV head: group of new head j is old group kvPermutation[floor(j/G)].
        for (let j = 0; j < 4; j++) assert.equal(Math.floor(L0.queryPermutation[j] / 2), L0.kvPermutation[Math.floor(j / 2)]);
      }
    }
  }
});

test('q/k norms move with their heads (full-width, OLMo2-style; per-head, Qwen3-style); unknown attention tensors are refused', async () => {
  const T = 5;
  const x = randomInput(T, TINY.hidden, 8);
  const d = TINY.hidden / TINY.heads;
  const extra: TensorSpec[] = [
    { name: 'model.layers.0.self_attn.q_norm.weight', dtype: 'F32', shape: [TINY.heads * d] },
    { name: 'model.layers.0.self_attn.k_norm.weight', dtype: 'F32', shape: [TINY.kvHeads * d] },
    { name: 'model.layers.1.self_attn.q_norm.weight', dtype: 'F32', shape: [d] },
    { name: 'model.layers.1.self_attn.k_norm.weight', dtype: 'F32', shape: [d] },
  ];
  const base = await writeBase(path.join(dir, 'base-norms'), 'F32', TINY, extra);
  const W0 = await loadWeights(base);
  const out = path.join(dir, 'scr-norms');
  const summary = await scrambleCheckpoint(base, { layers: [0, 1], rotate: true, permute: true, rotation: 'haar', seed: 2, out });
  const W1 = await loadWeights(out);
  for (const layer of [0, 1]) {
    const y0 = attentionBlock(W0, layer, TINY, x, T);
    assert.ok(maxDiff(y0, attentionBlock(W1, layer, TINY, x, T)) / maxAbs(y0) < 1e-6, `layer ${layer}`);
  }
  assert.ok(summary.changedTensors.includes('model.layers.0.self_attn.q_norm.weight'));
  assert.ok(summary.changedTensors.includes('model.layers.0.self_attn.k_norm.weight'));
  assert.ok(!summary.changedTensors.includes('model.layers.1.self_attn.q_norm.weight'), 'a per-head norm is shared by all heads');
  const sinks = await writeBase(path.join(dir, 'base-sinks'), 'F32', TINY, [{ name: 'model.layers.0.self_attn.sinks', dtype: 'F32', shape: [TINY.heads] }]);
  await assert.rejects(
    scrambleCheckpoint(sinks, { layers: [0], rotate: false, permute: true, rotation: 'haar', seed: 1, out: path.join(dir, 'scr-sinks') }),
    /self_attn\.sinks is not understood/,
  );
});

test('the copy is a complete checkpoint: config and tokenizer copied, transform recorded in __metadata__ and SCRAMBLE.json', async () => {
  const out = path.join(dir, 'scr-record');
  const summary = await scrambleCheckpoint(baseBf16, { layers: [1], rotate: true, permute: true, rotation: 'haar', seed: 3, out });
  const entries = (await fsp.readdir(out)).sort();
  assert.deepEqual(entries, ['SCRAMBLE.json', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  assert.equal(await fsp.readFile(path.join(out, 'config.json'), 'utf8'), await fsp.readFile(path.join(baseBf16, 'config.json'), 'utf8'));
  const f = await SafetensorsFile.open(path.join(out, 'model.safetensors'));
  try {
    assert.equal(f.metadata.format, 'pt');
    const rec = JSON.parse(f.metadata['gatescope.scramble']) as {
      layers: number[];
      rotate: boolean;
      permute: boolean;
      rotation: string;
      seed: number;
      changed: string[];
    };
    assert.deepEqual(rec.layers, [1]);
    assert.equal(rec.rotation, 'haar');
    assert.equal(rec.seed, 3);
    assert.deepEqual(rec.changed, summary.changedTensors);
    for (const t of f.tensors.values()) assert.equal(t.dtype, 'BF16');
  } finally {
    await f.close();
  }
  const json = JSON.parse(await fsp.readFile(path.join(out, 'SCRAMBLE.json'), 'utf8')) as ScrambleSummary;
  assert.equal(json.kind, 'gatescope.scramble');
  assert.deepEqual(json.attention, { numHeads: 4, numKvHeads: 2, headDim: 8, groupSize: 2 });
  assert.deepEqual(json.changedTensors, [
    'model.layers.1.self_attn.k_proj.bias',
    'model.layers.1.self_attn.k_proj.weight',
    'model.layers.1.self_attn.o_proj.weight',
    'model.layers.1.self_attn.q_proj.bias',
    'model.layers.1.self_attn.q_proj.weight',
    'model.layers.1.self_attn.v_proj.bias',
    'model.layers.1.self_attn.v_proj.weight',
  ]);
  assert.equal(json.perLayer[0].rotationDistanceFromIdentity!.length, 2);
  // Same seed, same copy: the transform is reproducible, bit for bit.
  const again = path.join(dir, 'scr-record-again');
  await scrambleCheckpoint(baseBf16, { layers: [1], rotate: true, permute: true, rotation: 'haar', seed: 3, out: again });
  const [a, b] = await Promise.all([rawTensors(out), rawTensors(again)]);
  for (const [n, bytes] of a) assert.ok(bytes.equals(b.get(n)!), n);
});

test('scramble refuses: existing output, output inside the base, Hadamard without a power-of-two head_dim, unknown layers', async () => {
  const exists = path.join(dir, 'exists');
  await fsp.mkdir(exists);
  const opts = { layers: [0], rotate: true, permute: false, rotation: 'haar' as const, seed: 1 };
  await assert.rejects(scrambleCheckpoint(baseBf16, { ...opts, out: exists }), /already exists/);
  await assert.rejects(scrambleCheckpoint(baseBf16, { ...opts, out: path.join(baseBf16, 'scrambled') }), /inside the checkpoint folder/);
  await assert.rejects(
    scrambleCheckpoint(path.join(baseBf16, 'model.safetensors'), { ...opts, out: path.join(baseBf16, 'x') }),
    /inside the checkpoint folder/,
  );
  await assert.rejects(scrambleCheckpoint(baseBf16, { ...opts, layers: [7], out: path.join(dir, 'nope7') }), /layer 7 does not exist/);
  await assert.rejects(scrambleCheckpoint(baseBf16, { ...opts, rotate: false, out: path.join(dir, 'nothing') }), TransformInputError);
  const odd = await writeBase(path.join(dir, 'base-d12'), 'BF16', { hidden: 48, intermediate: 32, layers: 1, heads: 4, kvHeads: 2, vocab: 8 });
  await assert.rejects(scrambleCheckpoint(odd, { ...opts, rotation: 'hadamard', out: path.join(dir, 'had12') }), /power of two, got 12/);
  // Nothing was left behind by the refused or failed attempts.
  const left = (await fsp.readdir(dir)).filter((e) => e.startsWith('.') || /^(nope7|nothing|had12)$/.test(e));
  assert.deepEqual(left, []);
  assert.deepEqual((await fsp.readdir(baseBf16)).sort(), [
    'config.json',
    'generation_config.json',
    'model.safetensors',
    'tokenizer.json',
    'tokenizer_config.json',
  ]);
});

test('rotations are orthogonal; plans are seeded per layer', () => {
  for (const R of [haarOrthogonal(new Rng(9), 8), hadamard(8), hadamard(1)]) {
    const d = Math.round(Math.sqrt(R.length));
    for (let i = 0; i < d; i++)
      for (let j = 0; j < d; j++) {
        let s = 0;
        for (let r = 0; r < d; r++) s += R[r * d + i] * R[r * d + j];
        assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-12);
      }
  }
  const geom = attentionGeometry(qwenConfig(TINY));
  const a = planLayer(geom, 4, { rotate: true, permute: true, rotation: 'haar', seed: 7 });
  const b = planLayer(geom, 4, { rotate: true, permute: true, rotation: 'haar', seed: 7 });
  const c = planLayer(geom, 5, { rotate: true, permute: true, rotation: 'haar', seed: 7 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.rotations, c.rotations);
  assert.deepEqual(attentionGeometry({ num_attention_heads: 8, hidden_size: 64 }), { numHeads: 8, numKvHeads: 8, headDim: 8, groupSize: 1 });
});

test('float64 -> bf16/f16 encoding rounds once, to nearest even', () => {
  const r = new Rng(3);
  const xs = Float32Array.from({ length: 2000 }, () => r.nextGaussian() * 2 ** Math.floor(r.nextUniform() * 40 - 20));
  const viaF32 = new Uint16Array(float32ToBf16Bytes(xs).buffer);
  for (let i = 0; i < xs.length; i++) assert.equal(encodeFloatBits(xs[i], 8, 7), viaF32[i]);
  // A value just above a bf16 midpoint by less than a float32 ulp: rounding through float32 would tie to even (down).
  assert.equal(encodeFloatBits(1 + 2 ** -8 + 2 ** -40, 8, 7), 0x3f81);
  assert.equal(encodeFloatBits(1 + 2 ** -8, 8, 7), 0x3f80);
  assert.equal(encodeFloatBits(-0, 8, 7), 0x8000);
  assert.equal(encodeFloatBits(1e39, 8, 7), 0x7f80);
  // Every finite f16 value round-trips exactly.
  const all = new Uint16Array(65536).map((_, i) => i);
  const dec = new Float32Array(65536);
  decodeToFloat32('F16', new Uint8Array(all.buffer), 65536, dec);
  for (let h = 0; h < 65536; h++) if (Number.isFinite(dec[h])) assert.equal(encodeFloatBits(dec[h], 5, 10), h, `f16 ${h.toString(16)}`);
  assert.equal(encodeFloatBits(65520, 5, 10), 0x7c00);
  assert.equal(encodeFloatBits(65519.99, 5, 10), 0x7bff);
  assert.deepEqual([...new Float64Array(encodeFromFloat64('F64', Float64Array.of(Math.PI)).buffer)], [Math.PI]);
});

test("the fast float64 -> bf16 rounding equals the general one: every bf16 value, its midpoints and their neighbours, carries, the range's edges", () => {
  const xs: number[] = [
    0,
    -0,
    Infinity,
    -Infinity,
    NaN,
    1e39,
    -1e39,
    2 ** -126,
    2 ** -127,
    2 ** -140,
    3.3895313892515355e38,
    3.3961e38,
    3.4e38,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
  ];
  const bits = new Uint32Array(1);
  const f = new Float32Array(bits.buffer);
  for (let h = 0; h < 0x10000; h++) {
    bits[0] = h << 16;
    const v = f[0];
    if (!Number.isFinite(v)) continue;
    bits[0] = (h + 1) << 16;
    const next = f[0];
    xs.push(v);
    if (!Number.isFinite(next) || Math.sign(next) !== Math.sign(v) || next === 0) continue;
    // The midpoint to the next bf16 value (a tie: to even), and float64 neighbours on either side of it.
    const mid = (v + next) / 2;
    xs.push(mid, mid + Math.abs(mid) * 2 ** -50, mid - Math.abs(mid) * 2 ** -50, mid + Math.abs(mid) * 2 ** -30);
  }
  const r = new Rng(5);
  for (let i = 0; i < 100_000; i++) xs.push(r.nextGaussian() * 2 ** Math.floor(r.nextUniform() * 300 - 150));
  for (const x of xs) assert.equal(bf16BitsOf(x), encodeFloatBits(x, 8, 7), `${x}`);
  const values = Float64Array.from(xs);
  assert.deepEqual(
    new Uint16Array(encodeFromFloat64('BF16', values).buffer),
    Uint16Array.from(xs, (x) => encodeFloatBits(x, 8, 7)),
  );
});

// ---------------------------------------------------------------------------------------------
// Masks

/** The bottom `count` of |w| by sort, ties by index: an independent L. */
function lowBySort(w: Float64Array, count: number): Uint8Array {
  const idx = Array.from(w.keys()).sort((a, b) => Math.abs(Math.fround(w[a])) - Math.abs(Math.fround(w[b])) || a - b);
  const m = new Uint8Array(w.length);
  for (let i = 0; i < count; i++) m[idx[i]] = 1;
  return m;
}

async function maskTensors(file: string): Promise<Map<string, { shape: number[]; m: Uint8Array }>> {
  const f = await SafetensorsFile.open(file);
  try {
    const out = new Map<string, { shape: number[]; m: Uint8Array }>();
    for (const info of f.tensors.values()) {
      assert.equal(info.dtype, 'U8', info.name);
      out.set(info.name, { shape: info.shape, m: Uint8Array.from(await f.readElements(info, 0, info.numel)) });
    }
    return out;
  } finally {
    await f.close();
  }
}

test('masks: exact P and L counts, union = L or not P, linear weights only, readable U8 files', async () => {
  const extra: TensorSpec[] = [{ name: 'model.layers.0.mlp.wide_proj.weight', dtype: 'BF16', shape: [300, 320] }];
  const base = await writeBase(path.join(dir, 'mbase'), 'BF16', TINY, extra);
  const W = await loadWeights(base);
  const shapes = new Map([...qwenTensorSpecs(TINY), ...extra].map((t) => [t.name, t.shape]));
  const alpha = 0.3;
  const k = 4;
  const files = {} as Record<MaskKind, Map<string, { shape: number[]; m: Uint8Array }>>;
  for (const kind of ['principal', 'nonprincipal', 'low', 'union'] as const) {
    const out = path.join(dir, 'masks', `${kind}.safetensors`);
    const s = await exportMasks(base, { kind, alpha, k, out, backend });
    files[kind] = await maskTensors(out);
    assert.equal(s.tensors.length, files[kind].size);
    if (kind === 'union') {
      // The summary's densities are the file's.
      let ones = 0;
      let n = 0;
      for (const { m } of files.union.values()) {
        for (const b of m) ones += b;
        n += m.length;
      }
      assert.equal(s.density, ones / n);
      assert.ok(s.byModule.q && s.byModule.down && !s.byModule.embed && !s.byModule.head);
    }
  }
  const names = [...files.principal.keys()].sort();
  const expected = [...W.keys()].filter((n) => /(q|k|v|o|gate|up|down|wide)_proj\.weight$/.test(n)).sort();
  assert.deepEqual(names, expected, 'linear weights only: no embeddings, head, norms or biases');
  for (const name of names) {
    const w = W.get(name)!;
    const n = w.length;
    const count = Math.round(alpha * n);
    const P = files.principal.get(name)!.m;
    const L = files.low.get(name)!.m;
    const NP = files.nonprincipal.get(name)!.m;
    const U = files.union.get(name)!.m;
    for (const kind of ['principal', 'nonprincipal', 'low', 'union'] as const)
      assert.deepEqual(files[kind].get(name)!.shape, shapes.get(name), `${kind} ${name}: same shape as the weight`);
    const sum = (m: Uint8Array): number => m.reduce((a, b) => a + b, 0);
    assert.ok([P, L, NP, U].every((m) => m.every((b) => b === 0 || b === 1)));
    assert.equal(sum(P), count, `${name}: |P| = round(alpha n)`);
    assert.equal(sum(L), count, `${name}: |L| = round(alpha n)`);
    assert.equal(sum(NP), n - count);
    assert.deepEqual(L, lowBySort(w, count), `${name}: L is the bottom alpha of |W0|`);
    let union = 0;
    for (let i = 0; i < n; i++) {
      assert.equal(NP[i], 1 - P[i]);
      const u = L[i] | (1 - P[i]);
      assert.equal(U[i], u);
      union += u;
    }
    assert.equal(sum(U) / n, union / n);
    // P against an independent float64 rank-k reconstruction (Jacobi SVD): the same entries up to near-ties.
    const [m, c] = files.principal.get(name)!.shape;
    const svd = jacobiSvd(w, m, c);
    const rec = new Float64Array(n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < c; j++) {
        let s = 0;
        for (let r = 0; r < Math.min(k, svd.p); r++) s += svd.U[i * svd.p + r] * svd.S[r] * svd.V[j * svd.p + r];
        rec[i * c + j] = Math.abs(s);
      }
    const order = Array.from(rec.keys()).sort((a, b) => rec[b] - rec[a]);
    let agree = 0;
    for (let i = 0; i < count; i++) agree += P[order[i]];
    assert.ok(agree / count > 0.99, `${name}: P agrees with the float64 reconstruction on ${agree}/${count}`);
  }
});

test('masks: --all-modules adds embeddings and head; outputs never inside a checkpoint folder; CLI prints densities', async () => {
  const base = path.join(dir, 'base-bf16');
  const all = await exportMasks(base, { kind: 'low', alpha: 0.5, k: 8, allModules: true, out: path.join(dir, 'm-all.safetensors') });
  assert.ok(all.byModule.embed && all.byModule.head);
  assert.equal(all.device, 'none (no SVD needed)');
  await assert.rejects(exportMasks(base, { kind: 'union', alpha: 0.5, k: 8, out: path.join(base, 'm.safetensors'), backend }), /inside the checkpoint folder/);
  await assert.rejects(
    exportMasks(base, { kind: 'union', alpha: 0.5, k: 8, out: path.join(dir, 'base-f32', 'sub', 'm.safetensors'), backend }),
    /inside the checkpoint folder/,
  );
  await assert.rejects(exportMasks(base, { kind: 'union', alpha: 0.5, k: 8, out: path.join(dir, 'm-all.safetensors'), backend }), /already exists/);

  const logs: string[] = [];
  const errs: string[] = [];
  const [log, error] = [console.log, console.error];
  console.log = (...a: unknown[]) => void logs.push(a.join(' '));
  console.error = (...a: unknown[]) => void errs.push(a.join(' '));
  try {
    const out = path.join(dir, 'cli-masks.safetensors');
    assert.equal(
      await main(['mask', base, '--kind', 'principal', '--alpha', '0.25', '--k', '4', '--device', 'cpu', '--quiet', '--out', out]),
      0,
      errs.join('\n'),
    );
    assert.match(logs.join('\n'), /q\s+3\s+3,072\s+768\s+25\.00%/);
    assert.match(logs.join('\n'), /all\s+21\s/);
    assert.equal(await main(['mask', base, '--kind', 'bogus', '--out', path.join(dir, 'b.safetensors')]), 2);
    assert.equal(await main(['mask', base, '--out', path.join(base, 'inside.safetensors')]), 2);
    const scr = path.join(dir, 'cli-scrambled');
    assert.equal(await main(['scramble', base, '--layers', '0-1', '--rotate', '--permute', '--seed', '4', '--out', scr]), 0, errs.join('\n'));
    assert.match(logs.join('\n'), /layer 1: 7 tensors changed/);
    assert.equal(await main(['scramble', base, '--layers', '0', '--out', path.join(dir, 'none')]), 2);
    assert.equal(await main(['scramble', base, '--layers', 'x', '--rotate', '--out', path.join(dir, 'none')]), 2);
    assert.equal(await main(['scramble', base, '--layers', '0', '--rotate', '--out', scr]), 2);
    assert.match(errs.join('\n'), /already exists/);
  } finally {
    console.log = log;
    console.error = error;
  }
});
