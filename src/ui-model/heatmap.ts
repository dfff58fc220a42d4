/**
 * Shapes a checkpoint report into the dashboard's layer x module heatmap and the run's series over steps.
 * Pure and browser-safe: the host uses it to prepare data, the webview to re-shape on a metric change,
 * the unit tests to check it.
 */
import type { CheckpointReport, ModuleKind, TensorDiff, VerdictLabel } from '../report/schema';
import { TensorPool } from '../report/summarize';

export type HeatmapMetric =
  | 'unchanged'
  | 'relUpdateNorm'
  | 'medianUpdateUlps'
  | 'principalAngleMaxDeg'
  | 'nss'
  | 'offPrincipalEnergy'
  | 'offPrincipalEnergyExcess'
  | 'overlapPrincipal'
  | 'overlapLowMagnitude';

export interface MetricInfo {
  id: HeatmapMetric;
  label: string;
  /** How the value is written: a share, a small number, or degrees. */
  unit: 'share' | 'number' | 'degrees';
  /** The spectral pass is needed. */
  spectral: boolean;
  /** What the colour means, one sentence. */
  help: string;
}

export const HEATMAP_METRICS: readonly MetricInfo[] = [
  {
    id: 'unchanged',
    label: 'unchanged (M1)',
    unit: 'share',
    spectral: false,
    help: 'Share of entries left bit-identical (bf16) or within eta (other floats).',
  },
  {
    id: 'relUpdateNorm',
    label: 'relative update norm ||dW||/||W0||',
    unit: 'number',
    spectral: false,
    help: 'Size of the update relative to the weight (Gate I: small under a KL anchor).',
  },
  {
    id: 'medianUpdateUlps',
    label: 'median update in bf16 ULPs',
    unit: 'number',
    spectral: false,
    help: 'Median |dw| / ulp(w0) over changed entries (Gate III).',
  },
  {
    id: 'principalAngleMaxDeg',
    label: 'max principal angle (M5)',
    unit: 'degrees',
    spectral: true,
    help: 'Largest rotation of the top-k singular subspaces, in degrees.',
  },
  { id: 'nss', label: 'spectral drift NSS (M6)', unit: 'number', spectral: true, help: '||sigma(W1) - sigma(W0)|| / ||sigma(W0)||.' },
  {
    id: 'offPrincipalEnergy',
    label: 'off-principal energy (M8)',
    unit: 'share',
    spectral: true,
    help: "Share of the update's energy outside the top-k principal subspaces.",
  },
  {
    id: 'offPrincipalEnergyExcess',
    label: 'off-principal energy minus baseline (M8)',
    unit: 'share',
    spectral: true,
    help: 'Off-principal energy minus its isotropic baseline 1 - k²/(mn): above 0 leans off-principal.',
  },
  {
    id: 'overlapPrincipal',
    label: 'overlap with principal weights (M7)',
    unit: 'share',
    spectral: true,
    help: '|P and M| / |M|; the random baseline is alpha.',
  },
  {
    id: 'overlapLowMagnitude',
    label: 'overlap with low-magnitude weights (M7)',
    unit: 'share',
    spectral: true,
    help: '|L and M| / |M|; the random baseline is alpha.',
  },
];

export function isHeatmapMetric(x: unknown): x is HeatmapMetric {
  return typeof x === 'string' && HEATMAP_METRICS.some((m) => m.id === x);
}

export function metricInfo(id: HeatmapMetric): MetricInfo {
  return HEATMAP_METRICS.find((m) => m.id === id)!;
}

/** Module columns of the heatmap, in the order of a transformer block. */
export const LAYER_MODULES: readonly ModuleKind[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'norm', 'other'];

export interface HeatmapCell {
  layer: number;
  module: ModuleKind;
  /** null when the metric does not apply (e.g. no spectral pass, or a 1-D tensor). */
  value: number | null;
  /** The tensors pooled into this cell. */
  tensors: string[];
}

export interface HeatmapData {
  metric: HeatmapMetric;
  layers: number[];
  modules: ModuleKind[];
  /** Row-major: cells[layerIndex * modules.length + moduleIndex]. */
  cells: HeatmapCell[];
  min: number | null;
  max: number | null;
}

type TensorLike = Pick<
  TensorDiff,
  | 'name'
  | 'module'
  | 'layer'
  | 'shape'
  | 'numel'
  | 'unchanged'
  | 'changed'
  | 'nonFinite'
  | 'relUpdateNorm'
  | 'updateNormFro'
  | 'baseNormFro'
  | 'medianUpdateUlps'
  | 'spectral'
>;

function tensorMetric(t: TensorLike, metric: HeatmapMetric): number | null {
  const sp = t.spectral;
  switch (metric) {
    case 'unchanged':
      return t.unchanged;
    case 'relUpdateNorm':
      return t.relUpdateNorm;
    case 'medianUpdateUlps':
      return t.medianUpdateUlps;
    case 'principalAngleMaxDeg':
      return sp ? sp.principalAngleMaxDeg : null;
    case 'nss':
      return sp ? sp.nss : null;
    case 'offPrincipalEnergy':
      return sp ? sp.offPrincipalEnergy : null;
    case 'offPrincipalEnergyExcess':
      return sp ? sp.offPrincipalEnergy - sp.offPrincipalEnergyBaseline : null;
    case 'overlapPrincipal':
      return sp ? sp.overlapPrincipal : null;
    case 'overlapLowMagnitude':
      return sp ? sp.overlapLowMagnitude : null;
  }
}

/**
 * One cell's value from its tensors. `unchanged` and `relUpdateNorm` pool over entries (like the report's
 * summaries); the other metrics belong to a matrix, so the cell shows its largest 2-D tensor's value
 * (the weight, not its bias).
 */
export function cellValue(tensors: TensorLike[], metric: HeatmapMetric): number | null {
  if (tensors.length === 0) return null;
  if (metric === 'unchanged' || metric === 'relUpdateNorm') {
    // The reports' own pooling rule (and its guard against overflowing squares).
    const pool = new TensorPool();
    for (const t of tensors) pool.add(t);
    return metric === 'unchanged' ? pool.unchanged : pool.relUpdateNorm;
  }
  const matrices = tensors.filter((t) => t.shape.length === 2).sort((a, b) => b.numel - a.numel);
  const pick = matrices[0] ?? [...tensors].sort((a, b) => b.numel - a.numel)[0];
  const v = tensorMetric(pick, metric);
  return v === null || !Number.isFinite(v) ? null : v;
}

export function heatmapData(report: { tensors: TensorLike[] }, metric: HeatmapMetric): HeatmapData {
  const byCell = new Map<string, TensorLike[]>();
  const layers = new Set<number>();
  const modules = new Set<ModuleKind>();
  for (const t of report.tensors) {
    if (t.layer === null) continue;
    layers.add(t.layer);
    modules.add(t.module);
    const key = `${t.layer}|${t.module}`;
    const list = byCell.get(key) ?? [];
    list.push(t);
    byCell.set(key, list);
  }
  const layerList = [...layers].sort((a, b) => a - b);
  const moduleList = LAYER_MODULES.filter((m) => modules.has(m));
  for (const m of modules) if (!moduleList.includes(m)) moduleList.push(m);
  const cells: HeatmapCell[] = [];
  let min: number | null = null;
  let max: number | null = null;
  for (const layer of layerList) {
    for (const module of moduleList) {
      const ts = byCell.get(`${layer}|${module}`) ?? [];
      const value = cellValue(ts, metric);
      if (value !== null) {
        min = min === null ? value : Math.min(min, value);
        max = max === null ? value : Math.max(max, value);
      }
      cells.push({ layer, module, value, tensors: ts.map((t) => t.name) });
    }
  }
  return { metric, layers: layerList, modules: moduleList, cells, min, max };
}

/** Position of a value in [0, 1] on the heatmap's colour scale (0 when the range is empty). */
export function scalePosition(value: number, min: number, max: number): number {
  if (!(max > min)) return 0.5;
  return Math.min(1, Math.max(0, (value - min) / (max - min)));
}

export interface StepPoint {
  checkpoint: string;
  step: number | null;
  /** NaN where the report has no share (no finite entry): a gap in the chart, never a point at 100%. */
  unchanged: number;
  unchangedLinear: number;
  relUpdateNorm: number | null;
  principalAngleMaxDeg: number | null;
  nssMedian: number | null;
  offPrincipalEnergyMedian: number | null;
  offPrincipalEnergyBaselineMedian: number | null;
  verdict: VerdictLabel | null;
}

/** The run's measurements over steps, ordered by step (reports without a step keep their order, last). */
export function stepSeries(reports: CheckpointReport[]): StepPoint[] {
  const pts = reports.map((r): StepPoint => ({
    checkpoint: r.checkpoint,
    step: r.step,
    unchanged: r.summary.unchanged ?? NaN,
    unchangedLinear: r.summary.unchangedLinear ?? NaN,
    relUpdateNorm: r.summary.relUpdateNorm,
    principalAngleMaxDeg: r.spectralSummary?.principalAngleMaxDeg ?? null,
    nssMedian: r.spectralSummary?.nssMedian ?? null,
    offPrincipalEnergyMedian: r.spectralSummary?.offPrincipalEnergyMedian ?? null,
    offPrincipalEnergyBaselineMedian: r.spectralSummary?.offPrincipalEnergyBaselineMedian ?? null,
    verdict: r.verdict?.label ?? null,
  }));
  return pts
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.step ?? Number.POSITIVE_INFINITY) - (b.p.step ?? Number.POSITIVE_INFINITY) || a.i - b.i)
    .map((x) => x.p);
}

/**
 * The report without its long arrays (spectra, angle curves, per-row ratios): what the dashboard needs.
 * A 7B model's full report is tens of megabytes; the slim one is a few hundred kilobytes.
 */
export function slimReport(r: CheckpointReport): CheckpointReport {
  return {
    ...r,
    tensors: r.tensors.map((t) => {
      const rest: TensorDiff = { ...t };
      delete rest.rowChangedRatio;
      delete rest.colChangedRatio;
      const sp = t.spectral;
      if (sp) rest.spectral = { ...sp, sigmaBase: [], sigmaCheckpoint: [], principalAnglesLeftDeg: [], principalAnglesRightDeg: [] };
      return rest;
    }),
  };
}
