/** Builders for safetensors bytes in tests, including deliberately malformed ones. */
import { promises as fsp, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export function rawFile(headerText: string | Uint8Array, data: Uint8Array = new Uint8Array(0), lenOverride?: bigint): Buffer {
  const body = typeof headerText === 'string' ? Buffer.from(headerText, 'utf8') : Buffer.from(headerText);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(body.length));
  return Buffer.concat([len, body, Buffer.from(data)]);
}

export interface RawTensor {
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** A valid file from tensors laid out in the given order. */
export function validFile(tensors: Record<string, RawTensor>, metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  const chunks: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
    chunks.push(t.data);
  }
  return rawFile(JSON.stringify(header), Buffer.concat(chunks));
}

export function bf16Bytes(bits: number[]): Uint8Array {
  return new Uint8Array(new Uint16Array(bits).buffer);
}

export function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

const created: string[] = [];
process.once('exit', () => {
  // Tests leave nothing behind in the system temp folder.
  for (const d of created) rmSync(d, { recursive: true, force: true });
});

export async function tempDir(prefix = 'gatescope-test-'): Promise<string> {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  created.push(d);
  return d;
}

export async function writeFile(p: string, data: string | Uint8Array): Promise<string> {
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, data);
  return p;
}

/** float -> bf16 bits by round-to-nearest-even. */
export function bf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToNumber(bits: number): number {
  const u = new Uint32Array([(bits & 0xffff) << 16]);
  return new Float32Array(u.buffer)[0];
}
