/**
 * The dtypes of the safetensors format and their decoding to float32.
 * BF16 stays raw uint16 bits for the bit-exact comparison of M1 and is decoded only where floats are needed.
 */

export type Dtype =
  | 'BOOL'
  | 'U8'
  | 'I8'
  | 'U16'
  | 'I16'
  | 'U32'
  | 'I32'
  | 'U64'
  | 'I64'
  | 'F16'
  | 'BF16'
  | 'F32'
  | 'F64'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'F8_E8M0'
  | 'F4'
  | 'F6_E2M3'
  | 'F6_E3M2'
  | 'C64';

interface DtypeInfo {
  /** Size in bits (sub-byte kinds have < 8). */
  bits: number;
  float: boolean;
  /** Gatescope reads it (sub-byte packed kinds are only recognised). */
  readable: boolean;
}

export const DTYPES: Readonly<Record<Dtype, DtypeInfo>> = {
  BOOL: { bits: 8, float: false, readable: true },
  U8: { bits: 8, float: false, readable: true },
  I8: { bits: 8, float: false, readable: true },
  U16: { bits: 16, float: false, readable: true },
  I16: { bits: 16, float: false, readable: true },
  U32: { bits: 32, float: false, readable: true },
  I32: { bits: 32, float: false, readable: true },
  U64: { bits: 64, float: false, readable: true },
  I64: { bits: 64, float: false, readable: true },
  F16: { bits: 16, float: true, readable: true },
  BF16: { bits: 16, float: true, readable: true },
  F32: { bits: 32, float: true, readable: true },
  F64: { bits: 64, float: true, readable: true },
  F8_E4M3: { bits: 8, float: true, readable: true },
  F8_E5M2: { bits: 8, float: true, readable: true },
  F8_E8M0: { bits: 8, float: true, readable: true },
  F4: { bits: 4, float: true, readable: false },
  F6_E2M3: { bits: 6, float: true, readable: false },
  F6_E3M2: { bits: 6, float: true, readable: false },
  C64: { bits: 64, float: false, readable: false },
};

export function isDtype(s: string): s is Dtype {
  return Object.prototype.hasOwnProperty.call(DTYPES, s);
}

export function isFloatDtype(d: Dtype): boolean {
  return DTYPES[d].float && DTYPES[d].readable;
}

export function bytesPerElement(d: Dtype): number {
  return DTYPES[d].bits / 8;
}

// ---------------------------------------------------------------------------------------------
// Decoding to float32. Lookup tables for the 8- and 16-bit kinds; bf16 is a shift.

let f16Table: Float32Array | undefined;
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    let v: number;
    if (exp === 0) v = frac * 2 ** -24;
    else if (exp === 31) v = frac === 0 ? Infinity : NaN;
    else v = (1 + frac / 1024) * 2 ** (exp - 15);
    t[h] = sign * v;
  }
  f16Table = t;
  return t;
}

const f8Tables = new Map<string, Float32Array>();
function fp8Table(kind: 'F8_E4M3' | 'F8_E5M2' | 'F8_E8M0'): Float32Array {
  const cached = f8Tables.get(kind);
  if (cached) return cached;
  const t = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    if (kind === 'F8_E8M0') {
      // Unsigned power of two (OCP MX scale); 0xff is NaN.
      t[b] = b === 0xff ? NaN : 2 ** (b - 127);
      continue;
    }
    const sign = b & 0x80 ? -1 : 1;
    if (kind === 'F8_E4M3') {
      // OCP E4M3FN: bias 7, no infinities, S.1111.111 is NaN.
      const exp = (b >> 3) & 0xf;
      const frac = b & 0x7;
      if (exp === 0xf && frac === 0x7) t[b] = NaN;
      else if (exp === 0) t[b] = sign * frac * 2 ** -9;
      else t[b] = sign * (1 + frac / 8) * 2 ** (exp - 7);
    } else {
      // E5M2: bias 15, IEEE-like with infinities and NaN.
      const exp = (b >> 2) & 0x1f;
      const frac = b & 0x3;
      if (exp === 0x1f) t[b] = frac === 0 ? sign * Infinity : NaN;
      else if (exp === 0) t[b] = sign * frac * 2 ** -16;
      else t[b] = sign * (1 + frac / 4) * 2 ** (exp - 15);
    }
  }
  f8Tables.set(kind, t);
  return t;
}

/**
 * Decodes `count` elements of `dtype` from `bytes` (little-endian, as the format stores them) into `out`.
 * `bytes` must start at an offset aligned to the element size (callers read into fresh ArrayBuffers).
 */
export function decodeToFloat32(dtype: Dtype, bytes: Uint8Array, count: number, out: Float32Array): void {
  switch (dtype) {
    case 'BF16': {
      const src = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
      const dst = new Uint32Array(out.buffer, out.byteOffset, count);
      for (let i = 0; i < count; i++) dst[i] = src[i] << 16;
      return;
    }
    case 'F16': {
      const src = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
      const t = halfTable();
      for (let i = 0; i < count; i++) out[i] = t[src[i]];
      return;
    }
    case 'F32':
      out.set(new Float32Array(bytes.buffer, bytes.byteOffset, count));
      return;
    case 'F64': {
      const src = new Float64Array(bytes.buffer, bytes.byteOffset, count);
      for (let i = 0; i < count; i++) out[i] = src[i];
      return;
    }
    case 'F8_E4M3':
    case 'F8_E5M2':
    case 'F8_E8M0': {
      const t = fp8Table(dtype);
      for (let i = 0; i < count; i++) out[i] = t[bytes[i]];
      return;
    }
    default:
      throw new Error(`decodeToFloat32: ${dtype} is not a readable float dtype`);
  }
}

/** Decodes float64 tensors without losing precision (F64 only; others go through float32). */
export function decodeToFloat64(dtype: Dtype, bytes: Uint8Array, count: number, out: Float64Array, scratch?: Float32Array): void {
  if (dtype === 'F64') {
    out.set(new Float64Array(bytes.buffer, bytes.byteOffset, count));
    return;
  }
  const tmp = scratch && scratch.length >= count ? scratch : new Float32Array(count);
  decodeToFloat32(dtype, bytes, count, tmp);
  for (let i = 0; i < count; i++) out[i] = tmp[i];
}

/** Round-to-nearest-even float32 -> bf16 bits (NaN kept quiet). */
export function float32BitsToBf16Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return ((bits >>> 16) | 0x0040) & 0xffff;
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** Decode bf16 bits to a JS number. */
export function bf16BitsToNumber(bits: number): number {
  const f = new Float32Array(1);
  new Uint32Array(f.buffer)[0] = (bits & 0xffff) << 16;
  return f[0];
}
