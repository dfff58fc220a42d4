/** The bundled example runs' PyTorch references (examples/reference-settings.json) and Gatescope's reports of them. */
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { analyzeCheckpoint } from '../../src/analysis/analyze';
import { createSpectralPass } from '../../src/analysis/spectral';
import type { ComputeBackend } from '../../src/compute/backend';
import { DEFAULT_SETTINGS, type CheckpointReport } from '../../src/report/schema';

export const EXAMPLES = path.resolve(__dirname, '..', '..', '..', 'examples');

/** What every reference.json names: where its base and checkpoint are (relative to it) and the settings used. */
export interface ReferenceFiles {
  base: string;
  checkpoint: string;
  settings: { k: number; alpha: number };
}

/**
 * Each run of a list in reference-settings.json (`runs`: full fine-tunes, `adapterRuns`: LoRA adapters) with
 * its reference and the full analysis of the checkpoint it names, at the reference's k and alpha.
 */
export async function analyzeExampleRuns<R extends ReferenceFiles>(
  list: 'runs' | 'adapterRuns',
  backend: ComputeBackend,
): Promise<{ run: string; ref: R; report: CheckpointReport }[]> {
  const settings = JSON.parse(await fsp.readFile(path.join(EXAMPLES, 'reference-settings.json'), 'utf8')) as Record<typeof list, Record<string, string>>;
  const out: { run: string; ref: R; report: CheckpointReport }[] = [];
  for (const [run, rel] of Object.entries(settings[list])) {
    const file = path.join(EXAMPLES, rel);
    const ref = JSON.parse(await fsp.readFile(file, 'utf8')) as R;
    const dir = path.dirname(file);
    const report = await analyzeCheckpoint(path.resolve(dir, ref.base), path.resolve(dir, ref.checkpoint), {
      // Every example matrix has a side <= 256: the exact SVD path, full spectrum, as the reference.
      settings: { ...DEFAULT_SETTINGS, k: ref.settings.k, alpha: ref.settings.alpha },
      passes: 'full',
      spectral: createSpectralPass(backend),
    });
    out.push({ run, ref, report });
  }
  return out;
}
