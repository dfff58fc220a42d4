/**
 * Typed errors for everything that can be wrong with a checkpoint on disk.
 * Every error names the file, the tensor where there is one, and what is wrong,
 * so a user can tell "training is still saving" from "this file is broken".
 */

export type FormatProblem =
  | 'io' // the file could not be opened or read
  | 'header-too-small' // fewer than 8 bytes
  | 'header-too-large' // header length over the 100 MB limit
  | 'header-length' // header length points past the end of the file
  | 'header-utf8' // header is not valid UTF-8
  | 'header-json' // header is not valid JSON
  | 'header-not-object' // header JSON is not an object
  | 'duplicate-key' // a key appears twice in a JSON object
  | 'metadata' // __metadata__ is not a string-to-string map
  | 'tensor-entry' // a tensor entry lacks dtype/shape/data_offsets or has wrong types
  | 'unknown-dtype' // dtype not in the format
  | 'unsupported-dtype' // a dtype of the format that Gatescope recognises but cannot read (sub-byte kinds)
  | 'shape' // negative, fractional or overflowing dimension
  | 'offsets' // offsets not contiguous from 0, hole or overlap
  | 'size-mismatch' // data_offsets length differs from numel x dtype size
  | 'file-length' // file longer or shorter than the header says (shorter: still being written?)
  | 'index' // model.safetensors.index.json malformed
  | 'shard-path' // a shard path that leaves the checkpoint folder
  | 'missing-shard' // the index names a shard that is not there (still being written?)
  | 'index-mismatch' // the index maps a tensor to a shard that does not hold it
  | 'changed-while-reading' // size or mtime changed while the file was read
  | 'adapter' // a PEFT adapter that is malformed, inconsistent with its config or base, or not supported yet
  | 'pairing'; // too few tensors of the checkpoint pair with the base's (a different model, a wrong base)

export class CheckpointFormatError extends Error {
  override readonly name: string = 'CheckpointFormatError';
  constructor(
    readonly file: string,
    readonly problem: FormatProblem,
    readonly detail: string,
    readonly tensor?: string,
  ) {
    super(`${file}${tensor !== undefined ? ` [tensor ${JSON.stringify(tensor)}]` : ''}: ${problem}: ${detail}`);
  }

  /** A checkpoint that is probably still being written: wait and retry instead of reporting it broken. */
  get looksIncomplete(): boolean {
    return (
      (this.problem === 'file-length' && this.detail.startsWith('shorter')) ||
      this.problem === 'header-length' ||
      this.problem === 'header-too-small' ||
      this.problem === 'missing-shard' ||
      this.problem === 'changed-while-reading'
    );
  }
}

/** What {@link PairingError} reports: the counts, the prefixes stripped and the names left unpaired. */
export interface PairingFailure {
  paired: number;
  baseFloatTensors: number;
  basePrefix: string;
  checkpointPrefix: string;
  /** Float tensors of the base without a checkpoint tensor of the same name and shape. */
  unpairedBase: readonly string[];
  /** Checkpoint tensors without a base tensor of the same name and shape. */
  unpairedCheckpoint: readonly string[];
  /** '"name" (base [..] vs checkpoint [..])' per shape mismatch. */
  shapeMismatches: readonly string[];
}

function examples(names: readonly string[], quote = true, max = 3): string {
  if (names.length === 0) return 'none';
  const shown = names
    .slice(0, max)
    .map((n) => (quote ? JSON.stringify(n) : n))
    .join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

/**
 * The checkpoint and the base share too few tensors to compare: none, or fewer than half of the
 * base's float tensors pair by name (wrapper prefixes stripped) and shape. A different model or a wrong
 * base would otherwise read as "unchanged: 100%" over nothing. Names both paths; `file` is the checkpoint.
 */
export class PairingError extends CheckpointFormatError {
  override readonly name: string = 'PairingError';
  constructor(
    readonly checkpoint: string,
    readonly base: string,
    readonly failure: PairingFailure,
  ) {
    const f = failure;
    const stripped = [
      f.basePrefix && `"${f.basePrefix}" stripped from the base's names`,
      f.checkpointPrefix && `"${f.checkpointPrefix}" stripped from the checkpoint's names`,
    ]
      .filter(Boolean)
      .join(', ');
    const detail =
      `${f.paired} of the base's ${f.baseFloatTensors} float tensors pair with a checkpoint tensor of the same name and shape` +
      `${stripped ? ` (${stripped})` : ''}; at least half must (a different model, or the wrong base?).` +
      ` Unpaired in the base: ${examples(f.unpairedBase)}.` +
      ` Unpaired in the checkpoint: ${examples(f.unpairedCheckpoint)}.` +
      (f.shapeMismatches.length ? ` Shape differs: ${examples(f.shapeMismatches, false)}.` : '');
    super(checkpoint, 'pairing', detail);
    this.message = `checkpoint ${checkpoint} does not pair with base ${base}: ${detail}`;
  }
}

/** Node's system error codes in words, for one-line messages. */
const SYSTEM_ERRORS: Record<string, string> = {
  ENOENT: 'no such file or folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a folder, not a file',
  ENOTDIR: 'a part of the path is not a folder',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EMFILE: 'too many open files',
  EEXIST: 'already exists',
  EIO: 'input/output error',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many levels of symbolic links',
};

/** A Node system error (fs, spawn), told as "<path>: <what>"; null for anything else. */
export function describeSystemError(err: unknown): string | null {
  const e = err as NodeJS.ErrnoException & { dest?: string };
  if (typeof e !== 'object' || e === null) return null;
  if (typeof e.code !== 'string' || !(e.code in SYSTEM_ERRORS)) return null;
  const where = e.dest ? `${e.path} -> ${e.dest}` : e.path;
  return `${where ? `${where}: ` : ''}${SYSTEM_ERRORS[e.code]}${e.syscall ? ` (${e.syscall})` : ''}`;
}

/** What went wrong in a system error, without the path (the caller names the file): "no such file or folder". */
export function systemReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && code in SYSTEM_ERRORS ? SYSTEM_ERRORS[code] : ((err as Error)?.message ?? String(err));
}
