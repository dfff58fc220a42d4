import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/linalg/random';

test('fillGaussian gives the numbers nextGaussian gives, in order, with the spare carried across calls', () => {
  for (const [first, second] of [
    [7, 5],
    [1, 1],
    [0, 3],
    [100_001, 99],
  ]) {
    for (const Ctor of [Float32Array, Float64Array]) {
      const filled = new Rng(3);
      const stepped = new Rng(3);
      const a = new Ctor(first);
      const b = new Ctor(second);
      filled.fillGaussian(a);
      filled.fillGaussian(b);
      const c = new Ctor(first);
      const d = new Ctor(second);
      for (let i = 0; i < first; i++) c[i] = stepped.nextGaussian();
      for (let i = 0; i < second; i++) d[i] = stepped.nextGaussian();
      assert.deepEqual(a, c, `${Ctor.name} ${first}`);
      assert.deepEqual(b, d, `${Ctor.name} ${second} after ${first}`);
      assert.equal(filled.nextU32(), stepped.nextU32(), 'the generators end in the same state');
    }
  }
});

/** Phi(x) through erfc (W. J. Cody's rational approximations are overkill here: |error| < 1.2e-7 from Numerical Recipes' erfcc). */
function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.5 * z);
  const erfc =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - erfc / 2 : erfc / 2;
}

test('fillGaussianZiggurat draws standard normals: Kolmogorov-Smirnov, moments, both tails, repeatable from the seed', () => {
  const n = 1 << 21;
  const x = new Float32Array(n);
  new Rng(41).fillGaussianZiggurat(x);
  const again = new Float32Array(n);
  new Rng(41).fillGaussianZiggurat(again);
  assert.deepEqual(x, again, 'the same seed gives the same numbers');
  let m1 = 0;
  let m2 = 0;
  let m4 = 0;
  let upper = 0;
  let lower = 0;
  const R = 3.442619855899;
  for (let i = 0; i < n; i++) {
    const v = x[i];
    assert.ok(Number.isFinite(v));
    m1 += v;
    m2 += v * v;
    m4 += v ** 4;
    if (v > R) upper++;
    if (v < -R) lower++;
  }
  // Sampling errors of the mean, variance and fourth moment: 1/sqrt(n), sqrt(2/n), sqrt(96/n); five of them allowed.
  assert.ok(Math.abs(m1 / n) < 5 / Math.sqrt(n), `mean ${m1 / n}`);
  assert.ok(Math.abs(m2 / n - 1) < 5 * Math.sqrt(2 / n), `variance ${m2 / n}`);
  assert.ok(Math.abs(m4 / n - 3) < 5 * Math.sqrt(96 / n), `fourth moment ${m4 / n}`);
  // The tail beyond the base strip is drawn by a separate method: its mass must be Phi's on each side.
  const tail = (1 - normalCdf(R)) * n;
  for (const [side, count] of [
    ['upper', upper],
    ['lower', lower],
  ] as const)
    assert.ok(Math.abs(count - tail) < 5 * Math.sqrt(tail), `${side} tail ${count}, expected ${tail.toFixed(0)}`);
  // Kolmogorov-Smirnov against Phi: the 0.1% critical value is 1.95 / sqrt(n). A wrong table or a lost
  // wedge (about 1% of the mass) moves the empirical CDF by more.
  const sorted = Float64Array.from(x).sort();
  let D = 0;
  for (let i = 0; i < n; i++) {
    const F = normalCdf(sorted[i]);
    D = Math.max(D, Math.abs(F - i / n), Math.abs((i + 1) / n - F));
  }
  assert.ok(D < 1.95 / Math.sqrt(n), `KS distance ${D}`);
});
