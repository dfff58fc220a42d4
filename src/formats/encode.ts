/**
 * Float64 -> stored dtype, rounding once (round to nearest, ties to even) straight from the float64
 * value. Going through float32 first would round twice and can differ from a single rounding in rare
 * ties; the transforms and the adapter merge compute in float64 and must store the value closest to the exact result.
 */
import type { Dtype } from './dtype';

/** Dtypes a transformed tensor can be written back in (the same dtype it was read in). */
export const WRITABLE_FLOAT_DTYPES: readonly Dtype[] = ['F64', 'F32', 'BF16', 'F16'];

export function isWritableFloat(d: Dtype): boolean {
  return WRITABLE_FLOAT_DTYPES.includes(d);
}

/** Round half to even of a non-negative number below 2^53. */
function roundHalfEven(y: number): number {
  const f = Math.floor(y);
  const d = y - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Bits of the binary floating-point format with `expBits` exponent and `mantBits` fraction bits
 * (IEEE-style: subnormals, infinities; NaN becomes the positive quiet NaN) nearest to `x`.
 * bf16 is (8, 7), f16 is (5, 10).
 */
export function encodeFloatBits(x: number, expBits: number, mantBits: number): number {
  const bias = (1 << (expBits - 1)) - 1;
  const expMax = (1 << expBits) - 1;
  const signBit = 2 ** (expBits + mantBits);
  if (Number.isNaN(x)) return expMax * 2 ** mantBits + 2 ** (mantBits - 1);
  const sign = x < 0 || Object.is(x, -0) ? signBit : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign + expMax * 2 ** mantBits;
  if (a === 0) return sign;
  let e = Math.floor(Math.log2(a));
  // log2 can be off by one ulp near powers of two: fix the exponent exactly.
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const minNormalExp = 1 - bias;
  if (e < minNormalExp) {
    // Subnormal: a count of 2^(minNormalExp - mantBits) units; a carry into 2^mantBits is the smallest
    // normal, whose bits are exactly that count. Scaling by a power of two is exact in float64.
    return sign + roundHalfEven(a * 2 ** (mantBits - minNormalExp));
  }
  let mant = roundHalfEven(a * 2 ** (mantBits - e));
  if (mant === 2 ** (mantBits + 1)) {
    mant /= 2;
    e++;
  }
  const expField = e + bias;
  if (expField >= expMax) return sign + expMax * 2 ** mantBits;
  return sign + expField * 2 ** mantBits + (mant - 2 ** mantBits);
}

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
// The high word of a float64 on a little-endian host (the only kind safetensors' little-endian bytes are read on).
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;
const LO = 1 - HI;

/**
 * bf16 bits of x, rounded once to nearest-even, from the float64's bits: bf16 keeps the top 7 of the 52
 * fraction bits, so the rounding looks at the 45 below them. The same result as encodeFloatBits(x, 8, 7)
 * (a test checks it on ties, carries and every range) at a tenth of its cost; values outside bf16's
 * normal range (zero, subnormal, overflow, Inf, NaN) take that general path.
 */
export function bf16BitsOf(x: number): number {
  f64[0] = x;
  const hi = u32[HI];
  const e8 = ((hi >>> 20) & 0x7ff) - 896; // 1023 - 127
  if (e8 < 1 || e8 > 254) return encodeFloatBits(x, 8, 7);
  const kept = ((hi >>> 16) & 0x8000) | (e8 << 7) | ((hi >>> 13) & 0x7f);
  const rest = hi & 0x1fff; // the 13 fraction bits below the kept 7 in the high word; 32 more in the low word
  // Above half, or exactly half with an odd last kept bit: round up (a carry into the exponent is right, up to Inf).
  if (rest > 0x1000 || (rest === 0x1000 && (u32[LO] !== 0 || (kept & 1) === 1))) return kept + 1;
  return kept;
}

/** Encodes float64 values as little-endian bytes of `dtype` (F64, F32, BF16 or F16). */
export function encodeFromFloat64(dtype: Dtype, values: Float64Array): Uint8Array {
  const n = values.length;
  switch (dtype) {
    case 'F64':
      return new Uint8Array(Float64Array.from(values).buffer);
    case 'F32':
      return new Uint8Array(Float32Array.from(values).buffer);
    case 'BF16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = bf16BitsOf(values[i]);
      return new Uint8Array(out.buffer);
    }
    case 'F16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = encodeFloatBits(values[i], 5, 10);
      return new Uint8Array(out.buffer);
    }
    default:
      throw new Error(`cannot write ${dtype} values: only ${WRITABLE_FLOAT_DTYPES.join(', ')} are supported for transformed tensors`);
  }
}
