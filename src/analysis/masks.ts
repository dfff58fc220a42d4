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

/** The three M8 overlaps of a pair: principal P, low-magnitude L, and P and not L. */
export interface PairOverlaps {
  principal: Overlap;
  lowMagnitude: Overlap;
  principalNotLow: Overlap;
}

/**
 * The overlaps of P, L and P-and-not-L with the changed mask M, with their random and precision-controlled
 * baselines, in one pass over the entries. The precision baseline groups entries by the bf16 exponent of W0
 * (the float32 exponent field): rate(g) = |M and g| / |g|, and the expected |X and M| is sum over X's entries
 * of rate(g), i.e. sum_g |X and g| rate(g). So every quantity is a sum over one histogram of entries by
 * (exponent, P, L, M): 2048 bins, counted exactly, instead of three passes that each gather a rate per
 * entry, an exponent array and a P-and-not-L mask the size of the matrix. P, L and M hold 0 or 1.
 */
export function pairOverlaps(P: Uint8Array, L: Uint8Array, mask: Uint8Array, changed: number, w0: Float32Array): PairOverlaps {
  const n = w0.length;
  if (P.length !== n || L.length !== n || mask.length !== n)
    throw new Error(`pairOverlaps: masks of ${P.length}, ${L.length}, ${mask.length} entries for ${n} weights`);
  const u = new Uint32Array(w0.buffer, w0.byteOffset, n);
  // bin = exponent * 8 + P + 2 L + 4 M. Four copies: most entries share a handful of exponents, and
  // increments of one bin back to back would each wait for the one before.
  const h0 = new Int32Array(2048);
  const h1 = new Int32Array(2048);
  const h2 = new Int32Array(2048);
  const h3 = new Int32Array(2048);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    h0[((u[i] >>> 20) & 0x7f8) | P[i] | (L[i] << 1) | (mask[i] << 2)]++;
    h1[((u[i + 1] >>> 20) & 0x7f8) | P[i + 1] | (L[i + 1] << 1) | (mask[i + 1] << 2)]++;
    h2[((u[i + 2] >>> 20) & 0x7f8) | P[i + 2] | (L[i + 2] << 1) | (mask[i + 2] << 2)]++;
    h3[((u[i + 3] >>> 20) & 0x7f8) | P[i + 3] | (L[i + 3] << 1) | (mask[i + 3] << 2)]++;
  }
  for (; i < n; i++) h0[((u[i] >>> 20) & 0x7f8) | P[i] | (L[i] << 1) | (mask[i] << 2)]++;
  const selectors: ((c: number) => boolean)[] = [(c) => (c & 1) !== 0, (c) => (c & 2) !== 0, (c) => (c & 3) === 1];
  const xCount = [0, 0, 0];
  const xAndM = [0, 0, 0];
  const expected = [0, 0, 0];
  for (let g = 0; g < 256; g++) {
    let total = 0;
    let hit = 0;
    const bins = new Array<number>(8);
    for (let c = 0; c < 8; c++) {
      const b = g * 8 + c;
      bins[c] = h0[b] + h1[b] + h2[b] + h3[b];
      total += bins[c];
      if (c & 4) hit += bins[c];
    }
    if (total === 0) continue;
    const rate = hit / total;
    selectors.forEach((inX, x) => {
      let inGroup = 0;
      for (let c = 0; c < 8; c++) {
        if (!inX(c)) continue;
        inGroup += bins[c];
        if (c & 4) xAndM[x] += bins[c];
      }
      xCount[x] += inGroup;
      expected[x] += inGroup * rate;
    });
  }
  const of = (x: number): Overlap => ({
    observed: changed > 0 ? xAndM[x] / changed : null,
    baseline: n > 0 ? xCount[x] / n : 0,
    expectedPrecision: changed > 0 ? expected[x] / changed : null,
    xAndM: xAndM[x],
    xCount: xCount[x],
    expectedXAndM: expected[x],
  });
  return { principal: of(0), lowMagnitude: of(1), principalNotLow: of(2) };
}
