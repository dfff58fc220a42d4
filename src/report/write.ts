/** Atomic writes: a partial file in the same folder, then rename, so a reader never sees half a file. */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { partialPath, removeStalePartials } from '../formats/partial';

export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  await fsp.mkdir(dir, { recursive: true });
  await removeStalePartials(dir);
  const tmp = partialPath(file);
  try {
    await fsp.writeFile(tmp, data, { flag: 'wx' });
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}
