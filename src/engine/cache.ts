/**
 * The result cache on disk, outside any checkpoint folder. Keyed by the identity of every file read
 * (path, size, mtime, header digest) and the settings, so a rewritten checkpoint or a changed setting
 * never returns a stale result. Entries are written atomically; a corrupt entry is ignored and recomputed.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../report/write';
import { SCHEMA_VERSION } from '../report/schema';
import { ANALYSIS_REVISION } from '../analysis/revision';
import type { JobResult, JobSpec } from './messages';

/**
 * The key of a job's result: the job (less its device) and the identity of every file it reads, as the
 * job's plan opened them (`Checkpoint.fileIdentities`), base first, then each checkpoint in order.
 */
export function cacheKey(spec: JobSpec, identities: readonly (readonly string[])[]): string {
  if (spec.kind === 'steps') throw new Error('a steps walk is not cached');
  // The device is not part of the key: CPU and CUDA results agree within the tested tolerance.
  const rest = { ...spec, device: undefined };
  return createHash('sha256')
    .update(JSON.stringify({ v: SCHEMA_VERSION, revision: ANALYSIS_REVISION, spec: rest, ids: identities }))
    .digest('hex');
}

export class ResultCache {
  constructor(
    readonly dir: string,
    readonly maxBytes = 512 * 1024 * 1024,
  ) {}

  private file(key: string): string {
    return path.join(this.dir, `${key}.json`);
  }

  async get(key: string): Promise<JobResult | undefined> {
    try {
      const text = await fsp.readFile(this.file(key), 'utf8');
      const v = JSON.parse(text) as { key?: string; result?: JobResult };
      if (v.key !== key || !v.result || !('schemaVersion' in v.result) || v.result.schemaVersion !== SCHEMA_VERSION) throw new Error('mismatch');
      return v.result;
    } catch (e) {
      // A corrupt entry goes; an unreadable cache (its folder a file, no permission) is a miss.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') await fsp.rm(this.file(key), { force: true }).catch(() => undefined);
      return undefined;
    }
  }

  async put(key: string, result: JobResult): Promise<void> {
    await writeFileAtomic(this.file(key), JSON.stringify({ key, result }));
    await this.evict();
  }

  /** Oldest entries go first once the cache is over its size limit. */
  async evict(): Promise<void> {
    await evictOldest(this.dir, '.json', this.maxBytes);
  }
}

/** Removes the oldest (by modification time) files of `dir` ending in `suffix` until they total at most maxBytes. */
export async function evictOldest(dir: string, suffix: string, maxBytes: number): Promise<void> {
  const names = (await fsp.readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith(suffix));
  const stats = await Promise.all(names.map(async (n) => ({ n, st: await fsp.stat(path.join(dir, n)).catch(() => undefined) })));
  const live = stats
    .filter((s) => s.st)
    .map((s) => ({ n: s.n, size: s.st!.size, t: s.st!.mtimeMs }))
    .sort((a, b) => a.t - b.t);
  let total = live.reduce((a, s) => a + s.size, 0);
  for (const s of live) {
    if (total <= maxBytes) break;
    await fsp.rm(path.join(dir, s.n), { force: true });
    total -= s.size;
  }
}
