/**
 * The base-subspace cache on disk: each base weight's converged subspace (what the spectral pass needs
 * to start every checkpoint of that base), one file per (base file identity, tensor, settings) key,
 * under the result cache's folder and never inside a checkpoint folder.
 *
 * A file is `GSB1`, the value count (uint32 LE), the float32 values, and the SHA-256 of everything
 * before it. Writes are atomic (a temporary file renamed into place); an entry that does not check out
 * (truncated, another length, a bad digest) is removed and counts as a miss. A hit refreshes the
 * entry's modification time, and the oldest entries go once the folder passes its size limit.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../report/write';
import { evictOldest } from './cache';
import type { BaseBasisStore } from '../analysis/spectral';

const MAGIC = Buffer.from('GSB1', 'ascii');
const SUFFIX = '.basis';
/** Default size limit: a 1.5B model's bases take about 320 MB, a 7B model's about 850 MB. */
export const DEFAULT_BASIS_CACHE_BYTES = 4 * 1024 ** 3;

export class BasisCache implements BaseBasisStore {
  constructor(
    readonly dir: string,
    readonly maxBytes = DEFAULT_BASIS_CACHE_BYTES,
    private readonly log?: (line: string) => void,
  ) {}

  private file(key: string): string {
    return path.join(this.dir, `${key}${SUFFIX}`);
  }

  async get(key: string, length: number): Promise<Float32Array | undefined> {
    const f = this.file(key);
    let buf: Buffer;
    try {
      buf = await fsp.readFile(f);
    } catch {
      return undefined;
    }
    const expected = 8 + 4 * length + 32;
    const ok =
      buf.length === expected &&
      buf.subarray(0, 4).equals(MAGIC) &&
      buf.readUInt32LE(4) === length &&
      createHash('sha256')
        .update(buf.subarray(0, 8 + 4 * length))
        .digest()
        .equals(buf.subarray(8 + 4 * length));
    if (!ok) {
      this.log?.(`base-subspace cache: ${f} does not check out; removed, recomputing`);
      await fsp.rm(f, { force: true }).catch(() => undefined);
      return undefined;
    }
    const now = new Date();
    await fsp.utimes(f, now, now).catch(() => undefined);
    // A copy, aligned for Float32Array whatever the Buffer's offset in its pool.
    const out = new Float32Array(length);
    new Uint8Array(out.buffer).set(buf.subarray(8, 8 + 4 * length));
    return out;
  }

  async put(key: string, data: Float32Array): Promise<void> {
    const body = Buffer.alloc(8 + 4 * data.length);
    MAGIC.copy(body, 0);
    body.writeUInt32LE(data.length, 4);
    Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(body, 8);
    const digest = createHash('sha256').update(body).digest();
    try {
      await writeFileAtomic(this.file(key), Buffer.concat([body, digest]));
      await this.evict();
    } catch (e) {
      // A cache that cannot be written costs the reuse, never the analysis.
      this.log?.(`base-subspace cache: could not store in ${this.dir} (${(e as Error).message.split('\n')[0]}); continuing uncached`);
    }
  }

  /** Oldest entries go first once the folder is over its size limit. */
  async evict(): Promise<void> {
    await evictOldest(this.dir, SUFFIX, this.maxBytes);
  }
}
