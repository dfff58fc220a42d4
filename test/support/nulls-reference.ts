/**
 * The verdict's nulls as first written (one plain loop per step), kept as the slow reference the fast
 * implementation in src/analysis/nulls.ts must equal to the bit.
 */
import type { ComputeBackend } from '../../src/compute/backend';
import {
  analyticNulls,
  NO_ROUNDING,
  shapeLikeSpectrum,
  roundBf16,
  type NullInput,
  type NullMeasures,
  type SimulatedNulls,
  type RoundingEstimate,
} from '../../src/analysis/nulls';
import { Rng } from '../../src/linalg/random';
import { float32BitsToBf16Bits } from '../../src/formats/dtype';
import { changedByEta } from '../../src/analysis/masks';

function sig7(x: number): number {
  return Number(x.toPrecision(7));
}

/** The M1 rule applied to a simulated stored value (bf16 pair: bit patterns, +0 == -0; else eta). */
function changedEntry(w0: number, w1: number, bothBf16: boolean, eta: number): boolean {
  if (bothBf16) return w1 !== w0; // both exact bf16 values held in float32: equal values <=> equal bits, +0 == -0
  return changedByEta(w0, w1, eta);
}

/** Finds the scale s at which round(w0 + s z) changes the target share of entries, on a fixed subsample. */
function matchScale(w0: Float32Array, w2: number, z: Float32Array, target: number, bothBf16: boolean, eta: number, rng: Rng): number {
  const numel = w0.length;
  const sampleSize = Math.min(numel, 1 << 16);
  const idx = new Uint32Array(sampleSize);
  if (sampleSize === numel) for (let i = 0; i < numel; i++) idx[i] = i;
  else for (let i = 0; i < sampleSize; i++) idx[i] = rng.nextU32() % numel;
  let z2 = 0;
  for (let i = 0; i < numel; i++) z2 += z[i] * z[i];
  const base = z2 > 0 ? Math.sqrt(w2 / z2) : 1;
  const share = (s: number): number => {
    let c = 0;
    for (let j = 0; j < sampleSize; j++) {
      const i = idx[j];
      if (changedEntry(w0[i], roundBf16(w0[i] + s * z[i]), bothBf16, eta)) c++;
    }
    return c / sampleSize;
  };
  // Geometric bisection with sqrt only (correctly rounded in IEEE 754, unlike exp and log, whose last bit
  // may differ between Node versions): the engine and the CLI must agree to the bit.
  let lo = base * 1e-9;
  let hi = base * 10;
  for (let it = 0; it < 40; it++) {
    const mid = Math.sqrt(lo * hi);
    if (share(mid) < target) lo = mid;
    else hi = mid;
  }
  return Math.sqrt(lo * hi);
}

/**
 * The null's expected measures once stored: D = round(W0 + s Z) - W0 splits into alpha s Z (the part of
 * the reference update that survives rounding, alpha by least squares) and the rounding residual N,
 * which acts entry by entry. The first part's measures are the null's analytic expectations (`signal`);
 * the residual's are their expectation over independent signs, sum_ij N_ij^2 a_i b_j (a, b the row
 * leverages of U0_k, V0_k) and sum_l sum_ij N_ij^2 U_il^2 V_jl^2. Both are sums over many entries, so
 * the null carries almost none of the sampling noise of a single draw.
 */
interface StoredNull {
  measures: NullMeasures;
  rounding: RoundingEstimate;
}

async function expectedStored(backend: ComputeBackend, z: Float32Array, d: Float32Array, s: number, signal: NullMeasures, inp: NullInput): Promise<StoredNull> {
  const { m, n, k } = inp;
  let dz = 0;
  let zz = 0;
  let dd = 0;
  for (let i = 0; i < d.length; i++) {
    const zs = s * z[i];
    dz += d[i] * zs;
    zz += zs * zs;
    dd += d[i] * d[i];
  }
  if (!(dd > 0)) return { measures: { principalEnergy: 0, spectralSharePrincipal: 0 }, rounding: NO_ROUNDING };
  const alpha = zz > 0 ? dz / zz : 0;
  const U = inp.U0k.data;
  const V = inp.V0k.data;
  const a = new Float64Array(m);
  const b = new Float64Array(n);
  for (let i = 0; i < m; i++) for (let l = 0; l < k; l++) a[i] += U[i * k + l] ** 2;
  const V2 = new Float32Array(n * k);
  for (let j = 0; j < n; j++)
    for (let l = 0; l < k; l++) {
      V2[j * k + l] = V[j * k + l] ** 2;
      b[j] += V2[j * k + l];
    }
  // N^2 in place of d (d is not needed afterwards).
  let noiseInside = 0;
  for (let i = 0; i < m; i++) {
    let row = 0;
    for (let j = 0; j < n; j++) {
      const idx = i * n + j;
      const r = d[idx] - alpha * s * z[idx];
      d[idx] = r * r;
      row += d[idx] * b[j];
    }
    noiseInside += row * a[i];
  }
  const N2V2 = await backend.matmul({ rows: m, cols: n, data: d }, { rows: n, cols: k, data: V2 }); // m x k
  let noiseDiag = 0;
  for (let i = 0; i < m; i++) for (let l = 0; l < k; l++) noiseDiag += N2V2.data[i * k + l] * U[i * k + l] ** 2;
  const kept = alpha * alpha * zz;
  // Seven significant digits: far beyond what a simulated reference is good for, and the last bits of
  // long float sums are not worth a difference between two machines' reports.
  return {
    measures: {
      principalEnergy: sig7(Math.min(1, (kept * signal.principalEnergy + noiseInside) / dd)),
      spectralSharePrincipal: sig7(Math.sqrt(Math.max(0, kept * signal.spectralSharePrincipal ** 2 + noiseDiag) / dd)),
    },
    rounding: {
      share: sig7(Math.min(1, Math.max(0, 1 - kept / dd))),
      principalEnergy: sig7(dd > kept ? noiseInside / (dd - kept) : 0),
      diagonalEnergy: sig7(dd > kept ? noiseDiag / (dd - kept) : 0),
    },
  };
}

/** Stores s * z on top of w0 in bf16, as the checkpoint did (into `out`), and returns the stored update. */
function storeBf16(w0: Float32Array, z: Float32Array, s: number, out: Float32Array): Float32Array {
  // roundBf16 inlined: the sum rounded to float32 in `out`, its bits rounded to bf16 in place.
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < w0.length; i++) {
    out[i] = w0[i] + s * z[i];
    bits[i] = float32BitsToBf16Bits(bits[i]) << 16;
    out[i] -= w0[i];
  }
  return out;
}

/**
 * Both nulls for one tensor (deterministic from the seed). A checkpoint stored in bf16 gets its rounding
 * simulated: each reference update is drawn, scaled to change as many entries as the checkpoint did,
 * rounded, and its expected measures taken as stored. Other dtypes: the analytic values.
 */
export async function simulateNullsReference(backend: ComputeBackend, inp: NullInput): Promise<SimulatedNulls> {
  const numel = inp.m * inp.n;
  const analytic = analyticNulls(inp.m, inp.n, inp.k, inp.sigma, inp.baseFro2);
  if (!inp.checkpointBf16) return { ...analytic, rounding: NO_ROUNDING, matchedBy: 'norm' };
  const rng = new Rng(inp.seed);
  const z = new Float32Array(numel);
  const d = new Float32Array(numel);
  const target = inp.changed / numel;
  const run = async (signal: NullMeasures): Promise<StoredNull> => {
    const s = matchScale(inp.w0, inp.baseFro2, z, target, inp.baseBf16, inp.eta, rng);
    return expectedStored(backend, z, storeBf16(inp.w0, z, s, d), s, signal, inp);
  };
  // One draw for both nulls, the gradient-like one shaped from the direction-blind one.
  rng.fillGaussianZiggurat(z);
  const blind = await run(analytic.directionBlind);
  inp.signal?.throwIfAborted();
  await shapeLikeSpectrum(backend, z, inp);
  const gradient = await run(analytic.gradientLike);
  return { directionBlind: blind.measures, gradientLike: gradient.measures, rounding: blind.rounding, matchedBy: 'changed' };
}
