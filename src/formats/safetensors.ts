/**
 * A read-only safetensors reader that validates like the reference implementation:
 * 8-byte little-endian header length, header at most 100 MB, UTF-8 JSON object (duplicate keys refused),
 * `__metadata__` a string map, known dtypes, overflow-checked element counts, offsets contiguous from 0,
 * every tensor's byte length equal to numel x size, and the file exactly as long as the header says.
 *
 * Tensors are read by offset in bounded chunks; the file is never loaded whole.
 */
import { promises as fsp, constants as fsConstants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { CheckpointFormatError } from './errors';
import { DTYPES, type Dtype, isDtype, bytesPerElement } from './dtype';
import { parseStrictJson, StrictJsonError, isJsonObject, type JsonValue } from './strict-json';

export const MAX_HEADER_BYTES = 100_000_000;

/**
 * Read-only, and non-blocking for the open itself: opening a FIFO named like a checkpoint would otherwise
 * wait forever for a writer (and hold a libuv thread). It is then refused as "not a regular file".
 * O_NONBLOCK has no effect on regular files; it does not exist on Windows, where FIFOs cannot be opened this way.
 */
export const READ_ONLY_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0);

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  numel: number;
  /** Byte offsets relative to the start of the data section. */
  begin: number;
  end: number;
}

export interface FileIdentity {
  path: string;
  size: number;
  mtimeMs: number;
}

/** Parses and validates a header buffer. Exposed for tests and the corpus; `file` only names errors. */
export function parseHeader(file: string, headerBytes: Uint8Array, dataBytes: number): { tensors: TensorInfo[]; metadata: Record<string, string> } {
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
    if (!Array.isArray(offsets) || offsets.length !== 2) throw new CheckpointFormatError(file, 'tensor-entry', 'data_offsets missing or not a [begin, end] pair', key);
    let numel = 1n;
    const dims: number[] = [];
    for (const d of shape) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
        throw new CheckpointFormatError(file, 'shape', `dimension ${JSON.stringify(d)} is not a non-negative integer`, key);
      }
      numel *= BigInt(d);
      if (numel > BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointFormatError(file, 'shape', `element count of shape [${shape.join(', ')}] overflows`, key);
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
    const detail = cursor > dataBytes
      ? `shorter than the header says: data section is ${dataBytes} bytes, tensors need ${cursor} (still being written?)`
      : `longer than the header says: data section is ${dataBytes} bytes, tensors end at ${cursor}`;
    throw new CheckpointFormatError(file, 'file-length', detail);
  }
  return { tensors, metadata };
}

export class SafetensorsFile {
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly identity: FileIdentity,
    /** 8 + header length: where the data section starts in the file. */
    readonly dataStart: number,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
    /** A fingerprint of the header bytes (sha256, 64 bits shown), part of the result cache key. */
    readonly headerHash: string,
  ) {}

  /** Opens read-only and validates the header and the file length. Never reads tensor data. */
  static async open(path: string): Promise<SafetensorsFile> {
    let handle: FileHandle;
    try {
      handle = await fsp.open(path, READ_ONLY_FLAGS);
    } catch (e) {
      throw new CheckpointFormatError(path, 'io', (e as Error).message);
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new CheckpointFormatError(path, 'io', 'not a regular file');
      const size = st.size;
      if (size < 8) throw new CheckpointFormatError(path, 'header-too-small', `file is ${size} bytes, fewer than the 8-byte header length`);
      const lenBuf = Buffer.alloc(8);
      await readExactly(handle, path, lenBuf, 0);
      const n = lenBuf.readBigUInt64LE(0);
      if (n > BigInt(MAX_HEADER_BYTES)) throw new CheckpointFormatError(path, 'header-too-large', `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
      const headerLen = Number(n);
      if (8 + headerLen > size) throw new CheckpointFormatError(path, 'header-length', `header length ${headerLen} points past the end of the ${size}-byte file (still being written?)`);
      const header = Buffer.alloc(headerLen);
      await readExactly(handle, path, header, 8);
      const { tensors, metadata } = parseHeader(path, header, size - 8 - headerLen);
      const map = new Map<string, TensorInfo>();
      for (const t of tensors) map.set(t.name, t);
      return new SafetensorsFile(path, handle, { path, size, mtimeMs: st.mtimeMs }, 8 + headerLen, map, metadata, headerDigest(header));
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw e;
    }
  }

  tensor(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new CheckpointFormatError(this.path, 'index-mismatch', 'no such tensor in this file', name);
    return t;
  }

  /**
   * Reads elements [start, start + count) of a tensor into `into` (or a fresh aligned buffer) and returns the bytes.
   * The returned view starts at an offset aligned to 8, so typed-array views over it are valid.
   */
  async readElements(t: TensorInfo, start: number, count: number, into?: Uint8Array): Promise<Uint8Array> {
    if (this.closed) throw new Error(`${this.path}: read after close`);
    const esize = bytesPerElement(t.dtype);
    const nbytes = count * esize;
    if (start < 0 || start + count > t.numel) throw new RangeError(`${t.name}: elements ${start}..${start + count} out of range ${t.numel}`);
    const buf = into && into.byteLength >= nbytes ? into.subarray(0, nbytes) : new Uint8Array(new ArrayBuffer(nbytes));
    const pos = this.dataStart + t.begin + start * esize;
    let done = 0;
    while (done < nbytes) {
      const { bytesRead } = await this.handle.read(buf, done, nbytes - done, pos + done);
      if (bytesRead === 0) {
        throw new CheckpointFormatError(this.path, 'changed-while-reading', `unexpected end of file at byte ${pos + done} (the file shrank while it was read)`, t.name);
      }
      done += bytesRead;
    }
    return buf;
  }

  /** Throws when the file's size or mtime differ from when it was opened: a checkpoint being rewritten. */
  async assertUnchanged(): Promise<void> {
    let st;
    try {
      st = await fsp.stat(this.path);
    } catch (e) {
      throw new CheckpointFormatError(this.path, 'changed-while-reading', `the file disappeared while it was read (${(e as Error).message})`);
    }
    if (st.size !== this.identity.size || st.mtimeMs !== this.identity.mtimeMs) {
      throw new CheckpointFormatError(this.path, 'changed-while-reading', `size or modification time changed while it was read (size ${this.identity.size} -> ${st.size})`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

async function readExactly(handle: FileHandle, path: string, buf: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < buf.byteLength) {
    const { bytesRead } = await handle.read(buf, done, buf.byteLength - done, position + done);
    if (bytesRead === 0) throw new CheckpointFormatError(path, 'header-length', `unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

export function headerDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}
