/**
 * The reference for the safetensors header parser: the generic strict JSON parser followed by the format's
 * checks on the generic object, as Gatescope first did it. Slow on large headers (a generic object per entry,
 * BigInt per dimension) but plain to read; `src/formats/safetensors-header.ts` must agree with it on every
 * input, which the header tests check on valid files, the malformed corpus and random mutations.
 */
import { CheckpointFormatError } from '../../src/formats/errors';
import { DTYPES, isDtype } from '../../src/formats/dtype';
import { parseStrictJson, StrictJsonError, isJsonObject, type JsonValue } from '../../src/formats/strict-json';
import type { TensorInfo } from '../../src/formats/safetensors-header';

/** Parses and validates a header buffer. Exposed for tests and the corpus; `file` only names errors. */
export function referenceParseHeader(file: string, headerBytes: Uint8Array, dataBytes: number): { tensors: TensorInfo[]; metadata: Record<string, string> } {
  let text: string;
  try {
    // ignoreBOM keeps a byte-order mark in the text, so it is refused below like the reference does.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw new CheckpointFormatError(file, 'header-utf8', 'the header is not valid UTF-8');
  }
  if (!text.startsWith('{')) {
    throw new CheckpointFormatError(file, 'header-not-object', 'the header does not start with "{"');
  }
  let json: JsonValue;
  try {
    json = parseStrictJson(text);
  } catch (e) {
    if (e instanceof StrictJsonError && e.duplicateKey !== undefined) {
      throw new CheckpointFormatError(file, 'duplicate-key', `the header names ${JSON.stringify(e.duplicateKey)} twice`);
    }
    throw new CheckpointFormatError(file, 'header-json', `the header is not valid JSON (${(e as Error).message})`);
  }
  if (!isJsonObject(json)) throw new CheckpointFormatError(file, 'header-not-object', 'the header JSON is not an object');

  const metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const key of Object.keys(json)) {
    const entry = json[key];
    if (key === '__metadata__') {
      if (!isJsonObject(entry)) throw new CheckpointFormatError(file, 'metadata', '__metadata__ is not an object');
      for (const mk of Object.keys(entry)) {
        const mv = entry[mk];
        if (typeof mv !== 'string') throw new CheckpointFormatError(file, 'metadata', `__metadata__[${JSON.stringify(mk)}] is not a string`);
        metadata[mk] = mv;
      }
      continue;
    }
    if (!isJsonObject(entry)) throw new CheckpointFormatError(file, 'tensor-entry', 'entry is not an object', key);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string') throw new CheckpointFormatError(file, 'tensor-entry', 'dtype missing or not a string', key);
    if (!isDtype(dtype)) throw new CheckpointFormatError(file, 'unknown-dtype', `unknown dtype ${JSON.stringify(dtype)}`, key);
    if (!Array.isArray(shape)) throw new CheckpointFormatError(file, 'tensor-entry', 'shape missing or not an array', key);
    if (!Array.isArray(offsets) || offsets.length !== 2)
      throw new CheckpointFormatError(file, 'tensor-entry', 'data_offsets missing or not a [begin, end] pair', key);
    let numel = 1n;
    const dims: number[] = [];
    for (const d of shape) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
        throw new CheckpointFormatError(file, 'shape', `dimension ${JSON.stringify(d)} is not a non-negative integer`, key);
      }
      numel *= BigInt(d);
      if (numel > BigInt(Number.MAX_SAFE_INTEGER))
        throw new CheckpointFormatError(file, 'shape', `element count of shape [${shape.map((x) => JSON.stringify(x)).join(', ')}] overflows`, key);
      dims.push(d);
    }
    const [b, e] = offsets;
    if (typeof b !== 'number' || typeof e !== 'number' || !Number.isSafeInteger(b) || !Number.isSafeInteger(e) || b < 0 || e < b) {
      throw new CheckpointFormatError(file, 'offsets', `data_offsets ${JSON.stringify(offsets)} are not an ordered pair of non-negative integers`, key);
    }
    const bits = BigInt(DTYPES[dtype].bits);
    const nbits = numel * bits;
    if (nbits % 8n !== 0n) throw new CheckpointFormatError(file, 'size-mismatch', `${numel} elements of ${dtype} do not fill whole bytes`, key);
    const nbytes = nbits / 8n;
    if (BigInt(e - b) !== nbytes) {
      throw new CheckpointFormatError(file, 'size-mismatch', `data_offsets span ${e - b} bytes but ${numel} x ${dtype} needs ${nbytes}`, key);
    }
    tensors.push({ name: key, dtype, shape: dims, numel: Number(numel), begin: b, end: e });
  }
  // Offsets must tile the data section from 0 with no hole and no overlap.
  const sorted = [...tensors].sort((x, y) => x.begin - y.begin || x.end - y.end);
  let cursor = 0;
  for (const t of sorted) {
    if (t.begin !== cursor) {
      const what = t.begin > cursor ? `a hole of ${t.begin - cursor} bytes before it` : `it overlaps the previous tensor by ${cursor - t.begin} bytes`;
      throw new CheckpointFormatError(file, 'offsets', `data starts at ${t.begin}, expected ${cursor}: ${what}`, t.name);
    }
    cursor = t.end;
  }
  if (cursor !== dataBytes) {
    const detail =
      cursor > dataBytes
        ? `shorter than the header says: data section is ${dataBytes} bytes, tensors need ${cursor} (still being written?)`
        : `longer than the header says: data section is ${dataBytes} bytes, tensors end at ${cursor}`;
    throw new CheckpointFormatError(file, 'file-length', detail);
  }
  return { tensors, metadata };
}
