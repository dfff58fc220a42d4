/**
 * Aggregates per-tensor diffs into the report summary: whole model, linear weights, per module, per layer.
 * Shares are pooled over entries (sum of changed / sum of finite entries), not averaged over tensors.
 * A tensor without a finite entry (unchanged: null) adds its entries and NaN/Inf count but no share; a
 * scope with no finite entry at all has no share (null), and such a module or layer group is left out.
 */
import { isLinearWeight } from '../core/names';
import type { GroupSummary, ModuleKind, ReportSummary, TensorDiff } from './schema';

/** What pooling needs of a tensor's result: the diff pass's and the steps pass's alike. */
export interface Poolable {
  numel: number;
  nonFinite: number;
  changed: number;
  updateNormFro: number;
  baseNormFro: number;
}

/**
 * Tensors pooled into one group: entries summed, M1 shares over the finite entries, the relative update
 * norm as the root of summed squares. The one pooling rule of the reports, the steps pass and the panels.
 */
export class TensorPool {
  numel = 0;
  finite = 0;
  changed = 0;
  nonFinite = 0;
  tensors = 0;
  dSq = 0;
  baseSq = 0;
  add(t: Poolable): void {
    const finite = t.numel - t.nonFinite;
    this.numel += t.numel;
    this.finite += finite;
    this.changed += t.changed;
    this.nonFinite += t.nonFinite;
    this.tensors++;
    this.dSq += t.updateNormFro ** 2;
    this.baseSq += t.baseNormFro ** 2;
  }
  get unchanged(): number | null {
    return this.finite === 0 ? null : (this.finite - this.changed) / this.finite;
  }
  /** Squares of saturated norms overflow: no ratio then, rather than NaN. */
  get relUpdateNorm(): number | null {
    return this.baseSq > 0 && Number.isFinite(this.dSq / this.baseSq) ? Math.sqrt(this.dSq / this.baseSq) : null;
  }
  /** Only for a group with a finite entry (see groups()). */
  summary(): GroupSummary {
    return {
      unchanged: this.unchanged ?? 0,
      numel: this.numel,
      changed: this.changed,
      nonFinite: this.nonFinite,
      tensors: this.tensors,
      relUpdateNorm: this.relUpdateNorm,
    };
  }
}

export function summarize(tensors: readonly TensorDiff[]): ReportSummary {
  const all = new TensorPool();
  const linear = new TensorPool();
  const noEmbedNorm = new TensorPool();
  let legacyUnchanged = 0;
  let legacyFinite = 0;
  const byModule = new Map<ModuleKind, TensorPool>();
  const byLayer = new Map<number, TensorPool>();
  for (const t of tensors) {
    all.add(t);
    if (t.unchangedLegacyAbs !== null) {
      legacyUnchanged += t.unchangedLegacyAbs * (t.numel - t.nonFinite);
      legacyFinite += t.numel - t.nonFinite;
    }
    if (isLinearWeight(t.name, t.shape, t.module)) linear.add(t);
    if (t.module !== 'embed' && t.module !== 'norm') noEmbedNorm.add(t);
    let g = byModule.get(t.module);
    if (!g) byModule.set(t.module, (g = new TensorPool()));
    g.add(t);
    if (t.layer !== null) {
      let l = byLayer.get(t.layer);
      if (!l) byLayer.set(t.layer, (l = new TensorPool()));
      l.add(t);
    }
  }
  const s = all.summary();
  const withShare = <K>(groups: Map<K, TensorPool>): [K, TensorPool][] => [...groups].filter(([, g]) => g.unchanged !== null);
  return {
    unchanged: all.unchanged,
    unchangedLinear: linear.unchanged,
    unchangedNoEmbedNorm: noEmbedNorm.unchanged,
    unchangedLegacyAbs: legacyFinite === 0 ? null : legacyUnchanged / legacyFinite,
    numel: s.numel,
    changed: s.changed,
    nonFinite: s.nonFinite,
    relUpdateNorm: s.relUpdateNorm,
    byModule: Object.fromEntries(withShare(byModule).map(([k, g]) => [k, g.summary()])),
    byLayer: Object.fromEntries(
      withShare(byLayer)
        .sort((a, b) => a[0] - b[0])
        .map(([k, g]) => [String(k), g.summary()]),
    ),
  };
}
