/**
 * Where the transforms may write. A checkpoint is never modified: outputs are new files or folders,
 * never inside the base checkpoint's folder and never inside any folder that holds model weights.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** A problem with what the user asked for (the CLI exits 2 on it); the checkpoint itself is fine. */
export class TransformInputError extends Error {
  override name = 'TransformInputError';
}

/** Files whose presence makes a folder a checkpoint folder. */
const WEIGHT_MARKERS = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json', 'adapter_model.safetensors'];
const SHARD_RE = /^model-\d+-of-\d+\.safetensors$/;

/** True when `dir` holds model weights (a plain or sharded checkpoint). */
export async function looksLikeCheckpointFolder(dir: string): Promise<boolean> {
  let entries: string[];
  try {
    entries = await fsp.readdir(dir);
  } catch {
    return false;
  }
  return entries.some((e) => WEIGHT_MARKERS.includes(e) || SHARD_RE.test(e));
}

/** The folder of a checkpoint path: the folder itself, or the folder of a single `.safetensors` file. */
export async function checkpointDir(p: string): Promise<string> {
  const abs = path.resolve(p);
  const st = await fsp.stat(abs).catch(() => undefined);
  return st?.isFile() ? path.dirname(abs) : abs;
}

export function isInside(child: string, parent: string): boolean {
  const r = path.relative(path.resolve(parent), path.resolve(child));
  return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
}

/**
 * Refuses an output path inside the base checkpoint's folder, or inside (at any depth) a folder that
 * holds model weights, or one that already exists.
 */
export async function assertNewOutput(out: string, baseDir: string, what: string): Promise<void> {
  const abs = path.resolve(out);
  if (isInside(abs, baseDir)) throw new TransformInputError(`refusing to write ${what} ${out} inside the base checkpoint folder ${baseDir}: checkpoints are never modified`);
  if (await fsp.lstat(abs).then(() => true, () => false)) throw new TransformInputError(`refusing to write ${what} ${out}: it already exists (choose a new path)`);
  for (let dir = path.dirname(abs); ; dir = path.dirname(dir)) {
    if (await looksLikeCheckpointFolder(dir)) throw new TransformInputError(`refusing to write ${what} ${out} inside the checkpoint folder ${dir}`);
    if (path.dirname(dir) === dir) break;
  }
}
