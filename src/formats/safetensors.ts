/**
 * A read-only safetensors reader that validates like the reference implementation:
 * 8-byte little-endian header length, header at most 100 MB, UTF-8 JSON object (duplicate keys refused),
 * `__metadata__` a string map, known dtypes, overflow-checked element counts, offsets contiguous from 0,
 * every tensor's byte length equal to numel x size, and the file exactly as long as the header says.
 *
 * Tensors are read by offset in bounded chunks; the file is never loaded whole.
 */
import { promises as fsp, constants as fsConstants, read as readFd } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { CheckpointFormatError } from './errors';
import { bytesPerElement } from './dtype';
import { parseHeader, type ParsedHeader, type TensorInfo } from './safetensors-header';

export { parseHeader, type TensorInfo };

export const MAX_HEADER_BYTES = 100_000_000;

/**
 * Read-only, and non-blocking for the open itself: opening a FIFO named like a checkpoint would otherwise
 * wait forever for a writer (and hold a libuv thread). It is then refused as "not a regular file".
 * O_NONBLOCK has no effect on regular files; it does not exist on Windows, where FIFOs cannot be opened this way.
 */
export const READ_ONLY_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0);

export interface FileIdentity {
  path: string;
  size: number;
  mtimeMs: number;
}

/**
 * An open file as another thread of this process can use it without opening it again: the descriptor
 * (descriptors belong to the process, not the thread) and the parsed header. The thread that opened the
 * file keeps it open until every borrower is done, and alone closes it.
 */
export interface SharedFile {
  path: string;
  fd: number;
  identity: FileIdentity;
  dataStart: number;
  tensors: TensorInfo[];
  metadata: Record<string, string>;
  headerHash: string;
}

type ReadAt = (buf: Uint8Array, offset: number, length: number, position: number) => Promise<{ bytesRead: number }>;

function readAtFd(fd: number): ReadAt {
  return (buf, offset, length, position) =>
    new Promise((resolve, reject) => readFd(fd, buf, offset, length, position, (e, bytesRead) => (e ? reject(e) : resolve({ bytesRead }))));
}

export class SafetensorsFile {
  private closed = false;
  private readonly readAt: ReadAt;

  private constructor(
    readonly path: string,
    /** The opener's handle; none for a borrowed view, which never closes the descriptor. */
    private readonly handle: FileHandle | undefined,
    private readonly fd: number,
    readonly identity: FileIdentity,
    /** 8 + header length: where the data section starts in the file. */
    readonly dataStart: number,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    private readonly header: ParsedHeader,
    /** A fingerprint of the header bytes (sha256, 64 bits shown), part of the result cache key. */
    readonly headerHash: string,
  ) {
    this.readAt = handle ? (buf, offset, length, position) => handle.read(buf, offset, length, position) : readAtFd(fd);
  }

  /** What another thread needs to read this file through the same descriptor (see {@link SharedFile}). */
  share(): SharedFile {
    if (this.closed) throw new Error(`${this.path}: shared after close`);
    return {
      path: this.path,
      fd: this.fd,
      identity: this.identity,
      dataStart: this.dataStart,
      tensors: [...this.tensors.values()],
      metadata: this.metadata,
      headerHash: this.headerHash,
    };
  }

  /** A view of a file another thread of this process opened: no second open, no second header parse. */
  static borrow(s: SharedFile): SafetensorsFile {
    return new SafetensorsFile(
      s.path,
      undefined,
      s.fd,
      s.identity,
      s.dataStart,
      new Map(s.tensors.map((t) => [t.name, t])),
      { tensors: s.tensors, metadata: s.metadata },
      s.headerHash,
    );
  }

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
      if (n > BigInt(MAX_HEADER_BYTES))
        throw new CheckpointFormatError(path, 'header-too-large', `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
      const headerLen = Number(n);
      if (8 + headerLen > size)
        throw new CheckpointFormatError(
          path,
          'header-length',
          `header length ${headerLen} points past the end of the ${size}-byte file (still being written?)`,
        );
      const header = Buffer.alloc(headerLen);
      await readExactly(handle, path, header, 8);
      const parsed = parseHeader(path, header, size - 8 - headerLen);
      const map = new Map<string, TensorInfo>();
      for (const t of parsed.tensors) map.set(t.name, t);
      return new SafetensorsFile(path, handle, handle.fd, { path, size, mtimeMs: st.mtimeMs }, 8 + headerLen, map, parsed, headerDigest(header));
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw e;
    }
  }

  /** The `__metadata__` string map, decoded on first use. */
  get metadata(): Readonly<Record<string, string>> {
    return this.header.metadata;
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
      const { bytesRead } = await this.readAt(buf, done, nbytes - done, pos + done);
      if (bytesRead === 0) {
        throw new CheckpointFormatError(
          this.path,
          'changed-while-reading',
          `unexpected end of file at byte ${pos + done} (the file shrank while it was read)`,
          t.name,
        );
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
      throw new CheckpointFormatError(
        this.path,
        'changed-while-reading',
        `size or modification time changed while it was read (size ${this.identity.size} -> ${st.size})`,
      );
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle?.close();
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
