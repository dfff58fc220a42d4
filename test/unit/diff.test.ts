import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { CheckpointFormatError } from '../../src/formats/errors';
import { Checkpoint } from '../../src/formats/checkpoint';
import { diffCheckpoints, accumulateBf16, newAccumulator } from '../../src/analysis/diff';
import { analyzeCheckpoint } from '../../src/analysis/analyze';
import { classifyModule, layerIndex } from '../../src/core/names';
import { DEFAULT_SETTINGS } from '../../src/report/schema';
import { writeSyntheticRun, rng } from '../../src/examples/synthetic';
import { validFile, bf16Bytes, f32Bytes, tempDir, writeFile, bf16, bf16ToNumber } from '../support/st';
import { AnalysisPlan } from '../../src/analysis/plan';

/** The slow reference of M1: decode both sides to floats and apply |w1 - w0| <= eta max(|w0|, |w1|). */
function referenceUnchanged(b0: number[], b1: number[], eta = 1e-3): { unchanged: number; changed: number; nonFinite: number } {
  let unchanged = 0;
  let changed = 0;
  let nonFinite = 0;
  for (let i = 0; i < b0.length; i++) {
    const w0 = bf16ToNumber(b0[i]);
    const w1 = bf16ToNumber(b1[i]);
    if (!Number.isFinite(w0) || !Number.isFinite(w1)) nonFinite++;
    else if (Math.abs(w1 - w0) <= eta * Math.max(Math.abs(w0), Math.abs(w1))) unchanged++;
    else changed++;
  }
  return { unchanged, changed, nonFinite };
}

test('bf16 bit-exact probe equals the slow relative-rule reference on random and edge-case values', () => {
  const rand = rng(42);
  const b0: number[] = [];
  const b1: number[] = [];
  const edge = [0x0000, 0x8000, 0x0001, 0x8001, 0x007f, 0x0080, 0x7f7f, 0xff7f, 0x7f80, 0xff80, 0x7fc0, 0x4480, 0x3f80, 0x3580];
  for (const a of edge)
    for (const b of edge) {
      b0.push(a);
      b1.push(b);
    }
  for (let i = 0; i < 200_000; i++) {
    const a = Math.floor(rand() * 65536);
    // Neighbours (one ULP either way), sign flips and unrelated values.
    const r = rand();
    const b = r < 0.4 ? a : r < 0.6 ? (a + 1) & 0xffff : r < 0.8 ? (a - 1) & 0xffff : r < 0.85 ? a ^ 0x8000 : Math.floor(rand() * 65536);
    b0.push(a);
    b1.push(b);
  }
  const acc = newAccumulator([b0.length]);
  accumulateBf16(acc, new Uint16Array(b0), new Uint16Array(b1), 0);
  const ref = referenceUnchanged(b0, b1);
  assert.equal(acc.nonFinite, ref.nonFinite);
  assert.equal(acc.changed, ref.changed);
  assert.equal(acc.finite - acc.changed, ref.unchanged);
});

test('the legacy absolute rule is wrong in both directions for bf16, the spec rule is not', () => {
  // Near 1024 one bf16 ULP is 8: a real change that legacy |dw| <= 1e-5 also sees, but near 1e-6 it misses 134 ULPs.
  const small0 = bf16(1e-6);
  const small1 = (small0 + 134) & 0xffff;
  const acc = newAccumulator([1]);
  accumulateBf16(acc, new Uint16Array([small0]), new Uint16Array([small1]), 0);
  assert.equal(acc.changed, 1, 'M1 counts a 134-ULP move as changed');
  assert.equal(acc.unchangedAbs, 1, 'the legacy rule calls it unchanged');
});

async function fixture(): Promise<{ dir: string; base: string; ckpt: string }> {
  const dir = await tempDir();
  // q: 2x3 bf16 with known changes; n: f32 1-D with relative-rule cases; k only in base; v shape mismatch.
  const q0 = [1, 2, 3, 4, 5, 6].map(bf16);
  const q1 = [1, 2.5, 3, 4, 5, -6].map(bf16);
  const base = await writeFile(
    path.join(dir, 'base', 'model.safetensors'),
    validFile({
      'model.layers.0.self_attn.q_proj.weight': { dtype: 'BF16', shape: [2, 3], data: bf16Bytes(q0) },
      'model.layers.0.input_layernorm.weight': { dtype: 'F32', shape: [4], data: f32Bytes([1, 1, 100, 0]) },
      'model.layers.0.self_attn.k_proj.weight': { dtype: 'BF16', shape: [1, 1], data: bf16Bytes([bf16(1)]) },
      'model.layers.1.self_attn.v_proj.weight': { dtype: 'BF16', shape: [1, 2], data: bf16Bytes([bf16(1), bf16(1)]) },
    }),
  );
  const ckpt = await writeFile(
    path.join(dir, 'ckpt', 'model.safetensors'),
    validFile({
      'model.layers.0.self_attn.q_proj.weight': { dtype: 'BF16', shape: [2, 3], data: bf16Bytes(q1) },
      'model.layers.0.input_layernorm.weight': { dtype: 'F32', shape: [4], data: f32Bytes([1.0005, 1.002, 100.05, 0]) },
      'model.layers.1.self_attn.v_proj.weight': { dtype: 'BF16', shape: [2, 1], data: bf16Bytes([bf16(1), bf16(1)]) },
      'lm_head.weight': { dtype: 'BF16', shape: [1, 1], data: bf16Bytes([bf16(1)]) },
    }),
  );
  return { dir, base: path.dirname(base), ckpt: path.dirname(ckpt) };
}

test('known-answer diff: M1, norms, ULPs, M4 and every mismatch reported', async () => {
  const { base, ckpt } = await fixture();
  const r = await analyzeCheckpoint(base, ckpt, { settings: DEFAULT_SETTINGS, passes: 'diff' });
  const q = r.tensors.find((t) => t.name.endsWith('q_proj.weight'))!;
  assert.equal(q.module, 'q');
  assert.equal(q.layer, 0);
  assert.equal(q.changed, 2);
  assert.equal(q.unchanged, 4 / 6);
  // dW = [0, .5, 0, 0, 0, -12]; ||dW|| = sqrt(144.25); ||W0|| = sqrt(91)
  assert.ok(Math.abs(q.relUpdateNorm! - Math.sqrt(144.25 / 91)) < 1e-12);
  assert.equal(q.maxAbsUpdate, 12);
  // ULPs: 0.5 at w0=2 (ulp 2^-6) = 32; 12 at w0=6 (ulp 2^-5) = 384 -> lower median = 32.
  assert.equal(q.medianUpdateUlps, 32);
  assert.deepEqual(q.rowChangedRatio, { length: 2, bin: 1, values: [1 / 3, 1 / 3].map((x) => Math.round(x * 1e6) / 1e6) });
  assert.deepEqual(q.colChangedRatio!.values, [0, 0.5, 0.5]);
  const n = r.tensors.find((t) => t.module === 'norm')!;
  // eta = 1e-3: 1 -> 1.0005 unchanged, 1 -> 1.002 changed, 100 -> 100.05 unchanged, 0 -> 0 unchanged.
  assert.equal(n.changed, 1);
  assert.equal(n.dtype, 'F32');
  assert.ok(n.hiddenByPrecision !== undefined);
  const problems = Object.fromEntries(r.mismatches.map((m) => [m.name, m.problem]));
  assert.deepEqual(problems, {
    'model.layers.0.self_attn.k_proj.weight': 'only-in-base',
    'model.layers.1.self_attn.v_proj.weight': 'shape-mismatch',
    'lm_head.weight': 'only-in-checkpoint',
  });
  assert.equal(r.summary.changed, 3);
  assert.equal(r.summary.unchanged, 7 / 10);
  assert.equal(r.summary.unchangedLinear, 4 / 6);
});

test('NaN and Inf are counted apart, never as changed or unchanged', async () => {
  const dir = await tempDir();
  const mk = (bits: number[]): Buffer => validFile({ 'model.layers.0.mlp.up_proj.weight': { dtype: 'BF16', shape: [4], data: bf16Bytes(bits) } });
  await writeFile(path.join(dir, 'a.safetensors'), mk([0x3f80, 0x7fc0, 0x3f80, 0x7f80]));
  await writeFile(path.join(dir, 'b.safetensors'), mk([0x3f81, 0x3f80, 0x7f80, 0x7f80]));
  const r = await analyzeCheckpoint(path.join(dir, 'a.safetensors'), path.join(dir, 'b.safetensors'), { settings: DEFAULT_SETTINGS, passes: 'diff' });
  assert.equal(r.tensors[0].nonFinite, 3);
  assert.equal(r.tensors[0].changed, 1);
  assert.equal(r.tensors[0].unchanged, 0);
  assert.equal(r.summary.nonFinite, 3);
});

test('Gate III probe: fp32 changes that bf16 storage hides', async () => {
  const dir = await tempDir();
  const w0 = [1, 1, 1, 1];
  const w1 = [1 + 2 ** -12, 1 + 2 ** -6, 1, 1 - 2 ** -13];
  await writeFile(path.join(dir, 'a.safetensors'), validFile({ 'x.weight': { dtype: 'BF16', shape: [4], data: bf16Bytes(w0.map(bf16)) } }));
  await writeFile(path.join(dir, 'b.safetensors'), validFile({ 'x.weight': { dtype: 'F32', shape: [4], data: f32Bytes(w1) } }));
  const r = await analyzeCheckpoint(path.join(dir, 'a.safetensors'), path.join(dir, 'b.safetensors'), { settings: DEFAULT_SETTINGS, passes: 'diff' });
  // Three entries changed in fp32; two of them (2^-12 and -2^-13 around 1) round back to bf16 1.0.
  assert.equal(r.tensors[0].hiddenByPrecision, 2 / 3);
  assert.equal(r.mismatches[0].problem, 'dtype-mismatch');
});

test('a sharded checkpoint gives the same numbers as the same weights in one file, in small chunks too', async () => {
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(dir, { seed: 3 });
  const sharded = checkpoints[2];
  const b = await Checkpoint.open(base);
  const c = await Checkpoint.open(sharded);
  assert.equal(c.files.length, 2);
  const big = await diffCheckpoints(AnalysisPlan.of(b, c, 'diff'), { eta: 1e-3 });
  const small = await diffCheckpoints(AnalysisPlan.of(b, c, 'diff'), { eta: 1e-3, chunkElements: 1000 });
  assert.deepEqual(small.tensors, big.tensors);
  assert.equal(big.mismatches.length, 0);
  await b.close();
  await c.close();
});

test('module and layer classification for Llama/Qwen, MoE and GPT-2 names', () => {
  const cases: [string, string, number | null][] = [
    ['model.layers.3.self_attn.q_proj.weight', 'q', 3],
    ['model.layers.3.self_attn.k_proj.bias', 'k', 3],
    ['model.layers.12.self_attn.v_proj.weight', 'v', 12],
    ['model.layers.0.self_attn.o_proj.weight', 'o', 0],
    ['model.layers.0.mlp.gate_proj.weight', 'gate', 0],
    ['model.layers.0.mlp.up_proj.weight', 'up', 0],
    ['model.layers.0.mlp.down_proj.weight', 'down', 0],
    ['model.layers.0.mlp.experts.7.down_proj.weight', 'down', 0],
    ['model.layers.1.block_sparse_moe.experts.0.w1.weight', 'gate', 1],
    ['model.layers.0.input_layernorm.weight', 'norm', 0],
    ['model.layers.0.self_attn.q_norm.weight', 'norm', 0],
    ['model.norm.weight', 'norm', null],
    ['model.embed_tokens.weight', 'embed', null],
    ['lm_head.weight', 'head', null],
    ['transformer.h.5.attn.c_attn.weight', 'other', 5],
    ['transformer.h.5.attn.c_proj.weight', 'o', 5],
    ['transformer.h.5.mlp.c_fc.weight', 'up', 5],
    ['transformer.h.5.mlp.c_proj.weight', 'down', 5],
    ['transformer.h.5.ln_1.weight', 'norm', 5],
    ['transformer.wte.weight', 'embed', null],
    ['transformer.ln_f.weight', 'norm', null],
  ];
  for (const [name, mod, layer] of cases) {
    assert.equal(classifyModule(name), mod, name);
    assert.equal(layerIndex(name), layer, name);
  }
});

test('the diff pass on worker threads gives the same report as one thread, and passes format errors on', async () => {
  const { diffCheckpointsParallel, shareOut } = await import('../../src/analysis/diff-parallel');
  const script = path.resolve(__dirname, '..', '..', '..', 'dist', 'diff-thread.js');
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(dir, { seed: 4 });
  const b = await Checkpoint.open(base);
  const c = await Checkpoint.open(checkpoints[2]);
  try {
    const one = await diffCheckpoints(AnalysisPlan.of(b, c, 'diff'), { eta: 1e-3 });
    const seen: string[] = [];
    const two = await diffCheckpointsParallel(AnalysisPlan.of(b, c, 'diff'), {
      eta: 1e-3,
      threads: 2,
      threadScript: script,
      onTensor: (t) => seen.push(t.name),
    });
    assert.deepEqual(two, one);
    assert.equal(seen.length, one.tensors.length);
  } finally {
    await b.close();
    await c.close();
  }
  assert.deepEqual(
    shareOut(
      [
        ['a', 10],
        ['b', 7],
        ['c', 5],
        ['d', 3],
      ],
      2,
    ).map((g) => g.sort()),
    [
      ['a', 'd'],
      ['b', 'c'],
    ],
  );
  // A checkpoint rewritten after it was opened: the thread's error arrives typed, naming the file.
  const b2 = await Checkpoint.open(base);
  const c2 = await Checkpoint.open(checkpoints[0]);
  try {
    const f = path.join(checkpoints[0], 'model.safetensors');
    const bytes = await fsp.readFile(f);
    await fsp.writeFile(f, bytes.subarray(0, bytes.length - 64));
    await assert.rejects(
      diffCheckpointsParallel(AnalysisPlan.of(b2, c2, 'diff'), { eta: 1e-3, threads: 2, threadScript: script }),
      (e: unknown) => e instanceof CheckpointFormatError && e.file === f,
    );
  } finally {
    await b2.close();
    await c2.close();
  }
});
