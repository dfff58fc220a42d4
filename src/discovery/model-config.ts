/**
 * A checkpoint's config.json, read the safe way: opened non-blocking and read only when it is a small
 * regular file, so a FIFO or a device named config.json can never hang the reader (the extension host).
 */
import * as path from 'node:path';
import { readSmallRegularFile } from '../formats/checkpoint';

const MAX_CONFIG_BYTES = 5_000_000;

/** The parsed config.json beside a checkpoint folder or file, or null (none, not a regular file, too large, not JSON). */
export async function readModelConfig(checkpoint: string): Promise<unknown> {
  const dir = checkpoint.endsWith('.safetensors') ? path.dirname(checkpoint) : checkpoint;
  try {
    const text = (await readSmallRegularFile(path.join(dir, 'config.json'), MAX_CONFIG_BYTES)).toString('utf8');
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
