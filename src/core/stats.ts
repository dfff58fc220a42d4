/** Small statistics shared by the analyses and the text reports. */

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Expected Jaccard of two independent random masks of densities p and q: pq / (p + q - pq). */
export function jaccardBaseline(p: number, q: number): number {
  const d = p + q - p * q;
  return d > 0 ? (p * q) / d : 0;
}
