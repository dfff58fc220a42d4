/**
 * A LoRA update's Gate II measures from its factors, against dense float64 references: the factor
 * identities (norms, projections, products) on their own, then the spectral pass on the shared-subspace
 * path (no m x n update or W1 formed) on a bf16 base with a power-law spectrum, against exact SVDs of
 * W0 and W0 + dW, and against what the bf16-rounded merge would have measured.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createBackend, type ComputeBackend } from '../../src/compute/backend';
import { lowRankDense, lowRankInner, lowRankNorms, lowRankProjections, lowRankSideOperators, type LowRankUpdate } from '../../src/linalg/low-rank';
import { sideOperators } from '../../src/linalg/truncated-svd';
import { orthonormalizeColumnMajor, transposeToColumnMajor } from '../../src/linalg/qr';
import { jacobiSvd } from '../../src/linalg/svd';
import { principalAnglesDeg } from '../../src/linalg/angles';
import { Rng } from '../../src/linalg/random';
import { encodeFloatBits } from '../../src/formats/encode';
import { analyzePair, type TensorPair } from '../../src/analysis/spectral';
import { maxAbsDifference } from '../../src/examples/planted-spectra';
import { DEFAULT_SETTINGS } from '../../src/report/schema';

let backend: ComputeBackend;
before(async () => {
  backend = await createBackend({ device: 'cpu' });
});
after(async () => {
  await backend.dispose();
});

function gaussian(rng: Rng, count: number, scale = 1): Float64Array {
  const out = new Float64Array(count);
  rng.fillGaussian(out);
  return scale === 1 ? out : out.map((x) => x * scale);
}

/** An orthonormal rows x cols basis, row-major. */
function orthonormal(rng: Rng, rows: number, cols: number): Float64Array {
  const cm = orthonormalizeColumnMajor(gaussian(rng, rows * cols), rows, cols);
  return transposeToColumnMajor(cm, cols, rows);
}

function randomUpdate(rng: Rng, rows: number, cols: number, rank: number, scale = 1): LowRankUpdate {
  return { rows, cols, rank, left: gaussian(rng, rows * rank, scale), right: gaussian(rng, rank * cols) };
}

/** The product L R entry by entry in float64. */
function dense64(u: LowRankUpdate): Float64Array {
  const d = new Float64Array(u.rows * u.cols);
  for (let i = 0; i < u.rows; i++)
    for (let j = 0; j < u.cols; j++) {
      let s = 0;
      for (let p = 0; p < u.rank; p++) s += u.left[i * u.rank + p] * u.right[p * u.cols + j];
      d[i * u.cols + j] = s;
    }
  return d;
}

const sq = (x: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return s;
};

test('factor identities: the norms, the energy in given subspaces, the inner product with W0 and the side operators equal the dense products', async () => {
  const rng = new Rng(3);
  for (const [m, n, r, k] of [
    [40, 70, 5, 6],
    [70, 40, 3, 4],
  ]) {
    const u = randomUpdate(rng, m, n, r);
    const d = dense64(u);
    const U = orthonormal(rng, m, k);
    const V = orthonormal(rng, n, k);
    // Dense references: U^T D V, U^T D, D V.
    const UtD = new Float64Array(k * n);
    for (let c = 0; c < k; c++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) UtD[c * n + j] += U[i * k + c] * d[i * n + j];
    const DV = new Float64Array(m * k);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let c = 0; c < k; c++) DV[i * k + c] += d[i * n + j] * V[j * k + c];
    const UtDV = new Float64Array(k * k);
    for (let a = 0; a < k; a++) for (let j = 0; j < n; j++) for (let c = 0; c < k; c++) UtDV[a * k + c] += UtD[a * n + j] * V[j * k + c];
    const p = lowRankProjections(u, U, V, k);
    const fro2 = sq(d);
    assert.ok(Math.abs(p.fro2 - fro2) <= 1e-12 * fro2);
    assert.ok(maxAbsDifference(p.twoSided, UtDV) <= 1e-12 * Math.sqrt(fro2));
    assert.ok(Math.abs(p.leftFro2 - sq(UtD)) <= 1e-12 * fro2);
    assert.ok(Math.abs(p.rightFro2 - sq(DV)) <= 1e-12 * fro2);
    // Norms: ||D||_F and ||D||_2 from an exact dense SVD.
    const norms = lowRankNorms(u);
    const svd = jacobiSvd(d, m, n, { vectors: false });
    assert.ok(Math.abs(norms.fro - Math.sqrt(fro2)) <= 1e-12 * Math.sqrt(fro2));
    assert.ok(Math.abs(norms.spectral - svd.S[0]) <= 1e-10 * svd.S[0], `${norms.spectral} vs ${svd.S[0]}`);
    // <W, L R> and the side operators (float32 backend products).
    const W = Float32Array.from(gaussian(rng, m * n));
    let inner = 0;
    for (let i = 0; i < m * n; i++) inner += W[i] * d[i];
    const got = await lowRankInner(backend, { rows: m, cols: n, data: W }, u);
    assert.ok(Math.abs(got - inner) <= 1e-5 * Math.sqrt(sq(W) * fro2), `${got} vs ${inner}`);
    const opLow = lowRankSideOperators(backend, u);
    const opDense = sideOperators(backend, { rows: m, cols: n, data: Float32Array.from(d) });
    assert.deepEqual([opLow.s, opLow.b, opLow.tall], [opDense.s, opDense.b, opDense.tall]);
    const l = 7;
    const Zt = { rows: l, cols: opLow.b, data: Float32Array.from(gaussian(rng, l * opLow.b)) };
    const Xt = { rows: l, cols: opLow.s, data: Float32Array.from(gaussian(rng, l * opLow.s)) };
    for (const [a, b] of [
      [await opLow.applyA(Zt), await opDense.applyA(Zt)],
      [await opLow.applyAt(Xt), await opDense.applyAt(Xt)],
    ]) {
      assert.deepEqual([a.rows, a.cols], [b.rows, b.cols]);
      assert.ok(maxAbsDifference(a.data, b.data) <= 1e-4 * Math.sqrt(sq(b.data) / b.data.length) * 10);
    }
    // The dense float32 form, for the exact path.
    assert.ok(maxAbsDifference(lowRankDense(u), d) <= 1e-6 * Math.sqrt(fro2 / d.length) * 10);
  }
});

/** A bf16 base with a power-law spectrum (sigma_i = (1 + i / 8)^-1/2, no clean gaps), as float32 values, and the bases that built it. */
function powerLawBf16(rng: Rng, m: number, n: number): { w: Float32Array; U: Float64Array; V: Float64Array } {
  const s = Math.min(m, n);
  const U = orthonormal(rng, m, s);
  const V = orthonormal(rng, n, s);
  const w = new Float32Array(m * n);
  const bits = new Uint32Array(1);
  const f = new Float32Array(bits.buffer);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let x = 0;
      for (let c = 0; c < s; c++) x += U[i * s + c] * (1 + c / 8) ** -0.5 * V[j * s + c];
      bits[0] = encodeFloatBits(x, 8, 7) << 16;
      w[i * n + j] = f[0];
    }
  return { w, U, V };
}

/** L R inside the top-t singular subspaces of the base that U (m x s) and V (n x s) built: U_t G_L, G_R V_t^T. */
function principalUpdate(rng: Rng, U: Float64Array, V: Float64Array, m: number, n: number, s: number, t: number, rank: number): LowRankUpdate {
  const gl = gaussian(rng, t * rank);
  const gr = gaussian(rng, rank * t);
  const left = new Float64Array(m * rank);
  for (let i = 0; i < m; i++) for (let c = 0; c < t; c++) for (let p = 0; p < rank; p++) left[i * rank + p] += U[i * s + c] * gl[c * rank + p];
  const right = new Float64Array(rank * n);
  for (let p = 0; p < rank; p++) for (let j = 0; j < n; j++) for (let c = 0; c < t; c++) right[p * n + j] += gr[p * t + c] * V[j * s + c];
  return { rows: m, cols: n, rank, left, right };
}

for (const [m, n, geometry] of [
  [320, 416, 'isotropic'],
  [416, 320, 'isotropic'],
  [320, 416, 'principal'],
] as const) {
  test(
    `${m} x ${n} bf16 base, power-law spectrum, rank-8 RL-sized ${geometry} adapter update: the Gate II measures from the factors equal exact SVDs of W0 and W0 + dW; the bf16 merge's would not`,
    { timeout: 300_000 },
    async () => {
      const rng = new Rng(m + 7 * n);
      const { w: w0, U, V } = powerLawBf16(rng, m, n);
      const r = 8;
      // Isotropic: random factors. Principal: the update lies in the base's top-8 subspaces (as PiSSA's does).
      const u0 = geometry === 'isotropic' ? randomUpdate(rng, m, n, r) : principalUpdate(rng, U, V, m, n, Math.min(m, n), 8, r);
      // Scaled so that ||dW||_F / ||W0||_F = 2e-3: most entries' steps are below half a bf16 ULP.
      const c = (2e-3 * Math.sqrt(sq(w0))) / lowRankNorms(u0).fro;
      const u = { ...u0, left: u0.left.map((x) => x * c) };
      const d = dense64(u);
      // The merge rounded to bf16: what the changed mask is made of.
      const bits = new Uint32Array(1);
      const f = new Float32Array(bits.buffer);
      const merged = new Float32Array(m * n);
      for (let i = 0; i < m * n; i++) {
        bits[0] = encodeFloatBits(w0[i] + d[i], 8, 7) << 16;
        merged[i] = f[0];
      }
      const mask = Uint8Array.from(merged, (x, i) => (x !== w0[i] ? 1 : 0));
      const changed = mask.reduce((a, x) => a + x, 0);
      const pair: TensorPair = { name: 't', m, n, w0, w1: merged, mask, changed, dtype0: 'BF16', dtype1: 'BF16', nonFinite: 0 };
      const k = 16;
      const kk = 64;
      const settings = { ...DEFAULT_SETTINGS, k, kSpectrum: kk };
      const factored = (await analyzePair(backend, { ...pair, update: u }, settings)).spectral;
      const rounded = (await analyzePair(backend, pair, settings)).spectral;
      assert.ok(factored.subspace && !factored.subspace.baseFromCache, 'the shared-subspace path ran');
      assert.ok(factored.subspace.converged, 'the checkpoint iteration converged');

      // Exact float64 references.
      const w064 = Float64Array.from(w0);
      const w164 = w064.map((x, i) => x + d[i]);
      const e0 = jacobiSvd(w064, m, n);
      const e1 = jacobiSvd(w164, m, n);
      const p = e0.p;
      const lead = (X: Float64Array, rows: number) => {
        const out = new Float64Array(rows * k);
        for (let i = 0; i < rows; i++) for (let j = 0; j < k; j++) out[i * k + j] = X[i * p + j];
        return out;
      };
      const anglesL = principalAnglesDeg(lead(e0.U, m), lead(e1.U, m), m, k);
      const anglesR = principalAnglesDeg(lead(e0.V, n), lead(e1.V, n), n, k);
      let num = 0;
      let den = 0;
      for (let i = 0; i < kk; i++) {
        num += (e1.S[i] - e0.S[i]) ** 2;
        den += e0.S[i] ** 2;
      }
      const nss = Math.sqrt(num / den);
      const proj = lowRankProjections(u, lead(e0.U, m), lead(e0.V, n), k);
      const off = 1 - sq(proj.twoSided) / proj.fro2;
      const first = Float64Array.from({ length: k }, (_, i) => proj.twoSided[i * k + i]);

      const angleErr = Math.max(maxAbsDifference(factored.principalAnglesLeftDeg, anglesL), maxAbsDifference(factored.principalAnglesRightDeg, anglesR));
      assert.ok(angleErr <= 0.01, `angles off by ${angleErr} deg (largest exact ${Math.max(...anglesL, ...anglesR)})`);
      assert.ok(Math.abs(factored.nss - nss) <= 0.02 * nss, `NSS ${factored.nss} vs exact ${nss}`);
      assert.ok(Math.abs(factored.offPrincipalEnergy - off) <= 1e-5, `off-principal energy ${factored.offPrincipalEnergy} vs exact ${off}`);
      assert.ok(maxAbsDifference(factored.principalShiftFirstOrder, first) <= 1e-3 * Math.max(...first.map(Math.abs)), 'first-order shifts');
      assert.ok(Math.abs(factored.updateSpectralNorm - lowRankNorms(u).spectral) <= 1e-12 * factored.updateSpectralNorm);
      for (let i = 0; i < k; i++) assert.ok(Math.abs(factored.sigmaCheckpoint[i] - e1.S[i]) <= 1e-5 * e1.S[i], `sigma_${i} of W0 + dW`);
      assert.equal(factored.nulls.matchedBy, 'norm', 'the nulls are unrounded like the measured update');
      // The masks' overlaps are the merge's either way (up to the base's top-k basis, which the shared subspace
      // of each checkpoint refines a little differently).
      assert.ok(
        Math.abs((factored.overlapPrincipal ?? NaN) - (rounded.overlapPrincipal ?? NaN)) <= 1e-3,
        `${factored.overlapPrincipal} vs ${rounded.overlapPrincipal}`,
      );
      // What the bf16 merge would have said: its update is mostly rounding, spread over every direction, so
      // its energy share reads far more off-principal than the adapter's update is. (Its top singular values
      // hardly move with that noise: the NSS of the merge is close to exact here.)
      assert.ok(
        Math.abs(rounded.offPrincipalEnergy - off) > 100 * Math.abs(factored.offPrincipalEnergy - off),
        `merge ${rounded.offPrincipalEnergy}, factored ${factored.offPrincipalEnergy}, exact ${off}`,
      );
      // A principal-targeting update, measured on its merge, would read as largely off-principal.
      if (geometry === 'principal') {
        assert.ok(off < 0.01, `the planted update lies in the top-k subspaces: off share ${off}`);
        assert.ok(rounded.offPrincipalEnergy > 0.3, `the merge's off share ${rounded.offPrincipalEnergy}`);
      }
    },
  );
}
