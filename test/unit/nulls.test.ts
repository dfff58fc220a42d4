/**
 * The verdict's nulls: the fast loops (gathered bisection sample, storage fused with its sums) must give
 * exactly what the plain loops they replaced gave, on both M1 rules and on sampled and whole-matrix scale
 * searches, and the gradient-like null must put the base spectrum's share of its energy into the top-k.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createBackend, type ComputeBackend, type Matrix } from '../../src/compute/backend';
import { simulateNulls, roundBf16, type NullInput } from '../../src/analysis/nulls';
import { Rng } from '../../src/linalg/random';
import { simulateNullsReference } from '../support/nulls-reference';

let backend: ComputeBackend;
before(async () => {
  backend = await createBackend({ device: 'cpu', threads: 1 });
});
after(async () => {
  await backend.dispose();
});

function gaussian(rows: number, cols: number, rng: Rng, scale = 1): Matrix {
  const data = new Float32Array(rows * cols);
  rng.fillGaussian(data);
  for (let i = 0; i < data.length; i++) data[i] *= scale;
  return { rows, cols, data };
}

function input(m: number, n: number, k: number, opts: { baseBf16: boolean; changedShare: number; seed: number }): NullInput {
  const rng = new Rng(opts.seed);
  const w0 = gaussian(m, n, rng, 0.02).data;
  if (opts.baseBf16) for (let i = 0; i < w0.length; i++) w0[i] = roundBf16(w0[i]);
  let baseFro2 = 0;
  for (const x of w0) baseFro2 += x * x;
  const sigma = Float64Array.from({ length: k }, (_, i) => Math.sqrt(baseFro2) * 0.3 * (i + 1) ** -0.7);
  return {
    m,
    n,
    k,
    w0,
    baseFro2,
    U0k: gaussian(m, k, rng, 1 / Math.sqrt(m)),
    V0k: gaussian(n, k, rng, 1 / Math.sqrt(n)),
    sigma,
    checkpointBf16: true,
    baseBf16: opts.baseBf16,
    eta: 1e-5,
    changed: Math.round(opts.changedShare * m * n),
    seed: opts.seed + 1,
  };
}

for (const [m, n, k] of [
  [96, 64, 8],
  [300, 260, 16],
]) {
  for (const baseBf16 of [true, false]) {
    test(`simulateNulls equals the plain-loop reference to the bit: ${m} x ${n}, k ${k}, ${baseBf16 ? 'bf16' : 'float32'} base`, async () => {
      for (const changedShare of [0.02, 0.4]) {
        const inp = input(m, n, k, { baseBf16, changedShare, seed: m + n + (baseBf16 ? 1 : 0) });
        const fast = await simulateNulls(backend, { ...inp, w0: inp.w0.slice() });
        const slow = await simulateNullsReference(backend, { ...inp, w0: inp.w0.slice() });
        assert.deepEqual(fast, slow, `changed share ${changedShare}`);
        assert.equal(fast.matchedBy, 'changed');
        assert.ok(fast.rounding.share > 0 && fast.rounding.share < 1, `rounding share ${fast.rounding.share}`);
        // Scratch kept from the call before (another size, then this one) must not leak into the next.
        assert.deepEqual(await simulateNulls(backend, { ...inp, w0: inp.w0.slice() }), fast, 'a second call with reused scratch');
      }
    });
  }
}

test('the gradient-like null holds more of its energy in the top-k than the direction-blind one', async () => {
  const inp = input(300, 260, 16, { baseBf16: true, changedShare: 0.4, seed: 11 });
  const nulls = await simulateNulls(backend, inp);
  assert.ok(
    nulls.gradientLike.principalEnergy > 3 * nulls.directionBlind.principalEnergy,
    `gradient-like ${nulls.gradientLike.principalEnergy} vs direction-blind ${nulls.directionBlind.principalEnergy}`,
  );
});
