/**
 * Written reports name checkpoints relative to the report's own folder, so a report shared with
 * colleagues (or committed next to the runs) neither leaks the author's home folder nor breaks when
 * the tree moves. `--absolute-paths` keeps them absolute.
 */
import * as path from 'node:path';

/** Keys whose string values are file-system paths in reports, scans and comparisons. */
const PATH_KEYS = new Set(['base', 'checkpoint', 'root', 'id', 'path', 'resolved', 'out', 'from', 'to']);
const PATH_LIST_KEYS = new Set(['baseOf']);

function relativeTo(dir: string, p: string): string {
  if (!path.isAbsolute(p)) return p;
  const r = path.relative(dir, p);
  return r === '' ? '.' : r;
}

/**
 * A copy of `value` with every absolute path under a known key made relative to `dir`, and the
 * `source` of a discovered base ("<path> (<key>)") likewise. Tensor names and other strings are kept.
 */
export function withPathsRelativeTo<T>(value: T, dir: string): T {
  const walk = (v: unknown, key: string | null): unknown => {
    if (typeof v === 'string') {
      if (key !== null && PATH_KEYS.has(key)) return relativeTo(dir, v);
      if (key === 'source') {
        const m = /^(\/.*?|[A-Za-z]:\\.*?)( \([^()]*\))?$/.exec(v);
        return m ? `${relativeTo(dir, m[1])}${m[2] ?? ''}` : v;
      }
      return v;
    }
    if (Array.isArray(v)) return v.map((x) => (key !== null && PATH_LIST_KEYS.has(key) && typeof x === 'string' ? relativeTo(dir, x) : walk(x, null)));
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = k === 'tensors' && Array.isArray(x) ? x : walk(x, k);
      return out;
    }
    return v;
  };
  return walk(value, null) as T;
}

/** A checkpoint report read back from `file`: its checkpoint paths absolute again (they are relative to the file's folder). */
export function withCheckpointPathsFrom<T extends { base: string; checkpoint: string }>(report: T, file: string): T {
  const dir = path.dirname(path.resolve(file));
  report.base = path.resolve(dir, report.base);
  report.checkpoint = path.resolve(dir, report.checkpoint);
  return report;
}
