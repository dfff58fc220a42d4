import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createBackend, type ComputeBackend } from '../../src/compute/backend';
import { analyzePair, type TensorPair } from '../../src/analysis/spectral';
import { selectByMagnitude, quickselect, kthSmallestBits, pairOverlaps } from '../../src/analysis/masks';
import { exponentGroups, groupRates, overlapReference } from '../support/overlap-reference';
import { verdictFrom } from '../../src/analysis/verdict';
import { qr } from '../../src/linalg/qr';
import { Rng } from '../../src/linalg/random';
import { singularValuesJacobi } from '../../src/linalg/svd';
import { DEFAULT_SETTINGS } from '../../src/report/schema';

let backend: ComputeBackend;
before(async () => {
  process.env.ORT_DISABLE_TELEMETRY = '1';
  backend = await createBackend({ device: 'cpu', threads: 1 });
});
after(async () => {
  await backend.dispose();
});

function gaussianMatrix(rng: Rng, m: number, n: number): Float64Array {
  const a = new Float64Array(m * n);
  for (let i = 0; i < a.length; i++) a[i] = rng.nextGaussian();
  return a;
}

/** A random orthonormal m x m basis (row-major), from the QR of a Gaussian matrix. */
function orthogonal(rng: Rng, m: number): Float64Array {
  return qr(gaussianMatrix(rng, m, m), m, m).Q;
}

/** W = U diag(s) V^T with U (m x m), V (n x n) orthogonal, row-major float32. */
function compose(U: Float64Array, s: number[], V: Float64Array, m: number, n: number): Float32Array {
  const W = new Float32Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let r = 0; r < s.length; r++) acc += U[i * m + r] * s[r] * V[j * n + r];
      W[i * n + j] = acc;
    }
  return W;
}

function pairOf(m: number, n: number, w0: Float32Array, w1: Float32Array, mask?: Uint8Array): TensorPair {
  const mk = mask ?? Uint8Array.from(w0, (x, i) => (x !== w1[i] ? 1 : 0));
  let changed = 0;
  for (const b of mk) changed += b;
  return { name: 't', m, n, w0, w1, mask: mk, changed, dtype0: 'F32', dtype1: 'F32', nonFinite: 0 };
}

function fro2(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return s;
}

test('Weyl and Mirsky bounds hold on the computed spectra, full and randomized', async () => {
  const rng = new Rng(11);
  for (const [m, n, kSpectrum] of [
    [64, 96, 256],
    [300, 360, 48],
  ] as const) {
    const w0 = Float32Array.from(gaussianMatrix(rng, m, n), (x) => x * 0.05);
    const w1 = Float32Array.from(w0, (x) => x + 0.004 * rng.nextGaussian());
    const settings = { ...DEFAULT_SETTINGS, k: 16, kSpectrum };
    const r = await analyzePair(backend, pairOf(m, n, w0, w1), settings);
    const s = r.spectral;
    const dW = Float64Array.from(w1, (x, i) => x - w0[i]);
    const dFro = Math.sqrt(fro2(dW));
    // ||dW||_2 from an exact reference (Jacobi SVD in float64).
    const d2 = singularValuesJacobi(dW, m, n)[0];
    assert.ok(Math.abs(s.updateSpectralNorm - d2) / d2 < 1e-3, `spectral norm ${s.updateSpectralNorm} vs exact ${d2}`);
    let mirsky = 0;
    for (let i = 0; i < s.sigmaBase.length; i++) {
      const diff = Math.abs(s.sigmaCheckpoint[i] - s.sigmaBase[i]);
      assert.ok(diff <= d2 * (1 + 1e-3) + 1e-6, `Weyl at ${i}: ${diff} > ${d2}`);
      mirsky += diff ** 2;
    }
    assert.ok(mirsky <= dFro ** 2 * (1 + 1e-3), `Mirsky: ${mirsky} > ${dFro ** 2}`);
    assert.ok(s.spectralShareOfUpdate <= 1 + 1e-3);
    assert.equal(s.svdMethod, m <= 256 ? 'full' : 'randomized');
    // On the exact path the values equal the reference spectrum. (The randomized path's accuracy on
    // known decaying spectra is tested in linalg.test.ts; a Gaussian matrix's flat spectrum is its worst case.)
    if (s.svdMethod !== 'full') continue;
    const exact = singularValuesJacobi(Float64Array.from(w0), m, n);
    for (let i = 0; i < 8; i++) assert.ok(Math.abs(s.sigmaBase[i] - exact[i]) / exact[i] < 1e-3, `sigma_${i}`);
  }
});

test('principal angles of a known rotation come out as constructed; right subspace unmoved', async () => {
  const rng = new Rng(5);
  const m = 48;
  const n = 40;
  const k = 4;
  const U = orthogonal(rng, m);
  const V = orthogonal(rng, n);
  const s = Array.from({ length: n }, (_, i) => 10 * 0.8 ** i);
  const w0 = compose(U, s, V, m, n);
  // Rotate u_i towards u_{k+i} by theta_i: R = I + (cos - 1)(u u^T + w w^T) + sin (w u^T - u w^T).
  const thetas = [3, 7, 12, 20];
  const Ur = Float64Array.from(U);
  for (let i = 0; i < k; i++) {
    const t = (thetas[i] * Math.PI) / 180;
    for (let r = 0; r < m; r++) {
      const u = U[r * m + i];
      const w = U[r * m + k + i];
      Ur[r * m + i] = Math.cos(t) * u + Math.sin(t) * w;
      Ur[r * m + k + i] = -Math.sin(t) * u + Math.cos(t) * w;
    }
  }
  const w1 = compose(Ur, s, V, m, n);
  const r = await analyzePair(backend, pairOf(m, n, w0, w1), { ...DEFAULT_SETTINGS, k });
  const left = r.spectral.principalAnglesLeftDeg;
  assert.equal(left.length, k);
  for (let i = 0; i < k; i++) assert.ok(Math.abs(left[i] - thetas[i]) < 0.05, `angle ${i}: ${left[i]} vs ${thetas[i]}`);
  assert.ok(Math.max(...r.spectral.principalAnglesRightDeg) < 0.05);
  assert.ok(Math.abs(r.spectral.principalAngleMaxDeg - 20) < 0.05);
  // An orthogonal map keeps the spectrum: NSS ~ 0.
  assert.ok(r.spectral.nss < 1e-5, `nss ${r.spectral.nss}`);
});

test('off-principal energy: 0 for an update inside the top-k subspaces, 1 for one outside, baseline for noise', async () => {
  const rng = new Rng(9);
  const m = 40;
  const n = 32;
  const k = 4;
  const U = orthogonal(rng, m);
  const V = orthogonal(rng, n);
  const s = Array.from({ length: n }, (_, i) => 10 / (1 + i));
  const w0 = compose(U, s, V, m, n);
  const inside = compose(U, [0.3, -0.2, 0.1, 0.05], V, m, n);
  const outsideS = new Array(n).fill(0).map((_, i) => (i >= k && i < k + 4 ? 0.2 : 0));
  const outside = compose(U, outsideS, V, m, n);
  const settings = { ...DEFAULT_SETTINGS, k };
  const rIn = await analyzePair(
    backend,
    pairOf(
      m,
      n,
      w0,
      Float32Array.from(w0, (x, i) => x + inside[i]),
    ),
    settings,
  );
  const rOut = await analyzePair(
    backend,
    pairOf(
      m,
      n,
      w0,
      Float32Array.from(w0, (x, i) => x + outside[i]),
    ),
    settings,
  );
  assert.ok(rIn.spectral.offPrincipalEnergy < 1e-3, `inside: ${rIn.spectral.offPrincipalEnergy}`);
  assert.ok(rOut.spectral.offPrincipalEnergy > 0.999, `outside: ${rOut.spectral.offPrincipalEnergy}`);
  assert.equal(rIn.spectral.offPrincipalEnergyBaseline, 1 - (k * k) / (m * n));
  // An isotropic update's inside share matches k^2/(mn) on average.
  let acc = 0;
  const trials = 20;
  for (let t = 0; t < trials; t++) {
    const w1 = Float32Array.from(w0, (x) => x + 0.01 * rng.nextGaussian());
    acc += 1 - (await analyzePair(backend, pairOf(m, n, w0, w1), settings)).spectral.offPrincipalEnergy;
  }
  const mean = acc / trials;
  const expected = (k * k) / (m * n);
  assert.ok(Math.abs(mean - expected) < 0.5 * expected, `isotropic inside share ${mean} vs ${expected}`);
});

test('an independent random changed mask overlaps principal and low-magnitude weights at their baselines', async () => {
  const rng = new Rng(21);
  const m = 200;
  const n = 180;
  const w0 = Float32Array.from(gaussianMatrix(rng, m, n), (x) => x * 0.02);
  const w1 = Float32Array.from(w0, (x) => x + 1e-3 * rng.nextGaussian());
  const mask = Uint8Array.from({ length: m * n }, () => (rng.nextUniform() < 0.3 ? 1 : 0));
  const r = await analyzePair(backend, pairOf(m, n, w0, w1, mask), { ...DEFAULT_SETTINGS, k: 16 });
  const sp = r.spectral;
  const changed = mask.reduce((a, b) => a + b, 0);
  const sigma = Math.sqrt(0.25 / changed);
  assert.equal(sp.overlapPrincipalBaseline, 0.5);
  assert.equal(sp.overlapLowMagnitudeBaseline, 0.5);
  assert.ok(Math.abs(sp.overlapPrincipal! - 0.5) < 4 * sigma, `P overlap ${sp.overlapPrincipal}`);
  assert.ok(Math.abs(sp.overlapLowMagnitude! - 0.5) < 4 * sigma, `L overlap ${sp.overlapLowMagnitude}`);
  assert.ok(Math.abs(sp.overlapPrincipalExpectedPrecision! - 0.5) < 4 * sigma);
});

test('exact top/bottom-alpha selection with deterministic ties', () => {
  const v = Float32Array.from([3, -1, 2, 2, -2, 0, 5, 2]);
  // Largest 3 by |v|: 5 (i6), 3 (i0), then the first of the |2| ties in index order (i2).
  assert.deepEqual([...selectByMagnitude(v, 3, true)], [1, 0, 1, 0, 0, 0, 1, 0]);
  // Smallest 3: 0 (i5), 1 (i1), then the first |2| tie (i2).
  assert.deepEqual([...selectByMagnitude(v, 3, false)], [0, 1, 1, 0, 0, 1, 0, 0]);
  const rng = new Rng(3);
  const big = Float32Array.from({ length: 10001 }, () => Math.round(rng.nextGaussian() * 20) / 4);
  for (const count of [1, 5000, 5001, 10000]) {
    assert.equal(
      selectByMagnitude(big, count, true).reduce((a, b) => a + b, 0),
      count,
    );
    const sorted = Float32Array.from(big).sort();
    assert.ok(quickselect(Float32Array.from(big), count - 1) === sorted[count - 1]);
    // The radix selection on |v|'s bit patterns: the same threshold as a sort, and the same mask as a brute-force rank.
    const absSorted = Float32Array.from(big, Math.abs).sort();
    const t = kthSmallestBits(new Uint32Array(Float32Array.from(big, Math.abs).buffer), count - 1);
    assert.equal(new Float32Array(new Uint32Array([t]).buffer)[0], absSorted[count - 1]);
    const order = Array.from(big.keys()).sort((a, b) => Math.abs(big[b]) - Math.abs(big[a]) || a - b);
    const expected = new Uint8Array(big.length);
    for (const i of order.slice(0, count)) expected[i] = 1;
    assert.deepEqual(selectByMagnitude(big, count, true), expected);
  }
  // Signed zeros are one magnitude; values spanning the exponent range still order.
  const wide = Float32Array.from([-0, 0, 1e-30, -3e38, 2.5, -1e-45, 7]);
  assert.deepEqual([...selectByMagnitude(wide, 3, true)], [0, 0, 0, 1, 1, 0, 1]);
  assert.deepEqual([...selectByMagnitude(wide, 3, false)], [1, 1, 0, 0, 0, 1, 0]);
});

test('verdict rule: a regime when a measure leans to it and none the other way; degenerate tensors get none', () => {
  const b = (value: number, directionBlind: number, gradientLike: number) => ({ value, directionBlind, gradientLike });
  const inside = { principalEnergy: b(0.9, 0.01, 0.3), spectralSharePrincipal: b(0.2, 0.03, 0.1), overlapPrincipal: 0.4, overlapPrincipalExpected: 0.4 };
  assert.equal(verdictFrom(inside).label, 'principal-targeting');
  const bottom = { principalEnergy: b(0.002, 0.01, 0.3), spectralSharePrincipal: b(0.01, 0.03, 0.1), overlapPrincipal: 0.4, overlapPrincipalExpected: 0.4 };
  assert.equal(verdictFrom(bottom).label, 'off-principal');
  // Between the nulls (where real gradient updates fall): inconclusive, and the reason says so.
  const between = verdictFrom({
    principalEnergy: b(0.2, 0.01, 0.3),
    spectralSharePrincipal: b(0.1, 0.03, 0.1),
    overlapPrincipal: 0.4,
    overlapPrincipalExpected: 0.4,
  });
  assert.equal(between.label, 'inconclusive');
  assert.match(between.reason!, /between the nulls/);
  // Measures leaning opposite ways: inconclusive.
  const split = verdictFrom({ ...inside, overlapPrincipal: 0.3 });
  assert.equal(split.label, 'inconclusive');
  assert.match(split.reason!, /disagree/);
  // Degenerate: no regime whatever the numbers say.
  const none = verdictFrom({ ...bottom, degenerate: 'no update' });
  assert.equal(none.label, 'inconclusive');
  assert.equal(none.reason, 'no update');
  assert.ok(none.evidence.every((e) => e.leans === 'neutral'));
  const v = verdictFrom(bottom);
  assert.equal(v.evidence.length, 3);
  assert.ok(v.evidence.every((e) => typeof e.value === 'number' && typeof e.baseline === 'number' && e.note.length > 0));
});

test('the one-pass overlaps equal the per-mask reference: counts exactly, precision baselines to rounding', () => {
  for (const [n, seed] of [
    [0, 1],
    [3, 2],
    [10007, 3],
  ] as const) {
    const rng = new Rng(seed);
    const w0 = new Float32Array(n);
    const P = new Uint8Array(n);
    const L = new Uint8Array(n);
    const M = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      // Weights over a few decades (a few dozen exponent groups), zeros and negatives among them.
      w0[i] = i % 97 === 0 ? 0 : rng.nextGaussian() * 10 ** (-3 * rng.nextUniform());
      const a = Math.abs(w0[i]);
      P[i] = a > 0.05 || rng.nextUniform() < 0.1 ? 1 : 0;
      L[i] = a < 0.004 ? 1 : 0;
      // Changes more likely for small weights (as bf16 storage makes them), independent of P otherwise.
      M[i] = rng.nextUniform() < (a < 0.01 ? 0.4 : 0.1) ? 1 : 0;
    }
    let changed = 0;
    for (let i = 0; i < n; i++) changed += M[i];
    const got = pairOverlaps(P, L, M, changed, w0);
    const groups = exponentGroups(w0);
    const rates = groupRates(groups, M);
    const PnotL = P.map((p, i) => p & (L[i] ^ 1));
    const want = {
      principal: overlapReference(P, M, changed, groups, rates),
      lowMagnitude: overlapReference(L, M, changed, groups, rates),
      principalNotLow: overlapReference(PnotL, M, changed, groups, rates),
    };
    for (const key of ['principal', 'lowMagnitude', 'principalNotLow'] as const) {
      const g = got[key];
      const w = want[key];
      assert.equal(g.xAndM, w.xAndM, `${n} ${key} xAndM`);
      assert.equal(g.xCount, w.xCount, `${n} ${key} xCount`);
      assert.equal(g.observed, w.observed, `${n} ${key} observed`);
      assert.equal(g.baseline, w.baseline, `${n} ${key} baseline`);
      assert.ok(
        Math.abs(g.expectedXAndM - w.expectedXAndM) <= 1e-12 * Math.max(1, w.expectedXAndM),
        `${n} ${key} expected ${g.expectedXAndM} vs ${w.expectedXAndM}`,
      );
      if (w.expectedPrecision === null) assert.equal(g.expectedPrecision, null);
      else assert.ok(Math.abs(g.expectedPrecision! - w.expectedPrecision) <= 1e-12, `${n} ${key} expectedPrecision`);
    }
    if (n > 100) assert.ok(want.principal.xAndM > 0 && want.lowMagnitude.xAndM > 0 && want.principalNotLow.xAndM > 0, 'the planted masks overlap');
  }
  assert.throws(() => pairOverlaps(new Uint8Array(2), new Uint8Array(3), new Uint8Array(3), 0, new Float32Array(3)), /masks of 2, 3, 3 entries for 3 weights/);
});
