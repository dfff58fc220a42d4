import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { analyzeCheckpoint } from '../../src/analysis/analyze';
import { createSpectralPass } from '../../src/analysis/spectral';
import { createReferenceBackend } from '../../src/compute/reference-backend';
import { Checkpoint } from '../../src/formats/checkpoint';
import { CheckpointFormatError } from '../../src/formats/errors';
import { decodeToFloat64 } from '../../src/formats/dtype';
import { encodeFloatBits } from '../../src/formats/encode';
import { patternValue } from '../../src/formats/adapter-config';
import { scanFolder } from '../../src/discovery/scan';
import { DEFAULT_SETTINGS, type CheckpointReport, type TensorDiff } from '../../src/report/schema';
import { writeSyntheticRun, rng } from '../../src/examples/synthetic';
import { f32Bytes, tempDir, validFile, type RawTensor } from '../support/st';
import { runCli } from '../support/cli';
import { EngineClient } from '../../src/engine/client';
import { AnalysisPlan, needsOf } from '../../src/analysis/plan';
import { jacobiSvd } from '../../src/linalg/svd';
import { principalAnglesDeg } from '../../src/linalg/angles';
import { maxAbsDifference } from '../../src/examples/planted-spectra';

const WORKER = path.resolve(__dirname, '..', '..', '..', 'dist', 'worker.js');

const SETTINGS = { ...DEFAULT_SETTINGS, k: 8, kSpectrum: 16 };
const full = () => ({ settings: SETTINGS, passes: 'full' as const, spectral: createSpectralPass(createReferenceBackend()), threads: 1 });

interface Factors {
  module: string;
  a: number[][]; // r x in
  b: number[][]; // out x r
}

/** The base's tensors as float64, by name. */
async function baseValues(base: string): Promise<Map<string, { shape: number[]; dtype: string; v: Float64Array }>> {
  const c = await Checkpoint.open(base);
  try {
    const out = new Map<string, { shape: number[]; dtype: string; v: Float64Array }>();
    for (const [name, ref] of c.tensors) {
      const v = new Float64Array(ref.info.numel);
      decodeToFloat64(ref.info.dtype, await ref.file.readElements(ref.info, 0, ref.info.numel), ref.info.numel, v);
      out.set(name, { shape: ref.info.shape, dtype: ref.info.dtype, v });
    }
    return out;
  } finally {
    await c.close();
  }
}

function gaussianMatrix(rows: number, cols: number, scale: number, next: () => number): number[][] {
  return Array.from({ length: rows }, () =>
    Array.from({ length: cols }, () => {
      const u = Math.max(next(), 1e-12);
      // Stored as float32: the reference uses the values the file holds.
      return Math.fround(scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next()));
    }),
  );
}

/** The dense update s * B @ A (or its transpose), the slow way: one float64 dot product per entry. */
function denseUpdate(f: Factors, scale: number, transposed: boolean): number[][] {
  const out = f.b.length;
  const inDim = f.a[0].length;
  const r = f.a.length;
  const d = Array.from({ length: out }, (_, i) =>
    Array.from({ length: inDim }, (_, j) => {
      let s = 0;
      for (let k = 0; k < r; k++) s += f.b[i][k] * f.a[k][j];
      return scale * s;
    }),
  );
  return transposed ? d[0].map((_, j) => d.map((row) => row[j])) : d;
}

interface AdapterSpec {
  r: number;
  alpha: number;
  modules: string[];
  config?: Record<string, unknown>;
  seed?: number;
  /** The size of B's entries: RL-sized updates change few bf16 entries, larger ones most. */
  bScale?: number;
}

/**
 * Writes a PEFT-style LoRA adapter over `base` into `dir`, and beside it (in `mergedDir`) the dense
 * reference: the base with each targeted weight replaced by bf16(W0 + s B A), computed entry by entry.
 */
async function writeAdapter(base: string, dir: string, mergedDir: string | undefined, spec: AdapterSpec): Promise<{ factors: Factors[]; scale: number }> {
  const values = await baseValues(base);
  const next = rng(spec.seed ?? 5);
  const rslora = spec.config?.use_rslora === true;
  const fifo = spec.config?.fan_in_fan_out === true;
  const scale = rslora ? spec.alpha / Math.sqrt(spec.r) : spec.alpha / spec.r;
  const tensors: Record<string, RawTensor> = {};
  const factors: Factors[] = [];
  for (const name of [...values.keys()].sort()) {
    const module = name.replace(/\.weight$/, '');
    if (!spec.modules.some((m) => module.endsWith(`.${m}`)) || !name.endsWith('.weight')) continue;
    const [rows, cols] = values.get(name)!.shape;
    const [out, inDim] = fifo ? [cols, rows] : [rows, cols];
    const f: Factors = { module, a: gaussianMatrix(spec.r, inDim, 0.05, next), b: gaussianMatrix(out, spec.r, spec.bScale ?? 0.01, next) };
    factors.push(f);
    tensors[`base_model.model.${module}.lora_A.weight`] = { dtype: 'F32', shape: [spec.r, inDim], data: f32Bytes(f.a.flat()) };
    tensors[`base_model.model.${module}.lora_B.weight`] = { dtype: 'F32', shape: [out, spec.r], data: f32Bytes(f.b.flat()) };
  }
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'adapter_model.safetensors'), validFile(tensors));
  const config = {
    peft_type: 'LORA',
    r: spec.r,
    lora_alpha: spec.alpha,
    target_modules: spec.modules,
    base_model_name_or_path: path.relative(dir, base),
    ...spec.config,
  };
  await fsp.writeFile(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
  if (mergedDir) {
    const merged: Record<string, RawTensor> = {};
    for (const [name, t] of values) {
      const f = factors.find((x) => `${x.module}.weight` === name);
      const bits = new Uint16Array(t.v.length);
      const d = f ? denseUpdate(f, scale, fifo).flat() : undefined;
      for (let i = 0; i < t.v.length; i++) bits[i] = encodeFloatBits(t.v[i] + (d ? d[i] : 0), 8, 7);
      merged[name] = { dtype: t.dtype, shape: t.shape, data: new Uint8Array(bits.buffer) };
    }
    await fsp.mkdir(mergedDir, { recursive: true });
    await fsp.writeFile(path.join(mergedDir, 'model.safetensors'), validFile(merged));
  }
  return { factors, scale };
}

/** Every tensor of a safetensors file, as raw entries to write back changed. */
async function entriesOf(file: string): Promise<Record<string, RawTensor>> {
  const c = await Checkpoint.open(file);
  try {
    const entries: Record<string, RawTensor> = {};
    for (const [name, ref] of c.tensors)
      entries[name] = { dtype: ref.info.dtype, shape: ref.info.shape, data: await ref.file.readElements(ref.info, 0, ref.info.numel) };
    return entries;
  } finally {
    await c.close();
  }
}

/** A tensor's numbers without what only an adapter report has. */
function plain(t: TensorDiff): unknown {
  const copy: Partial<TensorDiff> = { ...t };
  delete copy.adapter;
  return copy;
}

function frobenius(d: number[][]): number {
  return Math.sqrt(d.flat().reduce((s, x) => s + x * x, 0));
}

/** ||D||_2 by power iteration on D^T D, to convergence. */
function spectralNormDense(d: number[][]): number {
  let v = d[0].map((_, j) => Math.cos(j + 1));
  let sigma = 0;
  for (let it = 0; it < 5000; it++) {
    const u = d.map((row) => row.reduce((s, x, j) => s + x * v[j], 0));
    const w = d[0].map((_, j) => d.reduce((s, row, i) => s + row[j] * u[i], 0));
    const n = Math.sqrt(w.reduce((s, x) => s + x * x, 0));
    v = w.map((x) => x / n);
    const next = Math.sqrt(n);
    if (Math.abs(next - sigma) <= 1e-15 * next) break;
    sigma = next;
  }
  return sigma;
}

const OVERLAPS = [
  'overlapPrincipal',
  'overlapPrincipalBaseline',
  'overlapPrincipalExpectedPrecision',
  'overlapLowMagnitude',
  'overlapLowMagnitudeBaseline',
  'overlapLowMagnitudeExpectedPrecision',
  'overlapPrincipalNotLow',
] as const;

interface ExactGateTwo {
  anglesLeftDeg: Float64Array;
  anglesRightDeg: Float64Array;
  nss: number;
  offPrincipalEnergy: number;
  offPrincipalEnergyLeft: number;
  offPrincipalEnergyRight: number;
  firstOrder: Float64Array;
  sigma1: Float64Array;
  stableRankCheckpoint: number;
}

/** The Gate II measures of W1 = W0 + D from exact float64 SVDs of both (small matrices only). */
function exactGateTwo(w0: Float64Array, d: ArrayLike<number>, m: number, n: number, k: number, kk: number): ExactGateTwo {
  const w1 = w0.map((x, i) => x + d[i]);
  const s0 = jacobiSvd(w0, m, n);
  const s1 = jacobiSvd(w1, m, n);
  const p = s0.p;
  const cols = (X: Float64Array, rows: number) => {
    const out = new Float64Array(rows * k);
    for (let r = 0; r < rows; r++) for (let c = 0; c < k; c++) out[r * k + c] = X[r * p + c];
    return out;
  };
  const [U0, V0, U1, V1] = [cols(s0.U, m), cols(s0.V, n), cols(s1.U, m), cols(s1.V, n)];
  let fro2 = 0;
  for (let i = 0; i < m * n; i++) fro2 += d[i] ** 2;
  // U0^T D (k x n), D V0 (m x k), U0^T D V0 (k x k), entry by entry.
  const UtD = new Float64Array(k * n);
  for (let c = 0; c < k; c++) for (let j = 0; j < n; j++) for (let i = 0; i < m; i++) UtD[c * n + j] += U0[i * k + c] * d[i * n + j];
  const DV = new Float64Array(m * k);
  for (let i = 0; i < m; i++) for (let c = 0; c < k; c++) for (let j = 0; j < n; j++) DV[i * k + c] += d[i * n + j] * V0[j * k + c];
  const UtDV = new Float64Array(k * k);
  for (let a = 0; a < k; a++) for (let c = 0; c < k; c++) for (let j = 0; j < n; j++) UtDV[a * k + c] += UtD[a * n + j] * V0[j * k + c];
  const sq = (x: Float64Array) => x.reduce((a, v) => a + v * v, 0);
  let num = 0;
  let den = 0;
  for (let i = 0; i < Math.min(kk, p); i++) {
    num += (s1.S[i] - s0.S[i]) ** 2;
    den += s0.S[i] ** 2;
  }
  return {
    anglesLeftDeg: principalAnglesDeg(U0, U1, m, k),
    anglesRightDeg: principalAnglesDeg(V0, V1, n, k),
    nss: Math.sqrt(num / den),
    offPrincipalEnergy: 1 - sq(UtDV) / fro2,
    offPrincipalEnergyLeft: 1 - sq(UtD) / fro2,
    offPrincipalEnergyRight: 1 - sq(DV) / fro2,
    firstOrder: Float64Array.from({ length: k }, (_, i) => UtDV[i * k + i]),
    sigma1: s1.S,
    stableRankCheckpoint: sq(w1) / s1.S[0] ** 2,
  };
}

function assertGateTwo(name: string, sp: NonNullable<TensorDiff['spectral']>, x: ExactGateTwo): void {
  const angleErr = Math.max(maxAbsDifference(sp.principalAnglesLeftDeg, x.anglesLeftDeg), maxAbsDifference(sp.principalAnglesRightDeg, x.anglesRightDeg));
  assert.ok(angleErr <= 2e-3, `${name}: angles off by ${angleErr} deg`);
  assert.ok(Math.abs(sp.nss - x.nss) <= 1e-3 * x.nss, `${name}: NSS ${sp.nss} vs exact ${x.nss}`);
  for (const key of ['offPrincipalEnergy', 'offPrincipalEnergyLeft', 'offPrincipalEnergyRight'] as const)
    assert.ok(Math.abs(sp[key] - x[key]) <= 1e-6, `${name}: ${key} ${sp[key]} vs exact ${x[key]}`);
  const foScale = Math.max(...x.firstOrder.map(Math.abs));
  assert.ok(maxAbsDifference(sp.principalShiftFirstOrder, x.firstOrder) <= 1e-5 * foScale, `${name}: first-order shifts`);
  assert.ok(Math.abs(sp.sigmaCheckpoint[0] - x.sigma1[0]) <= 1e-6 * x.sigma1[0], `${name}: sigma_1 of W0 + dW`);
  assert.ok(Math.abs(sp.stableRankCheckpoint - x.stableRankCheckpoint) <= 1e-5 * x.stableRankCheckpoint, `${name}: stable rank`);
}

test('a LoRA adapter is analysed as its merge into the base (M1, masks) and as its exact update (Gate II): every number equals a dense reference, under the base names, with exact update norms', async () => {
  const dir = await tempDir();
  const { base } = await writeSyntheticRun(path.join(dir, 'ex'), { seed: 21 });
  const adapter = path.join(dir, 'lora', 'checkpoint-50');
  const merged = path.join(dir, 'merged');
  const { factors, scale } = await writeAdapter(base, adapter, merged, { r: 4, alpha: 8, modules: ['q_proj', 'v_proj', 'down_proj'] });
  const a = await analyzeCheckpoint(base, adapter, full());
  const m = await analyzeCheckpoint(base, merged, full());
  const base64 = await baseValues(base);
  // On two diff threads (each builds the view over the borrowed base and adapter file): the same numbers.
  const a2 = await analyzeCheckpoint(base, adapter, { ...full(), passes: 'diff', threads: 2 });
  assert.deepEqual(a2.summary, a.summary);
  assert.deepEqual(
    a2.tensors.map((t) => ({ ...t, spectral: undefined, verdict: undefined, spectralSkipped: undefined })),
    a.tensors.map((t) => ({ ...t, spectral: undefined, verdict: undefined, spectralSkipped: undefined })),
  );
  // The diff pass covers the whole merged model: the same tensors, numbers and summary.
  assert.deepEqual(a.summary, m.summary);
  assert.deepEqual(a.mismatches, m.mismatches);
  const targets = factors.map((f) => `${f.module}.weight`);
  assert.deepEqual(a.adapter?.targets, targets);
  assert.equal(a.adapter?.r, 4);
  assert.equal(a.adapter?.loraAlpha, 8);
  assert.match(a.notes?.join(' ') ?? '', /LoRA adapter .*r = 4, alpha = 8.* on 6 weights.*merged into the base.*BF16.*what merging would change/);
  for (const t of a.tensors) {
    const ref = m.tensors.find((x) => x.name === t.name)!;
    if (targets.includes(t.name)) {
      // A targeted weight: the diff as on the dense merge, and the changed mask's overlaps (M7) too.
      const withoutSpectra = (x: TensorDiff) => ({ ...(plain(x) as TensorDiff), spectral: undefined, verdict: undefined });
      assert.deepEqual(withoutSpectra(t), withoutSpectra(ref), t.name);
      assert.ok(t.spectral && t.verdict && ref.spectral, `${t.name} has spectral measures`);
      assert.ok(t.changed > 0, `${t.name} changed`);
      for (const key of OVERLAPS) assert.equal(t.spectral[key], ref.spectral[key], `${t.name} ${key}`);
      const f = factors.find((x) => `${x.module}.weight` === t.name)!;
      const d = denseUpdate(f, scale, false);
      // The Gate II measures are of the exact update W0 + s B A, not of its bf16 rounding: a float64 reference.
      const w0 = base64.get(t.name)!;
      const exact = exactGateTwo(w0.v, d.flat(), w0.shape[0], w0.shape[1], SETTINGS.k, SETTINGS.kSpectrum);
      assertGateTwo(t.name, t.spectral, exact);
      assert.equal(t.adapter?.rank, 4);
      assert.equal(t.adapter?.scale, 2);
      assert.ok(Math.abs(t.adapter.updateNormFro - frobenius(d)) <= 1e-12 * frobenius(d), `${t.name} ||dW||_F`);
      const s2 = spectralNormDense(d);
      assert.ok(Math.abs(t.adapter.updateSpectralNorm - s2) <= 1e-9 * s2, `${t.name} ||dW||_2 ${t.adapter.updateSpectralNorm} vs ${s2}`);
    } else {
      // Untouched: unchanged, and no spectrum to compare.
      assert.equal(t.changed, 0, t.name);
      assert.equal(t.adapter, undefined);
      assert.deepEqual(
        { ...t, spectral: undefined, verdict: undefined, spectralSkipped: undefined },
        { ...ref, spectral: undefined, verdict: undefined, spectralSkipped: undefined },
      );
      if (ref.spectral)
        assert.match(t.spectralSkipped ?? `${t.name} ${!!t.spectral} ${ref.spectralSkipped}`, /not updated by the adapter \(it updates 6 weights\)/);
    }
  }
  // The memory guard counts the merge's scratch of a whole-weight read (base bytes, float64 sums, encoding).
  const pa = await AnalysisPlan.open(base, adapter, 'full');
  const pm = await AnalysisPlan.open(base, merged, 'full');
  try {
    const need = (plan: AnalysisPlan, name: string) => needsOf(plan.pair(name)!).find((n) => n.pass === 'spectral')!.bytes;
    for (const name of targets) assert.equal(need(pa, name) - need(pm, name), pa.pair(name)!.base.info.numel * (2 * 2 + 8), name);
  } finally {
    await pa.close();
    await pm.close();
  }
  // M1 of a targeted weight from the slow reference: bf16 bits that merging changes (+0 == -0).
  const q = factors[0];
  const w0 = base64.get(`${q.module}.weight`)!;
  const d = denseUpdate(q, scale, false).flat();
  let changed = 0;
  for (let i = 0; i < d.length; i++) {
    const b0 = encodeFloatBits(w0.v[i], 8, 7);
    const b1 = encodeFloatBits(w0.v[i] + d[i], 8, 7);
    if (b0 !== b1 && !((b0 | b1) === 0x8000 && (b0 & 0x7fff) === 0 && (b1 & 0x7fff) === 0)) changed++;
  }
  assert.equal(a.tensors.find((t) => t.name === `${q.module}.weight`)!.changed, changed);
});

test('adapter options: rsLoRA, rank and alpha patterns, fan_in_fan_out, modules_to_save', async () => {
  const dir = await tempDir();
  const { base } = await writeSyntheticRun(path.join(dir, 'ex'), { seed: 22 });
  // rsLoRA and patterns: v_proj at rank 2 with its own alpha.
  const rs = path.join(dir, 'rs');
  await writeAdapter(base, rs, undefined, { r: 4, alpha: 8, modules: ['q_proj'], config: { use_rslora: true } });
  const r1 = await analyzeCheckpoint(base, rs, { settings: SETTINGS, passes: 'diff' });
  const q = r1.tensors.find((t) => t.adapter)!;
  assert.equal(q.adapter!.scale, 8 / Math.sqrt(4));
  assert.equal(patternValue({ 'layers\\.0\\..*v_proj': 2, v_proj: 3 }, 'model.layers.0.self_attn.v_proj', 4), 2);
  assert.equal(patternValue({ 'layers\\.0\\..*v_proj': 2, v_proj: 3 }, 'model.layers.1.self_attn.v_proj', 4), 3);
  assert.equal(patternValue({ v_proj: 3 }, 'model.layers.1.self_attn.q_proj', 4), 4);
  // fan_in_fan_out: the factors make the transpose of the stored weight (square q_proj here), checked against the dense merge.
  const fifo = path.join(dir, 'fifo');
  const fifoMerged = path.join(dir, 'fifo-merged');
  await writeAdapter(base, fifo, fifoMerged, { r: 2, alpha: 2, modules: ['q_proj'], config: { fan_in_fan_out: true }, bScale: 0.05 });
  const f1 = await analyzeCheckpoint(base, fifo, { settings: SETTINGS, passes: 'diff' });
  const f2 = await analyzeCheckpoint(base, fifoMerged, { settings: SETTINGS, passes: 'diff' });
  assert.deepEqual(
    f1.tensors.map((t) => plain(t)),
    f2.tensors,
  );
  // modules_to_save: a full tensor in the adapter file replaces the base's, under the model's name.
  const saved = path.join(dir, 'saved');
  await writeAdapter(base, saved, undefined, { r: 2, alpha: 4, modules: ['q_proj'], config: { modules_to_save: ['lm_head'] } });
  const values = await baseValues(base);
  const head = values.get('lm_head.weight');
  if (head) {
    const file = path.join(saved, 'adapter_model.safetensors');
    const entries = await entriesOf(file);
    const bits = new Uint16Array(head.v.length);
    for (let i = 0; i < bits.length; i++) bits[i] = encodeFloatBits(i % 5 === 0 ? head.v[i] * 1.5 : head.v[i], 8, 7);
    entries['base_model.model.lm_head.weight'] = { dtype: 'BF16', shape: head.shape, data: new Uint8Array(bits.buffer) };
    await fsp.writeFile(file, validFile(entries));
    const r = await analyzeCheckpoint(base, saved, { settings: SETTINGS, passes: 'diff' });
    assert.deepEqual(r.adapter?.saved, ['lm_head.weight']);
    const t = r.tensors.find((x) => x.name === 'lm_head.weight')!;
    const want = Array.from(head.v).filter((x, i) => i % 5 === 0 && encodeFloatBits(x * 1.5, 8, 7) !== encodeFloatBits(x, 8, 7)).length;
    assert.equal(t.changed, want);
  }
});

async function refusal(base: string, ckpt: string, pattern: RegExp, file?: string, opts: { residualBase?: boolean } = {}): Promise<void> {
  await assert.rejects(analyzeCheckpoint(base, ckpt, { settings: SETTINGS, passes: 'diff', ...opts }), (e: unknown) => {
    assert.ok(e instanceof CheckpointFormatError, String(e));
    assert.equal(e.problem, 'adapter');
    if (file) assert.equal(e.file, file);
    assert.match(e.message, pattern);
    return true;
  });
}

test('bad adapters are refused naming the file, the tensor and the problem; DoRA and PiSSA are not read as plain LoRA', async () => {
  const dir = await tempDir();
  const { base } = await writeSyntheticRun(path.join(dir, 'ex'), { seed: 23 });
  const make = async (name: string, spec: Partial<AdapterSpec> = {}): Promise<string> => {
    const p = path.join(dir, name);
    await writeAdapter(base, p, undefined, { r: 4, alpha: 8, modules: ['q_proj'], ...spec });
    return p;
  };
  const noConfig = await make('no-config');
  await fsp.rm(path.join(noConfig, 'adapter_config.json'));
  await refusal(base, noConfig, /adapter_config\.json: adapter: missing/, path.join(noConfig, 'adapter_config.json'));
  await refusal(base, await make('dora', { config: { use_dora: true } }), /use_dora is true: DoRA .* not supported yet/);
  await refusal(base, await make('prefix', { config: { peft_type: 'PREFIX_TUNING' } }), /peft_type "PREFIX_TUNING" is not supported yet/);
  await refusal(
    base,
    await make('rank', { config: { r: 8 } }),
    /\[tensor "base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight"\].*rank 4 in the file, but adapter_config\.json says r = 8/,
  );
  await refusal(base, await make('pattern', { config: { rank_pattern: { q_proj: 2 } } }), /rank 4 in the file, .* r = 2 for this module/);
  await refusal(base, await make('alpha', { config: { lora_alpha: 'eight' } }), /lora_alpha is "eight", not a positive number/);
  // A factor whose shape does not fit the base weight.
  const shape = await make('shape');
  const file = path.join(shape, 'adapter_model.safetensors');
  const entries = await entriesOf(file);
  const a0 = 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight';
  entries[a0] = { dtype: 'F32', shape: [4, 32], data: f32Bytes(new Array(4 * 32).fill(0.01)) };
  await fsp.writeFile(file, validFile(entries));
  await refusal(
    base,
    shape,
    /lora_A\.weight"\].*lora_B \[64, 4\] @ lora_A \[4, 32\] is 64 x 32, but the base weight model\.layers\.0\.self_attn\.q_proj\.weight is \[64, 64\]/,
    file,
  );
  // lora_B missing.
  delete entries[a0];
  entries[a0] = { dtype: 'F32', shape: [4, 64], data: f32Bytes(new Array(4 * 64).fill(0.01)) };
  delete entries['base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight'];
  await fsp.writeFile(file, validFile(entries));
  await refusal(base, shape, /layers\.1\.self_attn\.q_proj\.lora_A\.weight"\]: adapter: lora_B is missing for this module/, file);
  // A DoRA magnitude vector in the weights even without use_dora.
  const mag = await make('magnitude');
  const mfile = path.join(mag, 'adapter_model.safetensors');
  const mentries = await entriesOf(mfile);
  mentries['base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector'] = { dtype: 'F32', shape: [64], data: f32Bytes(new Array(64).fill(1)) };
  await fsp.writeFile(mfile, validFile(mentries));
  await refusal(base, mag, /DoRA magnitude vector: DoRA is not supported yet/);
  // PiSSA: the base the adapter applies to is the residual; refused until the user says the base is it.
  const pissa = await make('pissa', { config: { init_lora_weights: 'pissa_niter_4' } });
  await refusal(base, pissa, /init_lora_weights is "pissa_niter_4": .*residual base.*--residual-base.*convert it to a plain LoRA adapter/);
  const r = await analyzeCheckpoint(base, pissa, { settings: SETTINGS, passes: 'diff', residualBase: true });
  assert.equal(r.adapter?.principalInit, 'pissa_niter_4');
  assert.match(r.notes?.join(' ') ?? '', /pissa_niter_4 init: the base given is taken as its residual base/);
});

test('adapter runs: discovered with the base their config names, analysed through the CLI and the engine like any run', async () => {
  const dir = await tempDir();
  const { base } = await writeSyntheticRun(path.join(dir, 'ex'), { seed: 24 });
  const run = path.join(dir, 'lora-grpo');
  for (const [step, seed] of [
    [10, 1],
    [20, 2],
  ])
    await writeAdapter(base, path.join(run, `checkpoint-${step}`), undefined, { r: 4, alpha: 8, modules: ['q_proj', 'v_proj'], seed });
  const scan = await scanFolder(dir);
  const found = scan.runs.find((x) => x.root === run)!;
  assert.ok(found, `the adapter run is found among ${JSON.stringify(scan.runs.map((x) => [x.root, x.checkpoints.length]))}`);
  assert.deepEqual(
    found.checkpoints.map((c) => [c.step, c.state]),
    [
      [10, 'complete'],
      [20, 'complete'],
    ],
  );
  assert.equal(path.resolve(found.base.resolved ?? ''), path.resolve(base));
  // An adapter folder without its config is listed as broken, saying why.
  const broken = path.join(dir, 'broken', 'checkpoint-5');
  await writeAdapter(base, broken, undefined, { r: 2, alpha: 2, modules: ['q_proj'] });
  await fsp.rm(path.join(broken, 'adapter_config.json'));
  const b = (await scanFolder(dir)).runs.find((x) => x.root === path.dirname(broken))!;
  assert.equal(b.checkpoints[0].state, 'error');
  assert.match(b.checkpoints[0].reason ?? '', /adapter_config\.json: adapter: missing/);
  // The CLI: analyze BASE ADAPTER writes the report under the base names.
  const ckpt20 = path.join(run, 'checkpoint-20');
  const analyzeArgs = ['analyze', base, ckpt20, '--k', '8', '--k-spectrum', '16', '--device', 'cpu', '--no-cache', '--quiet'];
  const out = path.join(dir, 'out.json');
  const cli = await runCli([...analyzeArgs, '--json', out]);
  assert.equal(cli.code, 0, cli.err);
  const rep = JSON.parse(await fsp.readFile(out, 'utf8')) as CheckpointReport;
  assert.equal(rep.adapter?.targets.length, 4);
  assert.ok(rep.tensors.some((t) => t.name === 'model.layers.1.self_attn.v_proj.weight' && t.adapter && t.spectral));
  // Shards and merge: the same report as one process.
  const parts = [1, 2].map((i) => path.join(dir, `part-${i}.json`));
  for (const [i, part] of parts.entries()) {
    const r = await runCli([...analyzeArgs, '--shard', `${i + 1}/2`, '--json', part]);
    assert.equal(r.code, 0, r.err);
  }
  const mergedOut = path.join(dir, 'merged.json');
  const mr = await runCli(['merge', ...parts, '--json', mergedOut, '--quiet']);
  assert.equal(mr.code, 0, mr.err);
  const m = JSON.parse(await fsp.readFile(mergedOut, 'utf8')) as CheckpointReport;
  assert.deepEqual(m.tensors, rep.tensors);
  assert.deepEqual(m.adapter, rep.adapter);
  assert.deepEqual(m.verdict, rep.verdict);
  // compare takes adapter runs beside each other as it takes full fine-tunes.
  const cmp = await runCli(['compare', base, path.join(run, 'checkpoint-10'), path.join(run, 'checkpoint-20'), '--diff-only', '--quiet']);
  assert.equal(cmp.code, 0, cmp.err);
  // The engine process (what the extension runs): the same report as in process, and cached.
  const engine = new EngineClient({ workerPath: WORKER, cacheDir: path.join(dir, 'cache') });
  try {
    const spec = { kind: 'analyze', base, checkpoint: path.join(run, 'checkpoint-10'), passes: 'diff', settings: SETTINGS, device: 'cpu' } as const;
    const first = await engine.run(spec);
    const direct = await analyzeCheckpoint(base, spec.checkpoint, { settings: SETTINGS, passes: 'diff' });
    assert.deepEqual((first.result as CheckpointReport).tensors, direct.tensors);
    assert.equal((await engine.run(spec)).fromCache, true);
    // Its config is part of the key: another alpha is another merge.
    const cfgPath = path.join(spec.checkpoint, 'adapter_config.json');
    const cfg = JSON.parse(await fsp.readFile(cfgPath, 'utf8')) as Record<string, unknown>;
    await fsp.writeFile(cfgPath, JSON.stringify({ ...cfg, lora_alpha: 16 }));
    const third = await engine.run(spec);
    assert.equal(third.fromCache, false);
    const t = (third.result as CheckpointReport).tensors.find((x) => x.adapter)!;
    assert.equal(t.adapter!.scale, 4);
  } finally {
    await engine.dispose();
  }
});
