/**
 * Dense algebra (src/linalg): QR, symmetric eigen-solvers, Jacobi SVD, truncated (randomized and
 * exact) SVD on matrices with known spectra, principal angles, spectral norm, Weyl/Mirsky bounds.
 *
 * Tolerances are stated next to each assertion. Matrices handed to truncatedSvd are float32 (as the
 * checkpoints are), so their exact singular values differ from the prescribed ones by float32
 * rounding (relative ~1e-7 of s_1); tolerances sit well above that and well below the effects tested.
 */
process.env.ORT_DISABLE_TELEMETRY = '1';

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ComputeBackend, Matrix } from '../../src/compute/backend';
import { createBackend } from '../../src/compute/backend';
import { createReferenceBackend } from '../../src/compute/reference-backend';
import {
  DEFAULT_FULL_IF_MIN_DIM_AT_MOST,
  Rng,
  jacobiSvd,
  principalAnglesDeg,
  qr,
  singularValuesFull,
  singularValuesJacobi,
  spectralNorm,
  symmetricEigen,
  symmetricEigenJacobi,
  symmetricEigenvalues,
  symmetricEigenTop,
  truncatedSvd,
} from '../../src/linalg';
import { choleskyInverseFactor, choleskyQr2Rows } from '../../src/linalg/cholqr';

// ---------------------------------------------------------------------------------------------------
// helpers (float64, row-major)

function gaussian(rows: number, cols: number, seed: number): Float64Array {
  const a = new Float64Array(rows * cols);
  new Rng(seed).fillGaussian(a);
  return a;
}

/** rows x cols with orthonormal columns (QR of a Gaussian). */
function randomOrthonormal(rows: number, cols: number, seed: number): Float64Array {
  return qr(gaussian(rows, cols, seed), rows, cols).Q;
}

function matmul64(A: Float64Array, B: Float64Array, m: number, k: number, n: number): Float64Array {
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let t = 0; t < k; t++) {
      const a = A[i * k + t];
      if (a === 0) continue;
      for (let j = 0; j < n; j++) C[i * n + j] += a * B[t * n + j];
    }
  }
  return C;
}

function transpose64(A: Float64Array, r: number, c: number): Float64Array {
  const T = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) T[j * r + i] = A[i * c + j];
  return T;
}

/** max |X^T X - I| for a rows x cols matrix. */
function orthoError(X: Float64Array, rows: number, cols: number): number {
  const G = matmul64(transpose64(X, rows, cols), X, cols, rows, cols);
  let e = 0;
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) e = Math.max(e, Math.abs(G[i * cols + j] - (i === j ? 1 : 0)));
  return e;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]));
  return e;
}

function maxAbs(a: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i]));
  return e;
}

/** First k columns of a rows x cols matrix. */
function firstCols(X: Float64Array, rows: number, cols: number, k: number): Float64Array {
  const out = new Float64Array(rows * k);
  for (let r = 0; r < rows; r++) for (let i = 0; i < k; i++) out[r * k + i] = X[r * cols + i];
  return out;
}

interface Known {
  A: Matrix;
  U: Float64Array; // m x r
  V: Float64Array; // n x r
  s: Float64Array; // r, descending
  m: number;
  n: number;
  r: number;
}

/** A = U diag(s) V^T with random orthonormal U (m x r), V (n x r), stored as float32. */
function knownMatrix(m: number, n: number, s: ArrayLike<number>, seed: number): Known {
  const r = s.length;
  const U = randomOrthonormal(m, r, seed);
  const V = randomOrthonormal(n, r, seed + 1000);
  const US = new Float64Array(m * r);
  for (let i = 0; i < m; i++) for (let j = 0; j < r; j++) US[i * r + j] = U[i * r + j] * s[j];
  const A64 = matmul64(US, transpose64(V, n, r), m, r, n);
  return { A: { rows: m, cols: n, data: Float32Array.from(A64) }, U, V, s: Float64Array.from(s), m, n, r };
}

function relErrors(est: ArrayLike<number>, truth: ArrayLike<number>, k: number): number {
  let e = 0;
  for (let i = 0; i < k; i++) e = Math.max(e, Math.abs(est[i] - truth[i]) / truth[i]);
  return e;
}

function maxAngleDeg(U0: Float64Array, U1: Float64Array, rows: number, k: number): number {
  const a = principalAnglesDeg(U0, U1, rows, k);
  return a[a.length - 1];
}

// ---------------------------------------------------------------------------------------------------

describe('QR (Householder)', () => {
  for (const [m, n, label] of [
    [7, 3, 'tall'],
    [5, 5, 'square'],
    [3, 7, 'wide'],
    [40, 12, 'larger tall'],
  ] as const) {
    it(`reconstructs A and Q is orthonormal (${label} ${m}x${n}); tol 1e-13`, () => {
      const A = gaussian(m, n, 11 + m * n);
      const { Q, R, p } = qr(A, m, n);
      assert.equal(p, Math.min(m, n));
      // R upper triangular (exactly: zeros are written, not computed)
      for (let i = 0; i < p; i++) for (let j = 0; j < Math.min(i, n); j++) assert.equal(R[i * n + j], 0);
      assert.ok(maxAbsDiff(matmul64(Q, R, m, p, n), A) < 1e-13 * maxAbs(A) * Math.max(m, n));
      assert.ok(orthoError(Q, m, p) < 1e-14 * m);
    });
  }

  it('handles rank deficiency (zero and repeated columns) without NaN; Q stays orthonormal', () => {
    const m = 6;
    const n = 4;
    const A = gaussian(m, n, 5);
    for (let i = 0; i < m; i++) {
      A[i * n + 1] = 0; // zero column
      A[i * n + 3] = A[i * n + 0]; // repeated column
    }
    const { Q, R } = qr(A, m, n);
    assert.ok(Q.every(Number.isFinite) && R.every(Number.isFinite));
    assert.ok(maxAbsDiff(matmul64(Q, R, m, n, n), A) < 1e-13 * maxAbs(A) * m);
    assert.ok(orthoError(Q, m, n) < 1e-14 * m);
  });
});

describe('symmetric eigen-solvers', () => {
  it('2x2 and diagonal known answers (descending); tol 1e-14', () => {
    const e = symmetricEigen(Float64Array.from([2, 1, 1, 2]), 2);
    assert.ok(maxAbsDiff(e.values, [3, 1]) < 1e-14);
    // eigenvector of 3 is (1,1)/sqrt2 up to sign
    assert.ok(Math.abs(Math.abs(e.vectors[0]) - Math.SQRT1_2) < 1e-14);
    const d = symmetricEigen(Float64Array.from([1, 0, 0, 0, -2, 0, 0, 0, 5]), 3);
    assert.deepEqual(Array.from(d.values), [5, 1, -2]);
    const j = symmetricEigenJacobi(Float64Array.from([2, 1, 1, 2]), 2);
    assert.ok(maxAbsDiff(j.values, [3, 1]) < 1e-14);
  });

  it('tridiagonal Toeplitz (2, -1): eigenvalues 2 - 2cos(k pi/(n+1)), both solvers; tol 1e-13', () => {
    const n = 25;
    const A = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      A[i * n + i] = 2;
      if (i + 1 < n) {
        A[i * n + i + 1] = -1;
        A[(i + 1) * n + i] = -1;
      }
    }
    const exact = Array.from({ length: n }, (_, k) => 2 - 2 * Math.cos(((k + 1) * Math.PI) / (n + 1))).sort((a, b) => b - a);
    assert.ok(maxAbsDiff(symmetricEigen(A, n).values, exact) < 1e-13);
    assert.ok(maxAbsDiff(symmetricEigenJacobi(A, n).values, exact) < 1e-13);
    assert.ok(maxAbsDiff(symmetricEigenvalues(A, n), exact) < 1e-13);
  });

  it('random symmetric 40x40: QL and Jacobi agree, A V = V diag(l), V orthonormal; tol 1e-12 ||A||', () => {
    const n = 40;
    const G = gaussian(n, n, 3);
    const A = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) A[i * n + j] = G[i * n + j] + G[j * n + i];
    const ql = symmetricEigen(A, n);
    const ja = symmetricEigenJacobi(A, n);
    const scale = maxAbs(ql.values);
    assert.ok(maxAbsDiff(ql.values, ja.values) < 1e-12 * scale);
    for (const r of [ql, ja]) {
      const AV = matmul64(A, r.vectors, n, n, n);
      let res = 0;
      for (let i = 0; i < n; i++) for (let c = 0; c < n; c++) res = Math.max(res, Math.abs(AV[i * n + c] - r.values[c] * r.vectors[i * n + c]));
      assert.ok(res < 1e-12 * scale, `residual ${res}`);
      assert.ok(orthoError(r.vectors, n, n) < 1e-13);
    }
  });

  it('repeated eigenvalues (I + rank-1) and 1x1 / 0x0', () => {
    const n = 6;
    const u = gaussian(n, 1, 9);
    let nu = 0;
    for (const x of u) nu += x * x;
    const A = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) A[i * n + j] = (i === j ? 1 : 0) + u[i] * u[j];
    const e = symmetricEigen(A, n);
    assert.ok(maxAbsDiff(e.values, [1 + nu, 1, 1, 1, 1, 1]) < 1e-13 * (1 + nu));
    assert.ok(orthoError(e.vectors, n, n) < 1e-13);
    assert.deepEqual(Array.from(symmetricEigen(Float64Array.from([-3]), 1).values), [-3]);
    assert.equal(symmetricEigen(new Float64Array(0), 0).values.length, 0);
  });

  it('rejects non-finite input', () => {
    assert.throws(() => symmetricEigen(Float64Array.from([1, NaN, NaN, 1]), 2), /non-finite/);
  });
});

describe('one-sided Jacobi SVD', () => {
  it('known 2x2: [[3,0],[4,5]] has singular values 3 sqrt5, sqrt5; tol 1e-14', () => {
    const r = jacobiSvd(Float64Array.from([3, 0, 4, 5]), 2, 2);
    assert.ok(maxAbsDiff(r.S, [3 * Math.sqrt(5), Math.sqrt(5)]) < 1e-14);
  });

  for (const [m, n] of [
    [30, 12],
    [12, 30],
    [20, 20],
  ] as const) {
    it(`prescribed spectrum ${m}x${n}: values, reconstruction, orthonormal U and V; tol 1e-13`, () => {
      const p = Math.min(m, n);
      const s = Array.from({ length: p }, (_, i) => 10 * 0.7 ** i); // down to ~1e-2 .. 1e-4
      const U = randomOrthonormal(m, p, 21);
      const V = randomOrthonormal(n, p, 22);
      const US = new Float64Array(m * p);
      for (let i = 0; i < m; i++) for (let j = 0; j < p; j++) US[i * p + j] = U[i * p + j] * s[j];
      const A = matmul64(US, transpose64(V, n, p), m, p, n);
      const r = jacobiSvd(A, m, n);
      assert.ok(maxAbsDiff(r.S, s) < 1e-13 * s[0]);
      assert.ok(orthoError(r.U, m, p) < 1e-13);
      assert.ok(orthoError(r.V, n, p) < 1e-13);
      const USr = new Float64Array(m * p);
      for (let i = 0; i < m; i++) for (let j = 0; j < p; j++) USr[i * p + j] = r.U[i * p + j] * r.S[j];
      assert.ok(maxAbsDiff(matmul64(USr, transpose64(r.V, n, p), m, p, n), A) < 1e-13 * s[0]);
      assert.ok(maxAbsDiff(singularValuesJacobi(A, m, n), s) < 1e-13 * s[0]);
    });
  }

  it('zero matrix: zero values, orthonormal completions for U and V', () => {
    const r = jacobiSvd(new Float64Array(12), 3, 4);
    assert.deepEqual(Array.from(r.S), [0, 0, 0]);
    assert.ok(orthoError(r.U, 3, 3) < 1e-15);
    assert.ok(orthoError(r.V, 4, 3) < 1e-15);
  });
});

describe('principal angles', () => {
  it('recovers the angles of a basis rotated by known angles in orthogonal planes; tol 1e-9 deg', () => {
    const n = 50;
    const k = 7;
    const anglesDeg = [0, 1e-7, 1e-4, 0.5, 30, 60, 89.9];
    const Q = randomOrthonormal(n, 2 * k, 31);
    const U0 = firstCols(Q, n, 2 * k, k);
    const U1 = new Float64Array(n * k);
    for (let i = 0; i < k; i++) {
      const t = (anglesDeg[i] * Math.PI) / 180;
      for (let r = 0; r < n; r++) U1[r * k + i] = Math.cos(t) * Q[r * 2 * k + i] + Math.sin(t) * Q[r * 2 * k + k + i];
    }
    // Mix U1's columns by a random rotation: the subspace, hence the angles, must not change.
    const R = randomOrthonormal(k, k, 32);
    const U1m = matmul64(U1, R, n, k, k);
    const got = principalAnglesDeg(U0, U1m, n, k);
    assert.equal(got.length, k);
    for (let i = 0; i < k; i++) assert.ok(Math.abs(got[i] - anglesDeg[i]) < 1e-9, `angle ${i}: ${got[i]} vs ${anglesDeg[i]}`);
    for (let i = 1; i < k; i++) assert.ok(got[i] >= got[i - 1], 'ascending');
  });

  it('identical subspaces give 0, orthogonal ones 90', () => {
    const Q = randomOrthonormal(20, 6, 33);
    const A = firstCols(Q, 20, 6, 3);
    const B = new Float64Array(20 * 3);
    for (let r = 0; r < 20; r++) for (let i = 0; i < 3; i++) B[r * 3 + i] = Q[r * 6 + 3 + i];
    assert.ok(maxAbs(principalAnglesDeg(A, A, 20, 3)) < 1e-12);
    assert.ok(maxAbsDiff(principalAnglesDeg(A, B, 20, 3), [90, 90, 90]) < 1e-12);
  });
});

describe('truncated SVD', () => {
  let ort: ComputeBackend;
  before(async () => {
    ort = await createBackend({ device: 'cpu', threads: 1 });
  });
  after(async () => {
    await ort.dispose();
  });
  const opts = { oversample: 10, powerIterations: 2, seed: 42 };

  // Sizes above the exact-path threshold so that the randomized path runs.
  const m = 300;
  const n = 520;
  assert.ok(Math.min(m, n) > DEFAULT_FULL_IF_MIN_DIM_AT_MOST);

  it('fast-decaying spectrum (0.8^i), k = 10: values rel. err < 1e-5, subspace angles < 1e-2 deg, orthonormal U/V', async () => {
    const K = knownMatrix(
      m,
      n,
      Array.from({ length: m }, (_, i) => 0.8 ** i),
      1,
    );
    const k = 10;
    const r = await truncatedSvd(ort, K.A, k, { ...opts, residuals: true });
    assert.equal(r.method, 'randomized');
    assert.equal(r.k, k);
    assert.ok(r.residuals && maxAbs(r.residuals) < 1e-5, 'converged triplets have tiny residuals ||A v - s u||');
    assert.equal(r.U.length, m * k);
    assert.equal(r.V.length, n * k);
    assert.ok(relErrors(r.S, K.s, k) < 1e-5, `rel err ${relErrors(r.S, K.s, k)}`);
    // (s_{l+1}/s_k)^(2q+1) = 0.8^55 ~ 5e-6 rad ~ 3e-4 deg is the expected randomized error.
    assert.ok(maxAngleDeg(r.U, firstCols(K.U, m, K.r, k), m, k) < 1e-2);
    assert.ok(maxAngleDeg(r.V, firstCols(K.V, n, K.r, k), n, k) < 1e-2);
    assert.ok(orthoError(r.U, m, k) < 1e-12, 'U from float64 Householder: orthonormal to float64 rounding');
    assert.ok(orthoError(r.V, n, k) < 1e-5, 'V = B^T W / s from a float32 product');
  });

  it('near-degenerate cluster (1 - 1e-6 i, i < 4) then a gap: subspace exact, split vectors stay in the cluster', async () => {
    const s = [1, 1 - 1e-6, 1 - 2e-6, 1 - 3e-6, ...Array.from({ length: m - 4 }, (_, i) => 0.3 * 0.85 ** i)];
    const K = knownMatrix(m, n, s, 2);
    const r4 = await truncatedSvd(ort, K.A, 4, opts);
    assert.ok(relErrors(r4.S, K.s, 4) < 1e-5);
    assert.ok(maxAngleDeg(r4.U, firstCols(K.U, m, K.r, 4), m, 4) < 1e-2, 'the 4-dim cluster subspace is well determined');
    // k = 2 splits the cluster: individual vectors are arbitrary inside it, but must not leave it.
    const r2 = await truncatedSvd(ort, K.A, 2, opts);
    assert.ok(relErrors(r2.S, K.s, 2) < 1e-5);
    const U4 = firstCols(K.U, m, K.r, 4);
    for (let i = 0; i < 2; i++) {
      // residual of u_i after projecting onto the cluster span
      let res2 = 0;
      const proj = new Float64Array(4);
      for (let row = 0; row < m; row++) for (let c = 0; c < 4; c++) proj[c] += U4[row * 4 + c] * r2.U[row * 2 + i];
      for (let row = 0; row < m; row++) {
        let v = r2.U[row * 2 + i];
        for (let c = 0; c < 4; c++) v -= U4[row * 4 + c] * proj[c];
        res2 += v * v;
      }
      assert.ok(Math.sqrt(res2) < 1e-4, `u_${i} leaves the cluster by ${Math.sqrt(res2)}`);
    }
  });

  it('slowly decaying spectrum 1/(1 + i/10): estimates are lower bounds, rel. err < 5e-2 at q = 2, more power iterations help, residuals flag it', async () => {
    const K = knownMatrix(
      m,
      n,
      Array.from({ length: m }, (_, i) => 1 / (1 + i / 10)),
      3,
    );
    const k = 16;
    const r2 = await truncatedSvd(ort, K.A, k, { ...opts, residuals: true });
    const r6 = await truncatedSvd(ort, K.A, k, { ...opts, powerIterations: 6 });
    // The residuals expose the unconverged trailing vectors (their angles to the truth are degrees here).
    assert.ok(r2.residuals && maxAbs(r2.residuals) > 1e-3);
    for (let i = 0; i < k; i++) assert.ok(r2.S[i] <= K.s[i] * (1 + 1e-6), 'Rayleigh-Ritz values never exceed the truth');
    const e2 = relErrors(r2.S, K.s, k);
    const e6 = relErrors(r6.S, K.s, k);
    assert.ok(e2 < 5e-2, `q=2 rel err ${e2}`);
    assert.ok(e6 < e2, `q=6 (${e6}) should beat q=2 (${e2})`);
  });

  it('rank-5 matrix (LoRA-like), k = 16: exact top 5, ~0 beyond, orthonormal bases, no NaN', async () => {
    const K = knownMatrix(m, n, [5, 4, 3, 2, 1], 4);
    const r = await truncatedSvd(ort, K.A, 16, opts);
    assert.ok(relErrors(r.S, K.s, 5) < 1e-5);
    for (let i = 5; i < 16; i++) assert.ok(r.S[i] < 1e-5 * r.S[0]);
    assert.ok(r.U.every(Number.isFinite) && r.V.every(Number.isFinite));
    assert.ok(orthoError(r.U, m, 16) < 1e-12);
    assert.ok(orthoError(r.V, n, 16) < 1e-5);
    assert.ok(maxAngleDeg(firstCols(r.U, m, 16, 5), K.U, m, 5) < 1e-2);
  });

  it('tall matrix (A^T of the fast-decay case): same values, U and V swap roles', async () => {
    const K = knownMatrix(
      m,
      n,
      Array.from({ length: m }, (_, i) => 0.8 ** i),
      1,
    );
    const At: Matrix = { rows: n, cols: m, data: Float32Array.from(transpose64(Float64Array.from(K.A.data), m, n)) };
    const r = await truncatedSvd(ort, At, 10, opts);
    assert.equal(r.rows, n);
    assert.equal(r.U.length, n * 10);
    assert.ok(relErrors(r.S, K.s, 10) < 1e-5);
    assert.ok(maxAngleDeg(r.U, firstCols(K.V, n, K.r, 10), n, 10) < 1e-2);
    assert.ok(maxAngleDeg(r.V, firstCols(K.U, m, K.r, 10), m, 10) < 1e-2);
  });

  it('reference backend gives the same result as onnxruntime (rel. 1e-5 on values)', async () => {
    const K = knownMatrix(
      m,
      n,
      Array.from({ length: m }, (_, i) => 0.8 ** i),
      1,
    );
    const a = await truncatedSvd(ort, K.A, 8, opts);
    const b = await truncatedSvd(createReferenceBackend(), K.A, 8, opts);
    assert.ok(relErrors(a.S, b.S, 8) < 1e-5);
    assert.ok(maxAngleDeg(a.U, b.U, m, 8) < 1e-2);
  });

  it('is deterministic for a seed', async () => {
    const K = knownMatrix(
      m,
      n,
      Array.from({ length: m }, (_, i) => 1 / (1 + i)),
      5,
    );
    const a = await truncatedSvd(ort, K.A, 6, opts);
    const b = await truncatedSvd(ort, K.A, 6, opts);
    assert.deepEqual(Array.from(a.S), Array.from(b.S));
    assert.deepEqual(Array.from(a.U), Array.from(b.U));
  });

  it('exact path for small matrices: method full, all values, k capped at min(m, n); rel. err < 1e-5', async () => {
    const s = Array.from({ length: 60 }, (_, i) => 3 * 0.95 ** i);
    const K = knownMatrix(60, 200, s, 6);
    const r = await truncatedSvd(ort, K.A, 64, opts);
    assert.equal(r.method, 'full');
    assert.equal(r.k, 60);
    assert.ok(r.fullSpectrum && r.fullSpectrum.length === 60);
    assert.ok(relErrors(r.S, K.s, 60) < 1e-5);
    assert.ok(maxAngleDeg(r.U, K.U, 60, 60) < 1e-3, 'full bases span the same (whole) space');
    assert.ok(maxAngleDeg(firstCols(r.V, 200, 60, 10), firstCols(K.V, 200, 60, 10), 200, 10) < 1e-3);
    // Tall orientation through the exact path too.
    const At: Matrix = { rows: 200, cols: 60, data: Float32Array.from(transpose64(Float64Array.from(K.A.data), 60, 200)) };
    const rt = await truncatedSvd(ort, At, 10, opts);
    assert.equal(rt.method, 'full');
    assert.ok(relErrors(rt.S, K.s, 10) < 1e-5);
    assert.ok(maxAngleDeg(rt.U, firstCols(K.V, 200, 60, 10), 200, 10) < 1e-3);
    // singularValuesFull agrees with one-sided Jacobi on the same float32 data (rel. to s_1: 1e-12).
    const jac = singularValuesJacobi(Float64Array.from(K.A.data), 60, 200);
    assert.ok(maxAbsDiff(singularValuesFull(K.A), jac) < 1e-12 * jac[0]);
  });

  it('zero matrix: zero values, orthonormal U and V; NaN input is rejected', async () => {
    const Z: Matrix = { rows: m, cols: n, data: new Float32Array(m * n) };
    const r = await truncatedSvd(ort, Z, 8, opts);
    assert.ok(r.S.every((v) => v === 0));
    assert.ok(orthoError(r.U, m, 8) < 1e-12);
    assert.ok(orthoError(r.V, n, 8) < 1e-12);
    const bad: Matrix = { rows: m, cols: n, data: new Float32Array(m * n) };
    bad.data[12345] = NaN;
    await assert.rejects(truncatedSvd(ort, bad, 8, opts), /NaN or Inf/);
    const badSmall: Matrix = { rows: 3, cols: 3, data: Float32Array.from([1, 2, 3, 4, Infinity, 6, 7, 8, 9]) };
    await assert.rejects(truncatedSvd(ort, badSmall, 2, opts), /NaN or Inf/);
  });

  it('spectral norm: subspace iteration matches s_1 (rel. 1e-6), also with a tiny gap; exact path agrees', async () => {
    const K = knownMatrix(
      m,
      n,
      Array.from({ length: m }, (_, i) => 0.8 ** i),
      1,
    );
    const it1 = await spectralNorm(ort, K.A, { fullIfMinDimAtMost: 0 });
    assert.equal(it1.method, 'subspace-iteration');
    assert.ok(it1.converged);
    assert.ok(Math.abs(it1.value - 1) < 1e-6, `${it1.value}`);
    const gap = knownMatrix(m, n, [2, 2 * (1 - 1e-3), ...Array.from({ length: 50 }, (_, i) => 1.9 * 0.95 ** i)], 7);
    const it2 = await spectralNorm(ort, gap.A, { fullIfMinDimAtMost: 0 });
    assert.ok(Math.abs(it2.value - 2) < 2e-6, `${it2.value}`);
    const ex = await spectralNorm(ort, gap.A, { fullIfMinDimAtMost: 1000 });
    assert.equal(ex.method, 'full');
    assert.ok(Math.abs(ex.value - 2) < 2e-6);
  });

  it('Weyl and Mirsky bounds hold for W1 = W0 + dW (spec M6)', async () => {
    const mm = 90;
    const nn = 150;
    const W0 = Float32Array.from(gaussian(mm, nn, 50));
    const dW64 = gaussian(mm, nn, 51);
    const W1 = new Float32Array(mm * nn);
    for (let i = 0; i < W1.length; i++) W1[i] = W0[i] + 1e-3 * dW64[i];
    // dW as stored: the exact difference of the two float32 matrices.
    const dW = new Float32Array(mm * nn);
    for (let i = 0; i < dW.length; i++) dW[i] = W1[i] - W0[i];
    const s0 = singularValuesFull({ rows: mm, cols: nn, data: W0 });
    const s1 = singularValuesFull({ rows: mm, cols: nn, data: W1 });
    const dWm: Matrix = { rows: mm, cols: nn, data: dW };
    const norm2 = (await spectralNorm(ort, dWm)).value;
    let fro2 = 0;
    for (const v of dW) fro2 += v * v;
    let mirsky = 0;
    for (let i = 0; i < s0.length; i++) {
      const d = Math.abs(s1[i] - s0[i]);
      assert.ok(d <= norm2 * (1 + 1e-6), `Weyl at ${i}: ${d} > ${norm2}`);
      mirsky += d * d;
    }
    assert.ok(mirsky <= fro2 * (1 + 1e-6), `Mirsky: ${mirsky} > ${fro2}`);
  });
});

describe('CholeskyQR2 on the backend', () => {
  it('the inverse Cholesky factor is lower triangular and whitens G: Li G Li^T = I', () => {
    for (const l of [1, 5, 97]) {
      // G = X^T X + l I for a Gaussian X: symmetric positive definite, condition number modest.
      const X = gaussian(l + 3, l, 5 + l);
      const G = new Float64Array(l * l);
      for (let i = 0; i < l; i++) {
        for (let j = 0; j < l; j++) {
          let v = i === j ? l : 0;
          for (let t = 0; t < l + 3; t++) v += X[t * l + i] * X[t * l + j];
          G[i * l + j] = v;
        }
      }
      const Li = choleskyInverseFactor(G, l);
      assert.ok(Li, `l = ${l}`);
      for (let i = 0; i < l; i++) for (let j = i + 1; j < l; j++) assert.equal(Li[i * l + j], 0, `upper entry ${i},${j}`);
      let worst = 0;
      for (let i = 0; i < l; i++) {
        for (let j = 0; j < l; j++) {
          let v = 0;
          for (let a = 0; a < l; a++) for (let b = 0; b < l; b++) v += Li[i * l + a] * G[a * l + b] * Li[j * l + b];
          worst = Math.max(worst, Math.abs(v - (i === j ? 1 : 0)));
        }
      }
      assert.ok(worst < 1e-12, `l = ${l}: |Li G Li^T - I| = ${worst}`);
    }
    // Not positive definite: a clear null, not NaNs.
    assert.equal(choleskyInverseFactor(Float64Array.from([1, 2, 2, 1]), 2), null);
  });

  it('orthonormalises a well-conditioned panel to float32 rounding and refuses a rank-deficient one', async () => {
    const be = createReferenceBackend();
    const l = 6;
    const b = 200;
    const Zt: Matrix = { rows: l, cols: b, data: Float32Array.from(gaussian(l, b, 61)) };
    const Q = await choleskyQr2Rows(be, Zt);
    assert.ok(Q);
    assert.ok(orthoError(transpose64(Float64Array.from(Q.data), l, b), b, l) < 1e-5);
    const bad: Matrix = { rows: l, cols: b, data: new Float32Array(Zt.data) };
    bad.data.copyWithin(b, 0, b); // row 1 = row 0
    assert.equal(await choleskyQr2Rows(be, bad), null);
  });
});

// ---------------------------------------------------------------------------------------------------
// Degenerate matrices on both SVD paths: zero rows and columns, all zero, rank 1, entries near the
// float32 limit. References are independent of src/linalg: a slow cyclic Jacobi eigen-solver of the
// short side's Gram matrix in float64, written here, or the known answer of u v^T.

/** Singular values (descending) of a row-major m x n matrix from cyclic Jacobi on its short-side Gram, float64. */
function referenceSingularValues(A: ArrayLike<number>, m: number, n: number): Float64Array {
  const tall = m > n;
  const s = Math.min(m, n);
  const b = Math.max(m, n);
  const at = (i: number, t: number): number => (tall ? A[t * n + i] : A[i * n + t]); // short-side row i, entry t
  const G = new Float64Array(s * s);
  for (let i = 0; i < s; i++)
    for (let j = 0; j <= i; j++) {
      let acc = 0;
      for (let t = 0; t < b; t++) acc += at(i, t) * at(j, t);
      G[i * s + j] = acc;
      G[j * s + i] = acc;
    }
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < s; i++) {
      for (let j = 0; j < s; j++) {
        if (i === j) diag += G[i * s + i] ** 2;
        else off += G[i * s + j] ** 2;
      }
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < s - 1; p++)
      for (let q = p + 1; q < s; q++) {
        const gpq = G[p * s + q];
        if (gpq === 0) continue;
        const theta = (G[q * s + q] - G[p * s + p]) / (2 * gpq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const sn = t * c;
        for (let k = 0; k < s; k++) {
          const gkp = G[k * s + p];
          const gkq = G[k * s + q];
          G[k * s + p] = c * gkp - sn * gkq;
          G[k * s + q] = sn * gkp + c * gkq;
        }
        for (let k = 0; k < s; k++) {
          const gpk = G[p * s + k];
          const gqk = G[q * s + k];
          G[p * s + k] = c * gpk - sn * gqk;
          G[q * s + k] = sn * gpk + c * gqk;
        }
      }
  }
  return Float64Array.from({ length: s }, (_, i) => Math.sqrt(Math.max(G[i * s + i], 0)))
    .sort()
    .reverse();
}

/** max_i ||A v_i - s_i u_i||_2 over the returned triplets, float64 from the float32 data. */
function maxResidual(A: Matrix, r: { U: Float64Array; S: Float64Array; V: Float64Array; k: number }): number {
  const { rows: m, cols: n } = A;
  let worst = 0;
  for (let i = 0; i < r.k; i++) {
    let acc = 0;
    for (let row = 0; row < m; row++) {
      let av = 0;
      for (let j = 0; j < n; j++) av += A.data[row * n + j] * r.V[j * r.k + i];
      acc += (av - r.S[i] * r.U[row * r.k + i]) ** 2;
    }
    worst = Math.max(worst, Math.sqrt(acc));
  }
  return worst;
}

/** A float32 m x n matrix with a fast-decaying spectrum (s_i = 0.6^i), so the randomized path is accurate. */
function decaying(m: number, n: number, seed: number): Float32Array {
  const s = Math.min(m, n);
  return knownMatrix(
    m,
    n,
    Array.from({ length: s }, (_, i) => 0.6 ** i),
    seed,
  ).A.data;
}

const DEGENERATE_CASES: [string, (m: number, n: number) => Float32Array][] = [
  ['a zero row', (m, n) => decaying(m, n, 71).fill(0, 0, n)],
  [
    'a zero column',
    (m, n) => {
      const a = decaying(m, n, 73);
      for (let i = 0; i < m; i++) a[i * n + 2] = 0;
      return a;
    },
  ],
  [
    'a zero row and a zero column',
    (m, n) => {
      const a = decaying(m, n, 79).fill(0, n * (m - 1), n * m);
      for (let i = 0; i < m; i++) a[i * n] = 0;
      return a;
    },
  ],
  ['all zero', (m, n) => new Float32Array(m * n)],
  [
    'rank 1 (u v^T)',
    (m, n) => {
      const a = new Float32Array(m * n);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) a[i * n + j] = (1 + (i % 7)) * 0.25 * ((j % 3) - 1.5);
      return a;
    },
  ],
  [
    'entries near the float32 limit (1e38)',
    (m, n) => {
      const a = decaying(m, n, 83);
      let max = 0;
      for (const x of a) max = Math.max(max, Math.abs(x));
      return a.map((x) => (x / max) * 3e38);
    },
  ],
];

describe('truncated SVD of degenerate matrices, both paths', () => {
  const be = createReferenceBackend();
  for (const path of ['full', 'randomized'] as const) {
    for (const [m, n] of [
      [40, 40],
      [30, 50],
      [50, 30],
    ]) {
      for (const [label, make] of DEGENERATE_CASES) {
        it(`${path}, ${m} x ${n}, ${label}: singular values match the reference, vectors orthonormal`, async () => {
          const A: Matrix = { rows: m, cols: n, data: make(m, n) };
          const s = Math.min(m, n);
          // The full path with k = the whole short side completes the vectors of every zero value.
          const k = path === 'full' ? s : 6;
          const r = await truncatedSvd(be, A, k, {
            oversample: 10,
            powerIterations: 4,
            seed: 5,
            fullIfMinDimAtMost: path === 'full' ? DEFAULT_FULL_IF_MIN_DIM_AT_MOST : 0,
          });
          assert.equal(r.method, path);
          assert.equal(r.k, k);
          for (const x of [...r.S, ...r.U, ...r.V]) assert.ok(Number.isFinite(x));
          const ref = referenceSingularValues(A.data, m, n);
          const top = ref[0];
          if (label.startsWith('rank 1')) {
            // Known answer: s_1 = ||u|| ||v||, every other value zero.
            let uu = 0;
            let vv = 0;
            for (let i = 0; i < m; i++) uu += ((1 + (i % 7)) * 0.25) ** 2;
            for (let j = 0; j < n; j++) vv += ((j % 3) - 1.5) ** 2;
            assert.ok(Math.abs(r.S[0] - Math.sqrt(uu * vv)) <= 1e-6 * Math.sqrt(uu * vv), `s_1 ${r.S[0]} vs ${Math.sqrt(uu * vv)}`);
            for (let i = 1; i < k; i++) assert.ok(r.S[i] <= 1e-6 * r.S[0], `s_${i + 1} = ${r.S[i]}`);
          }
          // Values: within 1e-5 of s_1 (float32 data; the exact path's Gram squares only float64 rounding).
          for (let i = 0; i < k; i++) assert.ok(Math.abs(r.S[i] - ref[i]) <= 1e-5 * top, `s_${i + 1}: ${r.S[i]} vs ${ref[i]}`);
          if (top === 0) assert.ok(r.S.every((v) => v === 0));
          // Vectors: orthonormal (the long side comes from a float32 product: 1e-5), and A v_i = s_i u_i.
          assert.ok(orthoError(r.U, m, k) < 1e-5, `U: ${orthoError(r.U, m, k)}`);
          assert.ok(orthoError(r.V, n, k) < 1e-5, `V: ${orthoError(r.V, n, k)}`);
          assert.ok(maxResidual(A, r) <= 1e-4 * top, `residual ${maxResidual(A, r)} vs s_1 ${top}`);
        });
      }
    }
  }

  it('spectral norm of a matrix with entries near the float32 limit, both paths', async () => {
    const m = 300;
    const n = 280;
    const a = decaying(m, n, 89);
    let max = 0;
    for (const x of a) max = Math.max(max, Math.abs(x));
    const A: Matrix = { rows: m, cols: n, data: a.map((x) => (x / max) * 3e38) };
    const ref = (await spectralNorm(be, { rows: m, cols: n, data: a }, {})).value * (3e38 / max);
    const sub = await spectralNorm(be, A, {});
    assert.equal(sub.method, 'subspace-iteration');
    assert.ok(Math.abs(sub.value - ref) <= 1e-5 * ref, `${sub.value} vs ${ref}`);
    const full = await spectralNorm(be, A, { fullIfMinDimAtMost: 300 });
    assert.equal(full.method, 'full');
    assert.ok(Math.abs(full.value - ref) <= 1e-5 * ref, `${full.value} vs ${ref}`);
  });

  it('a square matrix with a zero row on the default paths (side 256 exact, 300 randomized) keeps orthonormal vectors', async () => {
    for (const side of [256, 300]) {
      const A: Matrix = { rows: side, cols: side, data: decaying(side, side, 97).fill(0, 0, side) };
      const k = side <= DEFAULT_FULL_IF_MIN_DIM_AT_MOST ? side : 16;
      const r = await truncatedSvd(be, A, k, { oversample: 10, powerIterations: 4, seed: 5 });
      assert.equal(r.method, side <= DEFAULT_FULL_IF_MIN_DIM_AT_MOST ? 'full' : 'randomized');
      assert.ok(orthoError(r.U, side, k) < 1e-5);
      assert.ok(orthoError(r.V, side, k) < 1e-5);
      if (k === side) assert.ok(r.S[side - 1] <= 1e-7 * r.S[0], `the zero row leaves a zero value: ${r.S[side - 1]}`);
    }
  });
});

describe('symmetricEigenTop (inverse iteration for the wanted vectors)', () => {
  const cases: [string, number, (i: number) => number][] = [
    ['power-law', 120, (i) => 1 / (1 + i / 8)],
    ['flat, close eigenvalues', 90, (i) => 1 + 1e-4 * Math.sin(i)],
    ['repeated eigenvalues', 60, (i) => (i < 7 ? 5 : i < 12 ? 3 : 1 / (1 + i))],
    ['a zero block', 40, (i) => (i < 30 ? 1 + i : 0)],
  ];
  for (const [label, n, lam] of cases) {
    it(`${label}: values equal the QL solver's, vectors are orthonormal eigenvectors`, () => {
      // A = Q diag(lam) Q^T with a random orthogonal Q: the eigenvalues are known.
      const Q = randomOrthonormal(n, n, n + 17);
      const A = new Float64Array(n * n);
      for (let r = 0; r < n; r++)
        for (let c = 0; c < n; c++) {
          let s = 0;
          for (let t = 0; t < n; t++) s += Q[r * n + t] * lam(t) * Q[c * n + t];
          A[r * n + c] = s;
        }
      for (let r = 0; r < n; r++) for (let c = 0; c < r; c++) A[r * n + c] = A[c * n + r];
      const kv = Math.min(24, n);
      const top = symmetricEigenTop(A, n, kv);
      const ref = symmetricEigen(A, n);
      const scale = Math.max(...ref.values.map(Math.abs));
      for (let i = 0; i < n; i++) assert.ok(Math.abs(top.values[i] - ref.values[i]) <= 1e-13 * scale, `value ${i}`);
      const exact = Array.from({ length: n }, (_, i) => lam(i)).sort((a, b) => b - a);
      for (let i = 0; i < n; i++) assert.ok(Math.abs(top.values[i] - exact[i]) <= 1e-12 * scale, `value ${i} against the construction`);
      for (let j = 0; j < kv; j++) {
        let res = 0;
        for (let r = 0; r < n; r++) {
          let s = 0;
          for (let c = 0; c < n; c++) s += A[r * n + c] * top.vectors[c * kv + j];
          res = Math.max(res, Math.abs(s - top.values[j] * top.vectors[r * kv + j]));
        }
        assert.ok(res <= 1e-12 * scale, `residual of vector ${j}: ${res}`);
        for (let i = 0; i <= j; i++) {
          let d = 0;
          for (let r = 0; r < n; r++) d += top.vectors[r * kv + i] * top.vectors[r * kv + j];
          assert.ok(Math.abs(d - (i === j ? 1 : 0)) <= 1e-12, `orthonormality ${i}, ${j}: ${d}`);
        }
      }
    });
  }
});
