/**
 * Where the transforms may write. A checkpoint is never modified: outputs are new files or folders,
 * never inside the base checkpoint's folder and never inside any folder that holds model weights
 * (the one output guard, src/formats/output-guard.ts).
 */
import { OutputPathError, checkOutputPath } from '../formats/output-guard';

export { checkpointDir, isInside, looksLikeCheckpointFolder } from '../formats/output-guard';

/** A problem with what the user asked for (the CLI exits 2 on it); the checkpoint itself is fine. */
export class TransformInputError extends Error {
  override name = 'TransformInputError';
}

/**
 * Refuses an output path inside the base checkpoint's folder, or inside (at any depth) a folder that
 * holds model weights, or one that already exists. Missing folders above it are created when written.
 */
export async function assertNewOutput(out: string, baseDir: string, what: string): Promise<void> {
  try {
    await checkOutputPath(out, { inputs: [baseDir], mustBeNew: true, mkdir: true, what });
  } catch (e) {
    if (e instanceof OutputPathError) throw new TransformInputError(e.message);
    throw e;
  }
}
