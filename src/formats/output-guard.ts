/**
 * The one guard for every file Gatescope writes (reports, CSV, HTML, masks, scrambled copies), in the
 * CLI and the extension. Checkpoints are the user's most precious files: nothing is written inside a
 * folder that holds model weights (at any depth, whether or not that folder was named on the command
 * line), symlinks are resolved before deciding, and a missing output folder is an error unless asked for.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** Where the output may not go; callers map it to their usage error (the CLI exits 2). */
export class OutputPathError extends Error {
  override name = 'OutputPathError';
}

/** Files whose presence makes a folder (or any folder above the output) a checkpoint folder. */
const WEIGHT_MARKERS = [
  'model.safetensors',
  'model.safetensors.index.json',
  'pytorch_model.bin',
  'pytorch_model.bin.index.json',
  'adapter_model.safetensors',
  'adapter_model.bin',
];
const SHARD_RE = /^(?:model|pytorch_model)-\d+-of-\d+\.(?:safetensors|bin)$/;
/** Weight files by extension: never overwritten by an output. */
const WEIGHT_FILE_RE = /\.(?:safetensors|bin|pt|pth|ckpt|gguf)$/i;

async function names(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch {
    return [];
  }
}

/** True when `dir` holds a plain or sharded checkpoint. */
export async function looksLikeCheckpointFolder(dir: string): Promise<boolean> {
  return (await names(dir)).some((e) => WEIGHT_MARKERS.includes(e) || SHARD_RE.test(e));
}

/** The weight file in `dir` that makes it a checkpoint folder, if any. */
async function weightFileIn(dir: string): Promise<string | undefined> {
  return (await names(dir)).find((e) => WEIGHT_MARKERS.includes(e) || SHARD_RE.test(e));
}

/** The folder of a checkpoint path: the folder itself, or the folder of a single weights file (any extension). */
export async function checkpointDir(p: string): Promise<string> {
  const abs = path.resolve(p);
  const st = await fsp.stat(abs).catch(() => undefined);
  return st?.isFile() || (!st && abs.endsWith('.safetensors')) ? path.dirname(abs) : abs;
}

export function isInside(child: string, parent: string): boolean {
  const r = path.relative(path.resolve(parent), path.resolve(child));
  return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
}

async function real(p: string): Promise<string> {
  return fsp.realpath(p).catch(() => path.resolve(p));
}

/** The real path `p` would have: symlinks resolved in the part that exists. */
async function realTarget(p: string): Promise<{ target: string; missing: string[] }> {
  const abs = path.resolve(p);
  const missing: string[] = [];
  let dir = path.dirname(abs);
  for (;;) {
    const st = await fsp.stat(dir).catch(() => undefined);
    if (st) {
      if (!st.isDirectory()) throw new OutputPathError(`cannot write ${p}: ${dir} is not a folder`);
      break;
    }
    missing.unshift(path.basename(dir));
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  const base = path.join(await real(dir), ...missing);
  const leaf = path.join(base, path.basename(abs));
  // An existing output that is a symlink is followed: the write would land at its target.
  const lst = await fsp.lstat(leaf).catch(() => undefined);
  return { target: lst?.isSymbolicLink() ? await real(leaf) : leaf, missing };
}

export interface OutputCheck {
  /** Checkpoint paths the command reads (their folders are refused even if they hold no marker file). */
  inputs?: string[];
  /** Create missing folders (the CLI's --mkdir); otherwise a missing folder is an error. */
  mkdir?: boolean;
  /** The output must not exist yet (new checkpoints and mask files). */
  mustBeNew?: boolean;
  /** How the output is named in messages ("the mask file"). */
  what?: string;
}

/**
 * Checks that `out` may be written and returns its real absolute path. Refuses: a folder, a special
 * file (FIFO, device), anything inside a checkpoint folder or an input's folder, a missing folder
 * (unless `mkdir`), an existing file when `mustBeNew`.
 */
export async function checkOutputPath(out: string, opts: OutputCheck = {}): Promise<string> {
  const what = opts.what ?? 'the output';
  const { target, missing } = await realTarget(out);
  const st = await fsp.stat(target).catch(() => undefined);
  if (st) {
    if (opts.mustBeNew) throw new OutputPathError(`refusing to write ${what} ${out}: it already exists (choose a new path)`);
    if (st.isDirectory()) throw new OutputPathError(`cannot write ${what} ${out}: it is a folder (give a file name)`);
    if (!st.isFile()) throw new OutputPathError(`cannot write ${what} ${out}: it is not a regular file`);
    if (WEIGHT_FILE_RE.test(target)) throw new OutputPathError(`refusing to overwrite ${out} with ${what}: it is a weights file`);
  } else if (
    opts.mustBeNew &&
    (await fsp.lstat(path.resolve(out)).then(
      () => true,
      () => false,
    ))
  ) {
    throw new OutputPathError(`refusing to write ${what} ${out}: it already exists (choose a new path)`);
  }
  for (const input of opts.inputs ?? []) {
    const dir = await real(await checkpointDir(input));
    if (isInside(target, dir))
      throw new OutputPathError(`refusing to write ${what} ${out} inside the checkpoint folder ${input}: checkpoints are never modified`);
  }
  const folder = path.dirname(target);
  const own = await weightFileIn(folder);
  if (own) throw new OutputPathError(`refusing to write ${what} ${out}: its folder ${folder} holds model weights (${own}); checkpoints are never modified`);
  for (let dir = path.dirname(folder); ; dir = path.dirname(dir)) {
    if (await looksLikeCheckpointFolder(dir))
      throw new OutputPathError(`refusing to write ${what} ${out} inside the checkpoint folder ${dir}: checkpoints are never modified`);
    if (path.dirname(dir) === dir) break;
  }
  if (missing.length && !opts.mkdir)
    throw new OutputPathError(`cannot write ${what} ${out}: the folder ${path.dirname(path.resolve(out))} does not exist (create it, or pass --mkdir)`);
  return target;
}
