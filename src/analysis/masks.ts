/**
 * Masks over the entries of a weight matrix: the changed mask M (same rule as M1), exact top/bottom-alpha
 * selections for the principal (P) and low-magnitude (L) masks of M7, and overlaps with their baselines,
 * including the precision-controlled baseline (entries grouped by the bf16 exponent of W0).
 */
import { decodeToFloat32, type Dtype } from '../formats/dtype';

/** Changed mask of one chunk, with the M1 rule (non-finite entries are 0). */
export function maskChunk(
  d0: Dtype,
  b0: Uint8Array,
  d1: Dtype,
  b1: Uint8Array,
  count: number,
  eta: number,
  out: Uint8Array,
  f0: Float32Array,
  f1: Float32Array,
): void {
  if (d0 === 'BF16' && d1 === 'BF16') {
    const a = new Uint16Array(b0.buffer, b0.byteOffset, count);
    const b = new Uint16Array(b1.buffer, b1.byteOffset, count);
    for (let i = 0; i < count; i++) {
      const x = a[i];
      const y = b[i];
      out[i] = (x & 0x7f80) !== 0x7f80 && (y & 0x7f80) !== 0x7f80 && x !== y && ((x | y) & 0x7fff) !== 0 ? 1 : 0;
    }
    return;
  }
  decodeToFloat32(d0, b0, count, f0);
  decodeToFloat32(d1, b1, count, f1);
  for (let i = 0; i < count; i++) {
    const x = f0[i];
    const y = f1[i];
    out[i] = Number.isFinite(x) && Number.isFinite(y) && changedByEta(x, y, eta) ? 1 : 0;
  }
}

/** The M1 rule for two finite non-bf16 values: changed when |w1 - w0| > eta * max(|w0|, |w1|). */
export function changedByEta(x: number, y: number, eta: number): boolean {
  return Math.abs(y - x) > eta * Math.max(Math.abs(x), Math.abs(y));
}

/**
 * The changed mask (1 = changed) of a whole tensor with the M1 rule, and its counts: bf16 pairs by bit
 * pattern (+0 == -0), other floats by |dw| <= eta max(|w0|, |w1|). Non-finite entries are 0 in the mask and
 * counted in `nonFinite`. `w0`/`w1` are the decoded values (left as they are).
 */
export function changedMask(
  dtype0: Dtype,
  bytes0: Uint8Array,
  w0: Float32Array,
  dtype1: Dtype,
  bytes1: Uint8Array,
  w1: Float32Array,
  eta: number,
): { mask: Uint8Array; changed: number; nonFinite: number } {
  const n = w0.length;
  const mask = new Uint8Array(n);
  maskChunk(dtype0, bytes0, dtype1, bytes1, n, eta, mask, w0, w1);
  let changed = 0;
  let nonFinite = 0;
  for (let i = 0; i < n; i++) {
    changed += mask[i];
    if (!Number.isFinite(w0[i]) || !Number.isFinite(w1[i])) nonFinite++;
  }
  return { mask, changed, nonFinite };
}

/**
 * Exact selection of `count` entries by |value|: the largest (`largest = true`) or smallest ones.
 * Ties are broken by flat index ascending, so the result is deterministic and has exactly `count` ones.
 */
export function selectByMagnitude(values: Float32Array, count: number, largest: boolean): Uint8Array {
  const n = values.length;
  const out = new Uint8Array(n);
  if (count <= 0) return out;
  if (count >= n) return out.fill(1);
  // For non-negative floats the bit patterns order like the values: select on the integers (the bits with
  // the sign cleared, so no copy of |values|), by radix.
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  const kth = largest ? n - count : count - 1;
  const t = kthSmallestBits(bits, kth, ABS_MASK);
  let taken = 0;
  // Branch-free marking: both sides are below 2^31, so the sign of their difference is the comparison.
  if (largest) {
    for (let i = 0; i < n; i++) {
      const above = (t - (bits[i] & ABS_MASK)) >>> 31;
      out[i] = above;
      taken += above;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const below = ((bits[i] & ABS_MASK) - t) >>> 31;
      out[i] = below;
      taken += below;
    }
  }
  for (let i = 0; i < n && taken < count; i++)
    if ((bits[i] & ABS_MASK) === t) {
      out[i] = 1;
      taken++;
    }
  return out;
}

/** The bits of a float32 without its sign: |x|'s bit pattern. */
const ABS_MASK = 0x7fffffff;

/**
 * The k-th smallest (0-based) of unsigned 32-bit keys (`bits[i] & mask`), by two histogram passes (high
 * 16 bits, then the low 16 bits within the bin that holds it): linear time, no copy, no reordering.
 */
export function kthSmallestBits(bits: Uint32Array, k: number, mask = 0xffffffff): number {
  const hist = new Uint32Array(65536);
  for (let i = 0; i < bits.length; i++) hist[(bits[i] & mask) >>> 16]++;
  let below = 0;
  let hi = 0;
  for (; hi < 65536; hi++) {
    if (below + hist[hi] > k) break;
    below += hist[hi];
  }
  hist.fill(0);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i] & mask;
    if (b >>> 16 === hi) hist[b & 0xffff]++;
  }
  let lo = 0;
  for (; lo < 65536; lo++) {
    if (below + hist[lo] > k) break;
    below += hist[lo];
  }
  return ((hi << 16) | lo) >>> 0;
}

/** The k-th smallest value (0-based) of `a`, reordering `a` in place (Hoare partition, median of three). */
export function quickselect(a: Float32Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    // Median of three as pivot.
    const x = a[lo];
    const y = a[mid];
    const z = a[hi];
    const pivot = Math.max(Math.min(x, y), Math.min(Math.max(x, y), z));
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

export interface Overlap {
  /** |X and M| / |M|, null when M is empty. */
  observed: number | null;
  /** Random baseline: the density of X. */
  baseline: number;
  /** Expected from precision alone: sum_g |X and g| rate(g) / |M| over bf16-exponent groups g of W0. */
  expectedPrecision: number | null;
  /** Raw counts, for pooling over tensors. */
  xAndM: number;
  xCount: number;
  expectedXAndM: number;
}

/** Exponent group of each entry of W0 (the bf16 exponent equals the float32 exponent field). */
export function exponentGroups(w0: Float32Array): Uint8Array {
  const u = new Uint32Array(w0.buffer, w0.byteOffset, w0.length);
  const g = new Uint8Array(w0.length);
  for (let i = 0; i < w0.length; i++) g[i] = (u[i] >>> 23) & 0xff;
  return g;
}

export function groupRates(groups: Uint8Array, mask: Uint8Array): Float64Array {
  const total = new Float64Array(256);
  const changed = new Float64Array(256);
  for (let i = 0; i < groups.length; i++) {
    total[groups[i]]++;
    changed[groups[i]] += mask[i];
  }
  const rate = new Float64Array(256);
  for (let g = 0; g < 256; g++) rate[g] = total[g] > 0 ? changed[g] / total[g] : 0;
  return rate;
}

export function overlap(x: Uint8Array, mask: Uint8Array, changed: number, groups: Uint8Array, rates: Float64Array): Overlap {
  let xAndM = 0;
  let xCount = 0;
  let expected = 0;
  for (let i = 0; i < x.length; i++) {
    if (x[i]) {
      xCount++;
      xAndM += mask[i];
      expected += rates[groups[i]];
    }
  }
  return {
    observed: changed > 0 ? xAndM / changed : null,
    baseline: x.length > 0 ? xCount / x.length : 0,
    expectedPrecision: changed > 0 ? expected / changed : null,
    xAndM,
    xCount,
    expectedXAndM: expected,
  };
}
