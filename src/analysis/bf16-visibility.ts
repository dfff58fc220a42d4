/**
 * Gate III's visibility threshold: a bf16 entry changes only when an update moves it by more than half
 * a ULP of its value (|w|/512 to |w|/256). Counting a tensor's entries by biased exponent is enough to
 * say, for any bound on the update, how many entries it cannot change. Pure functions, no I/O.
 */

/** Half of the bf16 ULP at a biased exponent: 2^(e - 127 - 7) / 2; zeros and subnormals share the smallest normal binade's. */
export function halfUlpOfExponent(e: number): number {
  return 2 ** (Math.max(e, 1) - 127 - 7 - 1);
}

/**
 * Share of the finite entries (exponent below 255) whose half ULP exceeds `bound`: the entries an update
 * of at most `bound` per entry cannot change in bf16. `counts[e]` is the number of entries of exponent e.
 */
export function unchangedShareBelowBound(counts: ArrayLike<number>, bound: number): number {
  let finite = 0;
  let frozen = 0;
  for (let e = 0; e < 255 && e < counts.length; e++) {
    const c = counts[e];
    if (!c) continue;
    finite += c;
    if (halfUlpOfExponent(e) > bound) frozen += c;
  }
  return finite === 0 ? 0 : frozen / finite;
}

/** Dense counts from the report's sparse `[exponent, count]` pairs. */
export function exponentCounts(pairs: readonly (readonly [number, number])[]): Float64Array {
  const out = new Float64Array(256);
  for (const [e, c] of pairs) if (Number.isInteger(e) && e >= 0 && e < 256) out[e] += c;
  return out;
}
