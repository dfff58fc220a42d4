// The bf16 diff kernel in WebAssembly SIMD (AssemblyScript; built to dist/bf16-diff.wasm by esbuild.js).
// It computes exactly what accumulateBf16 in src/analysis/diff.ts computes (that function is the reference,
// and test/unit/bf16-kernel.test.ts holds the two equal): per entry of two bf16 chunks, M1 by bit patterns
// (+0 == -0, NaN/Inf entries set aside), the squared norms of the base and of the update in float64, the
// largest |update|, the legacy |update| > 1e-5 count, per-row and per-column changed counts, and the
// histogram of |update| / ULP(base) keyed by the top 16 bits of the float32 ratio (`hist`: four copies of
// 65536 u32, the last three zero between calls).
//
// Eight entries per step: two i16x8 loads, lanes widened to float32 and float64 (exact for bf16), masks
// counted with bitmask + popcnt. Only the histogram scatter is scalar.
//
// Memory is the caller's (imported); every address is an argument. Results go to `out` as float64:
// [changed, nonFinite, legacyChanged, dSq, baseSq, maxAbs, rowsTouched].

const FLOAT32_MAX: f64 = 3.4028234663852886e38;
const LEGACY_ABS_TOLERANCE: f64 = 1e-5;

// f64 bits of 1 / ULP(bf16 with biased exponent e) = 2^(134 - max(e, 1)): exponent field 1023 + 134 - max(e, 1).
const INV_ULP_BIAS: i64 = 1157;

// Four copies of the histogram (lanes 0-3 and 4-7 of a step each bump their own): most changed entries land
// in the same few bins (one or two ULPs), and increments of one address one after another wait on each other.
// The copies after the first are folded into it at the end of a call and left zero.
const SUB: usize = 65536 * 4;

@inline
function isNonFinite(a: u32): bool {
  return (a & 0x7f80) == 0x7f80;
}

/** One entry, scalar, for the tails of rows: the same arithmetic as the vector path and the reference. */
@inline
function scalarEntry(a: u32, b: u32, hist: usize, acc: usize): u32 {
  if (isNonFinite(a) || isNonFinite(b)) {
    store<f64>(acc, load<f64>(acc, 8) + 1, 8);
    return 0;
  }
  const w0 = <f64>reinterpret<f32>(a << 16);
  const d = <f64>reinterpret<f32>(b << 16) - w0;
  const ad = abs<f64>(d);
  const c: u32 = a != b && ((a | b) & 0x7fff) != 0 ? 1 : 0;
  store<f64>(acc, load<f64>(acc, 24) + d * d, 24);
  store<f64>(acc, load<f64>(acc, 32) + w0 * w0, 32);
  store<f64>(acc, max<f64>(load<f64>(acc, 40), ad), 40);
  if (c != 0 && ad > LEGACY_ABS_TOLERANCE) store<f64>(acc, load<f64>(acc, 16) + 1, 16);
  let e = (a >>> 7) & 0xff;
  if (e < 1) e = 1;
  const inv = reinterpret<f64>((INV_ULP_BIAS - <i64>e) << 52);
  const ratio = <f32>min<f64>(ad * inv, FLOAT32_MAX);
  const key = reinterpret<u32>(ratio) >>> 16;
  const p = hist + (<usize>key << 2);
  store<u32>(p, load<u32>(p) + c);
  return c;
}

/**
 * Accumulates `n` entry pairs at `p0`/`p1` (u16). The first entry sits at column `col0` of row 0; rows are
 * `ncols` long. With `lines` set, per-column counts are added to `cols` (u32 per column) and per-row counts
 * are written to `rows` (u32 per touched row, from row 0 of this call); otherwise the chunk is one row and
 * neither is touched. `hist` is the 65536-bin histogram (u32). `out` receives seven float64 (see top).
 */
export function accumulate(p0: usize, p1: usize, n: i32, col0: i32, ncols: i32, lines: i32, cols: usize, rows: usize, hist: usize, out: usize): void {
  // Scalar accumulators used by the tails live in out[0..5]; the vector ones are folded in at the end.
  for (let k = 0; k < 7; k++) store<f64>(out + (<usize>k << 3), 0);
  const expMask = i16x8.splat(0x7f80);
  const magMask = i16x8.splat(0x7fff);
  const byteMask = i16x8.splat(0xff);
  const one16 = i16x8.splat(1);
  const zero = i16x8.splat(0);
  const fmax = f64x2.splat(FLOAT32_MAX);
  const legacyTol = f64x2.splat(LEGACY_ABS_TOLERANCE);
  const bias = i64x2.splat(INV_ULP_BIAS);
  let dSq0 = f64x2.splat(0);
  let dSq1 = f64x2.splat(0);
  let bSq0 = f64x2.splat(0);
  let bSq1 = f64x2.splat(0);
  let mx0 = f64x2.splat(0);
  let mx1 = f64x2.splat(0);
  let changed: i32 = 0;
  let nonFinite: i32 = 0;
  let legacy: i32 = 0;
  const width = lines != 0 ? ncols : n;
  let col = lines != 0 ? col0 : 0;
  let row: i32 = 0;
  let i: i32 = 0;
  while (i < n) {
    const end = min<i32>(n, i + (width - col));
    let rowChanged: i32 = 0;
    while (i + 8 <= end) {
      const off = <usize>i << 1;
      let a = v128.load(p0 + off);
      let b = v128.load(p1 + off);
      const nf = v128.or(i16x8.eq(v128.and(a, expMask), expMask), i16x8.eq(v128.and(b, expMask), expMask));
      const fin = v128.not(nf);
      a = v128.and(a, fin);
      b = v128.and(b, fin);
      const cm = v128.and(i16x8.ne(a, b), i16x8.ne(v128.and(v128.or(a, b), magMask), zero));
      const cbits = i16x8.bitmask(cm);
      const cnt = <i32>popcnt<u32>(<u32>cbits);
      nonFinite += <i32>popcnt<u32>(<u32>i16x8.bitmask(nf));
      rowChanged += cnt;
      if (lines != 0) {
        const cp = cols + (<usize>col << 2);
        v128.store(cp, i32x4.sub(v128.load(cp), i32x4.extend_low_i16x8_s(cm)));
        v128.store(cp, i32x4.sub(v128.load(cp, 16), i32x4.extend_high_i16x8_s(cm)), 16);
      }
      // float32 bit patterns of both sides, then float64 pairs (lanes 0-1, 2-3, 4-5, 6-7).
      const aLo = i32x4.shl(i32x4.extend_low_i16x8_u(a), 16);
      const aHi = i32x4.shl(i32x4.extend_high_i16x8_u(a), 16);
      const bLo = i32x4.shl(i32x4.extend_low_i16x8_u(b), 16);
      const bHi = i32x4.shl(i32x4.extend_high_i16x8_u(b), 16);
      const w00 = f64x2.promote_low_f32x4(aLo);
      const w01 = f64x2.promote_low_f32x4(i32x4.shuffle(aLo, aLo, 2, 3, 0, 1));
      const w02 = f64x2.promote_low_f32x4(aHi);
      const w03 = f64x2.promote_low_f32x4(i32x4.shuffle(aHi, aHi, 2, 3, 0, 1));
      const d0 = f64x2.sub(f64x2.promote_low_f32x4(bLo), w00);
      const d1 = f64x2.sub(f64x2.promote_low_f32x4(i32x4.shuffle(bLo, bLo, 2, 3, 0, 1)), w01);
      const d2 = f64x2.sub(f64x2.promote_low_f32x4(bHi), w02);
      const d3 = f64x2.sub(f64x2.promote_low_f32x4(i32x4.shuffle(bHi, bHi, 2, 3, 0, 1)), w03);
      bSq0 = f64x2.add(bSq0, f64x2.add(f64x2.mul(w00, w00), f64x2.mul(w01, w01)));
      bSq1 = f64x2.add(bSq1, f64x2.add(f64x2.mul(w02, w02), f64x2.mul(w03, w03)));
      dSq0 = f64x2.add(dSq0, f64x2.add(f64x2.mul(d0, d0), f64x2.mul(d1, d1)));
      dSq1 = f64x2.add(dSq1, f64x2.add(f64x2.mul(d2, d2), f64x2.mul(d3, d3)));
      const ad0 = f64x2.abs(d0);
      const ad1 = f64x2.abs(d1);
      const ad2 = f64x2.abs(d2);
      const ad3 = f64x2.abs(d3);
      mx0 = f64x2.pmax(mx0, f64x2.pmax(ad0, ad1));
      mx1 = f64x2.pmax(mx1, f64x2.pmax(ad2, ad3));
      if (cnt != 0) {
        // Legacy rule: changed and |update| > 1e-5. Its four 2-lane masks make one 8-bit mask.
        const g = i64x2.bitmask(f64x2.gt(ad0, legacyTol))
          | (i64x2.bitmask(f64x2.gt(ad1, legacyTol)) << 2)
          | (i64x2.bitmask(f64x2.gt(ad2, legacyTol)) << 4)
          | (i64x2.bitmask(f64x2.gt(ad3, legacyTol)) << 6);
        legacy += <i32>popcnt<u32>(<u32>(g & cbits));
        // 1 / ULP(base) as float64 from the exponent, the ratio saturated, rounded to float32, top 16 bits.
        const e = i16x8.max_u(v128.and(i16x8.shr_u(a, 7), byteMask), one16);
        const eLo = i32x4.extend_low_i16x8_u(e);
        const eHi = i32x4.extend_high_i16x8_u(e);
        const inv0 = i64x2.shl(i64x2.sub(bias, i64x2.extend_low_i32x4_u(eLo)), 52);
        const inv1 = i64x2.shl(i64x2.sub(bias, i64x2.extend_high_i32x4_u(eLo)), 52);
        const inv2 = i64x2.shl(i64x2.sub(bias, i64x2.extend_low_i32x4_u(eHi)), 52);
        const inv3 = i64x2.shl(i64x2.sub(bias, i64x2.extend_high_i32x4_u(eHi)), 52);
        const r0 = f32x4.demote_f64x2_zero(f64x2.pmin(f64x2.mul(ad0, inv0), fmax));
        const r1 = f32x4.demote_f64x2_zero(f64x2.pmin(f64x2.mul(ad1, inv1), fmax));
        const r2 = f32x4.demote_f64x2_zero(f64x2.pmin(f64x2.mul(ad2, inv2), fmax));
        const r3 = f32x4.demote_f64x2_zero(f64x2.pmin(f64x2.mul(ad3, inv3), fmax));
        const kLo = i32x4.shr_u(i32x4.shuffle(r0, r1, 0, 1, 4, 5), 16);
        const kHi = i32x4.shr_u(i32x4.shuffle(r2, r3, 0, 1, 4, 5), 16);
        bump(hist, i32x4.extract_lane(kLo, 0), cbits & 1);
        bump(hist + 262144, i32x4.extract_lane(kLo, 1), (cbits >>> 1) & 1);
        bump(hist + 524288, i32x4.extract_lane(kLo, 2), (cbits >>> 2) & 1);
        bump(hist + 786432, i32x4.extract_lane(kLo, 3), (cbits >>> 3) & 1);
        bump(hist, i32x4.extract_lane(kHi, 0), (cbits >>> 4) & 1);
        bump(hist + 262144, i32x4.extract_lane(kHi, 1), (cbits >>> 5) & 1);
        bump(hist + 524288, i32x4.extract_lane(kHi, 2), (cbits >>> 6) & 1);
        bump(hist + 786432, i32x4.extract_lane(kHi, 3), (cbits >>> 7) & 1);
      }
      i += 8;
      col += 8;
    }
    for (; i < end; i++, col++) {
      const c = scalarEntry(<u32>load<u16>(p0 + (<usize>i << 1)), <u32>load<u16>(p1 + (<usize>i << 1)), hist, out);
      rowChanged += <i32>c;
      if (lines != 0) {
        const cp = cols + (<usize>col << 2);
        store<u32>(cp, load<u32>(cp) + c);
      }
    }
    changed += rowChanged;
    if (lines != 0) store<u32>(rows + (<usize>row << 2), <u32>rowChanged);
    if (col == width) {
      col = 0;
      row++;
    }
  }
  // Fold the vector accumulators into the scalar ones (the tails wrote to out directly).
  store<f64>(out, <f64>changed);
  store<f64>(out + 8, load<f64>(out + 8) + <f64>nonFinite);
  store<f64>(out + 16, load<f64>(out + 16) + <f64>legacy);
  const dv = f64x2.add(dSq0, dSq1);
  const bv = f64x2.add(bSq0, bSq1);
  const mv = f64x2.pmax(mx0, mx1);
  store<f64>(out + 24, load<f64>(out + 24) + f64x2.extract_lane(dv, 0) + f64x2.extract_lane(dv, 1));
  store<f64>(out + 32, load<f64>(out + 32) + f64x2.extract_lane(bv, 0) + f64x2.extract_lane(bv, 1));
  store<f64>(out + 40, max<f64>(load<f64>(out + 40), max<f64>(f64x2.extract_lane(mv, 0), f64x2.extract_lane(mv, 1))));
  store<f64>(out + 48, <f64>(col == 0 ? row : row + 1));
  // Fold sub-histograms 1-3 into 0 and leave them zero for the next call.
  const zeroV = i32x4.splat(0);
  for (let k: usize = 0; k < 65536 * 4; k += 16) {
    const h0 = hist + k;
    const s = i32x4.add(i32x4.add(v128.load(h0 + SUB), v128.load(h0 + 2 * SUB)), v128.load(h0 + 3 * SUB));
    v128.store(h0, i32x4.add(v128.load(h0), s));
    v128.store(h0 + SUB, zeroV);
    v128.store(h0 + 2 * SUB, zeroV);
    v128.store(h0 + 3 * SUB, zeroV);
  }
}

@inline
function bump(hist: usize, key: i32, c: i32): void {
  const p = hist + (<usize>key << 2);
  store<u32>(p, load<u32>(p) + <u32>c);
}
