/**
 * What a checkpoint's path says about it: its training step, the run folder it belongs to, the layout
 * that saved it, and the short label people use for it ("rl-kl step 80"). Pure path logic, no I/O.
 */
import * as path from 'node:path';

export type Layout = 'hf-model' | 'hf-trainer' | 'verl' | 'openrlhf' | 'loose-file' | 'verl-fsdp' | 'deepspeed';

export const STEP_DIR_RE = /^(?:checkpoint|global_step|step|ckpt|iter)[-_]?(\d+)(?:_hf)?$/i;
export const STEP_FILE_RE = /(?:checkpoint|global_step|step|iter|ckpt)[-_]?(\d+)/i;
/** Folders trainers put between a run and its step folders (verl's actor, OpenRLHF's _actor, ...). */
export const RUN_CONTAINERS = new Set(['_actor', 'actor', 'checkpoints', 'ckpt']);

export function stepOf(segment: string): number | null {
  const m = STEP_DIR_RE.exec(segment);
  return m ? Number(m[1]) : null;
}

/** The run folder, step and layout of a checkpoint folder, from the nearest step-named folder up. */
export function runRootFor(p: string): { root: string; step: number | null; layout: Layout } {
  const parts = p.split(path.sep);
  for (let i = parts.length - 1; i >= 0; i--) {
    const step = stepOf(parts[i]);
    if (step === null) continue;
    let rootParts = parts.slice(0, i);
    if (rootParts.length > 1 && RUN_CONTAINERS.has(rootParts[rootParts.length - 1])) rootParts = rootParts.slice(0, -1);
    const seg = parts[i];
    const rest = parts.slice(i + 1).join('/');
    const layout: Layout = /^checkpoint/i.test(seg) ? 'hf-trainer' : rest.startsWith('actor') ? 'verl' : /_hf$/i.test(seg) ? 'openrlhf' : 'hf-model';
    return { root: rootParts.join(path.sep) || path.sep, step, layout };
  }
  return { root: p, step: null, layout: 'hf-model' };
}

/** The step of a checkpoint path, from the nearest step-named folder or file. */
export function stepOfPath(p: string): number | null {
  const parts = path.resolve(p).split(path.sep);
  for (let i = parts.length - 1; i >= 0; i--) {
    const s = stepOf(parts[i].replace(/\.safetensors$/, ''));
    if (s !== null) return s;
  }
  return null;
}

/**
 * The label of a checkpoint as a person names it: its run and step ("rl-kl step 80"), not the layout's
 * folder name (verl's `.../global_step_80/actor/huggingface` is not "huggingface"). A folder without a
 * step is its own name; a loose file is its name without the extension.
 */
export function checkpointLabel(p: string): string {
  const abs = path.resolve(p);
  const file = abs.endsWith('.safetensors');
  const dir = file ? path.dirname(abs) : abs;
  const parts = dir.split(path.sep);
  for (let i = parts.length - 1; i >= 0; i--) {
    const step = stepOf(parts[i]);
    if (step === null) continue;
    let j = i;
    if (j > 1 && RUN_CONTAINERS.has(parts[j - 1])) j--;
    const run = j > 0 ? parts[j - 1] : '';
    const label = run ? `${run} step ${step}` : `step ${step}`;
    return file && i !== parts.length - 1 ? `${label} ${path.basename(abs, '.safetensors')}` : label;
  }
  if (file) {
    const m = STEP_FILE_RE.exec(path.basename(abs));
    return m ? `${path.basename(dir)} step ${Number(m[1])}` : path.basename(abs, '.safetensors');
  }
  return path.basename(abs) || abs;
}
