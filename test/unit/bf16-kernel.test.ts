import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accumulateBf16Js, newAccumulator, type TensorAccumulator } from '../../src/analysis/diff';
import { Bf16Kernel, bf16KernelKind, MAX_KERNEL_COLUMNS } from '../../src/analysis/bf16-kernel';
import { rng } from '../../src/examples/synthetic';
import { bf16 } from '../support/st';

/** Pairs of bf16 patterns with every case the kernel branches on: neighbours, sign flips, zeros, NaN/Inf, subnormals, huge and tiny. */
function pairs(n: number, seed: number): [Uint16Array, Uint16Array] {
  const rand = rng(seed);
  const a = new Uint16Array(n);
  const b = new Uint16Array(n);
  const special = [0x0000, 0x8000, 0x0001, 0x8001, 0x007f, 0x0080, 0x7f7f, 0xff7f, 0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x4480, 0x3f80, 0x3580, 0x0100];
  for (let i = 0; i < n; i++) {
    const r = rand();
    const x = r < 0.02 ? special[Math.floor(rand() * special.length)] : r < 0.9 ? bf16((rand() - 0.5) * 0.1) : Math.floor(rand() * 65536);
    const s = rand();
    const y =
      s < 0.45
        ? x
        : s < 0.65
          ? (x + 1) & 0xffff
          : s < 0.85
            ? (x - 1) & 0xffff
            : s < 0.88
              ? x ^ 0x8000
              : s < 0.9
                ? special[Math.floor(rand() * special.length)]
                : Math.floor(rand() * 65536);
    a[i] = x;
    b[i] = y;
  }
  return [a, b];
}

function assertSame(w: TensorAccumulator, r: TensorAccumulator, what: string): void {
  for (const k of ['changed', 'nonFinite', 'finite', 'unchangedAbs', 'maxAbs'] as const) assert.equal(w[k], r[k], `${what}: ${k}`);
  for (const k of ['dSq', 'baseSq'] as const) {
    // Float64 sums in another order: equal to a few ULPs of the sum of positive terms.
    assert.ok(Math.abs(w[k] - r[k]) <= 1e-12 * Math.abs(r[k]) + 1e-300, `${what}: ${k} ${w[k]} vs ${r[k]}`);
  }
  assert.equal(w.hist.total, r.hist.total, `${what}: histogram total`);
  assert.deepEqual(w.hist.counts, r.hist.counts, `${what}: histogram`);
  assert.equal(w.hist.median(), r.hist.median(), `${what}: median`);
  assert.deepEqual(w.rows, r.rows, `${what}: rows`);
  if (w.is2d) assert.deepEqual(w.cols, r.cols, `${what}: columns`);
}

test('the SIMD kernel is built and loads (the passes would otherwise run the reference, 5x slower)', () => {
  assert.deepEqual(bf16KernelKind(), { kind: 'wasm-simd' });
});

test('the SIMD kernel equals the reference on every shape of row and chunk: counts, histogram, lines exact; sums to 1e-12', () => {
  const shapes: number[][] = [[64, 48], [37, 13], [5, 1], [1, 1031], [3, 8], [2, 7, 9], [4099], [0, 5], [300, 1536]];
  for (const [si, shape] of shapes.entries()) {
    const numel = shape.reduce((x, y) => x * y, 1);
    const [a, b] = pairs(numel, 100 + si);
    // Chunks of uneven sizes that start mid-row, as the passes' chunking does on odd-sized tensors.
    for (const chunk of [numel, 7, 1000, 4096 + 3]) {
      if (chunk === 0 && numel > 0) continue;
      const kernel = Bf16Kernel.create([chunk * 8, chunk * 8])!;
      const wasm = newAccumulator(shape);
      const ref = newAccumulator(shape);
      for (let s = 0; s < numel; s += chunk) {
        const e = Math.min(numel, s + chunk);
        // Resident (read into the kernel's memory, as the passes do) on even chunks, copied in on odd ones.
        const x = kernel.buffers[0];
        const y = kernel.buffers[1];
        const resident = (s / chunk) % 2 === 0;
        const p0 = resident ? new Uint16Array(x.buffer, x.byteOffset, e - s) : a.slice(s, e);
        const p1 = resident ? new Uint16Array(y.buffer, y.byteOffset, e - s) : b.slice(s, e);
        if (resident) {
          p0.set(a.subarray(s, e));
          p1.set(b.subarray(s, e));
        }
        kernel.accumulate(wasm, p0, p1, s);
        accumulateBf16Js(ref, a.subarray(s, e), b.subarray(s, e), s);
      }
      assertSame(wasm, ref, `shape [${shape.join(', ')}], chunk ${chunk}`);
    }
  }
});

test('the SIMD kernel splits arrays larger than its scratch and agrees on a million entries', () => {
  const [a, b] = pairs(1 << 20, 7);
  const kernel = Bf16Kernel.create()!;
  const wasm = newAccumulator([1024, 1024]);
  const ref = newAccumulator([1024, 1024]);
  kernel.accumulate(wasm, a, b, 0);
  accumulateBf16Js(ref, a, b, 0);
  assertSame(wasm, ref, '1024 x 1024');
  assert.ok(wasm.changed > 400_000 && wasm.nonFinite > 0, 'the data exercises changes and NaN/Inf');
});

test('tensors wider than the kernel counts go to the reference', () => {
  const kernel = Bf16Kernel.create()!;
  assert.equal(kernel.accepts(newAccumulator([1, MAX_KERNEL_COLUMNS + 1])), false);
  assert.equal(kernel.accepts(newAccumulator([2, MAX_KERNEL_COLUMNS])), true);
  assert.equal(kernel.accepts(newAccumulator([MAX_KERNEL_COLUMNS * 4])), true, '1-D tensors have no column counts');
});
