/**
 * One M1 "changed" rule per dtype pair, wherever it is applied: the diff pass (JavaScript kernel and
 * WebAssembly SIMD kernel) and the spectral pass's mask (src/analysis/masks.ts) agree entry by entry with
 * an independent reference that decodes the raw bits itself: bf16 pairs by bit pattern (+0 == -0), every
 * other pair by |w1 - w0| > eta max(|w0|, |w1|) in float64; NaN or Inf on either side is neither.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { Checkpoint } from '../../src/formats/checkpoint';
import { diffCheckpoints } from '../../src/analysis/diff';
import { changedMask } from '../../src/analysis/masks';
import { decodeToFloat32, type Dtype } from '../../src/formats/dtype';
import { rng } from '../../src/examples/synthetic';
import { validFile, tempDir, writeFile } from '../support/st';
import { AnalysisPlan } from '../../src/analysis/plan';

const ETA = 1e-3;
const N = 6000;

/** Independent decoders from raw little-endian bits. */
function decode(dtype: Dtype, bytes: Uint8Array, i: number): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F64':
      return v.getFloat64(8 * i, true);
    case 'F32':
      return v.getFloat32(4 * i, true);
    case 'BF16': {
      const b = new DataView(new ArrayBuffer(4));
      b.setUint32(0, v.getUint16(2 * i, true) << 16);
      return b.getFloat32(0);
    }
    case 'F16': {
      const h = v.getUint16(2 * i, true);
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 0x1f;
      const f = h & 0x3ff;
      if (e === 0) return s * f * 2 ** -24;
      if (e === 31) return f ? NaN : s * Infinity;
      return s * (1 + f / 1024) * 2 ** (e - 15);
    }
    default:
      throw new Error(dtype);
  }
}

function referenceChanged(d0: Dtype, b0: Uint8Array, d1: Dtype, b1: Uint8Array, i: number): 0 | 1 | 'non-finite' {
  const x = decode(d0, b0, i);
  const y = decode(d1, b1, i);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return 'non-finite';
  if (d0 === 'BF16' && d1 === 'BF16') {
    const u = new DataView(b0.buffer, b0.byteOffset).getUint16(2 * i, true);
    const w = new DataView(b1.buffer, b1.byteOffset).getUint16(2 * i, true);
    return u === w || ((u | w) & 0x7fff) === 0 ? 0 : 1;
  }
  return Math.abs(y - x) > ETA * Math.max(Math.abs(x), Math.abs(y)) ? 1 : 0;
}

/** Encodes float64 values into a dtype through typed arrays (F16: round to nearest, by hand). */
function encode(dtype: Dtype, values: Float64Array): Uint8Array {
  const n = values.length;
  if (dtype === 'F64') return new Uint8Array(Float64Array.from(values).buffer);
  if (dtype === 'F32') return new Uint8Array(Float32Array.from(values).buffer);
  const out = new Uint16Array(n);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < n; i++) {
    const x = values[i];
    if (dtype === 'BF16') {
      f32[0] = x;
      const u = u32[0];
      out[i] = Number.isNaN(x) ? 0x7fc0 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
    } else {
      // F16: the nearest of the 65536 patterns, found by the independent decoder (exact for this test's values).
      out[i] = nearestF16(x);
    }
  }
  return new Uint8Array(out.buffer);
}

function nearestF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = 0x7bff;
  const probe = new Uint8Array(2);
  const val = (h: number): number => {
    probe[0] = h & 0xff;
    probe[1] = h >> 8;
    return decode('F16', probe, 0);
  };
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (val(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  const next = Math.min(lo + 1, 0x7bff);
  return sign | (a - val(lo) <= val(next) - a ? lo : next);
}

/** Base values and a checkpoint with every kind of entry: unchanged, below and above eta, signed zeros, NaN and Inf. */
function pair(seed: number): [Float64Array, Float64Array] {
  const r = rng(seed);
  const w0 = new Float64Array(N);
  const w1 = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const x = (r() - 0.5) * 0.1;
    w0[i] = x;
    const kind = i % 10;
    w1[i] = kind < 4 ? x : kind < 6 ? x * (1 + 0.3 * ETA) : kind < 8 ? x * (1 + 20 * ETA) : kind === 8 ? x + 1e-3 : x;
  }
  w0[0] = 0;
  w1[0] = -0;
  w0[1] = -0;
  w1[1] = 0;
  w0[2] = NaN;
  w1[3] = Infinity;
  w0[4] = 0;
  w1[4] = 1e-30;
  return [w0, w1];
}

for (const [d0, d1] of [
  ['BF16', 'BF16'],
  ['F16', 'F16'],
  ['F32', 'F32'],
  ['F64', 'F64'],
  ['BF16', 'F32'],
  ['F32', 'F16'],
] as [Dtype, Dtype][]) {
  test(`${d0} base, ${d1} checkpoint: the diff pass (both kernels) and the spectral mask apply the one changed rule`, async () => {
    const [v0, v1] = pair(d0.length * 31 + d1.length);
    const b0 = encode(d0, v0);
    const b1 = encode(d1, v1);
    const rows = 60;
    const cols = N / rows;
    const dir = await tempDir();
    const base = await writeFile(
      path.join(dir, 'base', 'model.safetensors'),
      validFile({ 'model.layers.0.mlp.up_proj.weight': { dtype: d0, shape: [rows, cols], data: b0 } }),
    );
    const ckpt = await writeFile(
      path.join(dir, 'ckpt', 'model.safetensors'),
      validFile({ 'model.layers.0.mlp.up_proj.weight': { dtype: d1, shape: [rows, cols], data: b1 } }),
    );

    let want = 0;
    let nonFinite = 0;
    const wantMask = new Uint8Array(N);
    for (let i = 0; i < N; i++) {
      const c = referenceChanged(d0, b0, d1, b1, i);
      if (c === 'non-finite') nonFinite++;
      else if (c === 1) {
        want++;
        wantMask[i] = 1;
      }
    }
    assert.ok(want > N / 4 && want < N - N / 4, `the pair mixes changed and unchanged entries (${want})`);

    for (const kernel of ['js', 'auto'] as const) {
      const a = await Checkpoint.open(base);
      const b = await Checkpoint.open(ckpt);
      try {
        const { tensors } = await diffCheckpoints(AnalysisPlan.of(a, b, 'diff'), { eta: ETA, kernel, chunkElements: 1000 });
        assert.equal(tensors[0].changed, want, `diff pass, ${kernel} kernel`);
        assert.equal(tensors[0].nonFinite, nonFinite, `diff pass, ${kernel} kernel: NaN/Inf`);
      } finally {
        await a.close();
        await b.close();
      }
    }
    const w0 = new Float32Array(N);
    const w1 = new Float32Array(N);
    decodeToFloat32(d0, b0, N, w0);
    decodeToFloat32(d1, b1, N, w1);
    const m = changedMask(d0, b0, w0, d1, b1, w1, ETA);
    assert.equal(m.changed, want, 'spectral mask');
    assert.equal(m.nonFinite, nonFinite);
    assert.deepEqual(m.mask, wantMask, 'the mask marks the same entries');
  });
}
