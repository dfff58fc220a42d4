/**
 * What the views say about a LoRA adapter checkpoint's report: which adapter it is, what its numbers are
 * of (M1 of the merge, Gate II of the exact update), and the size of that exact update.
 */
import type { CheckpointReport } from '../report/schema';

export interface AdapterSummaryView {
  /** "LoRA adapter r 8, alpha 16 on 28 weights". */
  title: string;
  /** What the numbers are of. */
  note: string;
  /** Median over the targeted weights of ||scale * B @ A||_F / ||W0||_F (exact, from the factors). */
  relUpdateNormMedian: number | null;
}

export function adapterSummaryView(r: CheckpointReport): AdapterSummaryView | null {
  const a = r.adapter;
  if (!a) return null;
  const rel = r.tensors
    .map((t) => t.adapter?.relUpdateNorm)
    .filter((x): x is number => typeof x === 'number' && Number.isFinite(x))
    .sort((x, y) => x - y);
  const mid = rel.length === 0 ? null : rel.length % 2 ? rel[(rel.length - 1) / 2] : (rel[rel.length / 2 - 1] + rel[rel.length / 2]) / 2;
  const weights = `${a.targets.length} weight${a.targets.length === 1 ? '' : 's'}`;
  return {
    title:
      `LoRA adapter r ${a.r}, alpha ${a.loraAlpha}${a.useRslora ? ' (rsLoRA)' : ''} on ${weights}` +
      (a.saved.length ? `, ${a.saved.length} saved module tensor${a.saved.length === 1 ? '' : 's'}` : '') +
      (a.principalInit ? `, ${a.principalInit} init against its residual base` : ''),
    note:
      'Unchanged counts what merging the adapter into the base would change (rounded to its dtype); ' +
      'the angles, spectral shifts and energies are of the exact update scale * B @ A, computed from the factors.',
    relUpdateNormMedian: mid,
  };
}
