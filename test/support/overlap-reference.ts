/**
 * The M8 overlaps as first written (an exponent array, per-group rates, one pass per mask), kept as the
 * plain reference that src/analysis/masks.ts's one-pass pairOverlaps must equal.
 */
import type { Overlap } from '../../src/analysis/masks';

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

export function overlapReference(x: Uint8Array, mask: Uint8Array, changed: number, groups: Uint8Array, rates: Float64Array): Overlap {
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
