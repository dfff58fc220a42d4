/**
 * Writes safetensors files (new files only, atomically: temp file + rename). Used by the example
 * generators, the geometry-scrambling copy and the mask export; never pointed at an existing checkpoint.
 * Tensor data is produced chunk by chunk so a multi-GB file never sits in memory.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { partialPath, removeStalePartials } from './partial';
import { bytesPerElement, type Dtype } from './dtype';

export interface TensorSpec {
  name: string;
  dtype: Dtype;
  shape: number[];
}

/** Produces a tensor's bytes, as one array or as chunks in order. */
export type TensorSource = (spec: TensorSpec) => Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

export function buildHeader(specs: TensorSpec[], metadata?: Record<string, string>): { header: Buffer; offsets: Map<string, [number, number]> } {
  const sorted = [...specs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const obj: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) obj.__metadata__ = metadata;
  const offsets = new Map<string, [number, number]>();
  let cursor = 0;
  for (const s of sorted) {
    const numel = s.shape.reduce((a, b) => a * b, 1);
    const n = numel * bytesPerElement(s.dtype);
    offsets.set(s.name, [cursor, cursor + n]);
    obj[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [cursor, cursor + n] };
    cursor += n;
  }
  let json = JSON.stringify(obj);
  // Pad the header with spaces so the data section starts 8-byte aligned, as the reference writer does.
  const pad = (8 - ((Buffer.byteLength(json) + 8) % 8)) % 8;
  json += ' '.repeat(pad);
  const body = Buffer.from(json, 'utf8');
  const header = Buffer.alloc(8 + body.length);
  header.writeBigUInt64LE(BigInt(body.length), 0);
  body.copy(header, 8);
  return { header, offsets };
}

export async function writeSafetensors(
  file: string,
  specs: TensorSpec[],
  source: TensorSource,
  opts: { metadata?: Record<string, string>; overwrite?: boolean } = {},
): Promise<void> {
  if (!opts.overwrite) {
    const exists = await fsp.stat(file).then(
      () => true,
      () => false,
    );
    if (exists) throw new Error(`refusing to overwrite ${file}`);
  }
  const { header, offsets } = buildHeader(specs, opts.metadata);
  const dir = path.dirname(path.resolve(file));
  await fsp.mkdir(dir, { recursive: true });
  await removeStalePartials(dir);
  const tmp = partialPath(file);
  const fh = await fsp.open(tmp, 'wx');
  try {
    await fh.write(header);
    const sorted = [...specs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const s of sorted) {
      const [b, e] = offsets.get(s.name)!;
      let written = 0;
      const out = source(s);
      const chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array> = out instanceof Uint8Array ? [out] : out;
      for await (const c of chunks) {
        await fh.write(c);
        written += c.byteLength;
      }
      if (written !== e - b) throw new Error(`${file}: tensor ${s.name} produced ${written} bytes, expected ${e - b}`);
    }
    await fh.close();
    await fsp.rename(tmp, file);
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

/** Float32 values -> bf16 bytes (round to nearest even). */
export function float32ToBf16Bytes(values: Float32Array): Uint8Array {
  const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const bits = u32[i];
    if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) out[i] = 0x7fc0;
    else out[i] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return new Uint8Array(out.buffer);
}
