/**
 * Files and folders being written are built under a hidden partial name beside their destination and
 * renamed into place when complete, so a reader never sees half a file. A process killed mid-write
 * (kill -9, power loss) leaves its partial behind; the name records the writer's PID, and the next
 * write into that folder removes the partials whose writer is gone.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

const MARK = '.gatescope-partial-';
const PARTIAL_RE = /^\..+\.gatescope-partial-(\d+)-[0-9a-f]{8}$/;

/** A fresh partial path for `final`, in the same folder (so the rename is atomic). */
export function partialPath(final: string): string {
  const abs = path.resolve(final);
  return path.join(path.dirname(abs), `.${path.basename(abs)}${MARK}${process.pid}-${randomBytes(4).toString('hex')}`);
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the partials in `dir` left by writers that no longer run; returns their names. Never throws. */
export async function removeStalePartials(dir: string): Promise<string[]> {
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = await fsp.readdir(dir);
  } catch {
    return removed;
  }
  for (const e of entries) {
    const m = PARTIAL_RE.exec(e);
    if (!m || alive(Number(m[1]))) continue;
    try {
      await fsp.rm(path.join(dir, e), { recursive: true, force: true });
      removed.push(e);
    } catch {
      // Someone else's file or a read-only folder: leave it.
    }
  }
  return removed;
}
