/**
 * What the "Step to Step" panel shows, computed from a steps report (src/analysis/steps.ts): one row per
 * step, the changed share against Gate III's band, the payload of each sync encoding, and module x step /
 * layer x step grids of the changed share. Pure and browser-safe: the host builds it, the webview renders
 * it, the host tests format their expectations with it.
 */
import { MODULE_KINDS } from '../report/schema';
import type { StepEntry, StepPayload, StepsReport } from '../report/steps-schema';
import { formatBytes, formatRate, stepLabel } from '../report/steps-format';
import { TensorPool } from '../report/summarize';
import { pct, sci } from './format';

export const PAYLOAD_ENCODINGS = ['dense', 'bitmap', 'coo', 'xorZstd'] as const satisfies readonly (keyof StepPayload)[];
export type PayloadEncoding = (typeof PAYLOAD_ENCODINGS)[number];

export const PAYLOAD_LABELS: Record<PayloadEncoding, string> = {
  dense: 'dense (changed tensors)',
  bitmap: 'bitmap + values',
  coo: 'COO (int32 index + value)',
  xorZstd: 'XOR + zstd',
};

/** One step, as numbers for the charts and as the texts the table shows. */
export interface StepRow {
  label: string;
  from: string;
  to: string;
  toStep: number | null;
  /** M1 changed share of the model; null without a finite entry. */
  changed: number | null;
  /**
   * Gate III's band on the changed share of the bf16 entries it covers: at most `1 - unchangedAtLr` can
   * change under Adam steps of lr, at most `1 - unchangedAt10Lr` under the conservative 10 lr.
   */
  bandLow: number | null;
  bandHigh: number | null;
  /** The observed changed share of the same entries the band covers. */
  observedInBand: number | null;
  agreement: 'within' | 'below' | 'above' | null;
  payload: StepPayload;
  /** xorZstd over dense: the share of a dense sync that a sparse one moves. */
  xorZstdShare: number | null;
  text: {
    changed: string;
    relUpdateNorm: string;
    medianUlps: string;
    dense: string;
    bitmap: string;
    coo: string;
    xorZstd: string;
    band: string;
    agreement: string;
  };
  note: string;
}

export interface StepGrid {
  /** Row labels (module kinds, or layer numbers as text). */
  rows: string[];
  /** Column labels: the steps. */
  cols: string[];
  /** Changed share per row and step, row-major; null where the row has no entry in that step. */
  cells: (number | null)[];
  min: number | null;
  max: number | null;
}

export interface StepsView {
  rows: StepRow[];
  byModule: StepGrid;
  byLayer: StepGrid;
  /** Where the learning rate came from, once, when every step read the same; otherwise null (each note says). */
  learningRate: string | null;
  /** No step has a prediction: the learning rate or bf16 tensors are missing. */
  noPrediction: string | null;
  headline: string;
}

function changedShare(unchanged: number | null): number | null {
  return unchanged === null ? null : 1 - unchanged;
}

function ulps(x: number | null): string {
  return x === null ? '-' : x < 10 ? x.toFixed(2) : x.toFixed(1);
}

export function stepRow(s: StepEntry): StepRow {
  const p = s.prediction;
  const bandLow = p ? 1 - p.unchangedAtLr : null;
  const bandHigh = p ? 1 - p.unchangedAt10Lr : null;
  return {
    label: stepLabel(s).replace(' -> ', ' → '),
    from: s.from,
    to: s.to,
    toStep: s.toStep,
    changed: changedShare(s.unchanged),
    bandLow,
    bandHigh,
    observedInBand: p ? 1 - p.observedUnchanged : null,
    agreement: p ? p.agreement : null,
    payload: s.payload,
    xorZstdShare: s.payload.xorZstd !== null && s.payload.dense > 0 ? s.payload.xorZstd / s.payload.dense : null,
    text: {
      changed: pct(changedShare(s.unchanged), 2),
      relUpdateNorm: sci(s.relUpdateNorm),
      medianUlps: ulps(s.medianUpdateUlps),
      dense: formatBytes(s.payload.dense),
      bitmap: formatBytes(s.payload.bitmap),
      coo: formatBytes(s.payload.coo),
      xorZstd: formatBytes(s.payload.xorZstd),
      band: p ? `${pct(bandLow, 2)} .. ${pct(bandHigh, 2)}` : '-',
      agreement: p ? p.agreement : 'no prediction',
    },
    note: p ? p.note : (s.predictionUnavailable ?? 'no prediction'),
  };
}

function gridOf(report: StepsReport, cols: string[], rowsOf: (s: StepEntry) => Map<string, TensorPool>, order: (a: string, b: string) => number): StepGrid {
  const perStep = report.steps.map(rowsOf);
  const rows = [...new Set(perStep.flatMap((m) => [...m.keys()]))].sort(order);
  const cells: (number | null)[] = [];
  for (const r of rows) {
    for (const m of perStep) {
      const u = m.get(r)?.unchanged;
      cells.push(u === undefined || u === null ? null : 1 - u);
    }
  }
  const vals = cells.filter((c): c is number => c !== null);
  return {
    rows,
    cols,
    cells,
    min: vals.length ? Math.min(...vals) : null,
    max: vals.length ? Math.max(...vals) : null,
  };
}

/** The tensors of one step pooled by `key` (null: left out), by the reports' one pooling rule. */
function pooled(tensors: StepEntry['tensors'], key: (t: StepEntry['tensors'][number]) => string | null): Map<string, TensorPool> {
  const out = new Map<string, TensorPool>();
  for (const t of tensors) {
    const k = key(t);
    if (k === null) continue;
    let g = out.get(k);
    if (!g) out.set(k, (g = new TensorPool()));
    g.add(t);
  }
  return out;
}

const MODULE_ORDER = new Map<string, number>(MODULE_KINDS.map((m, i) => [m, i]));

export function stepsView(report: StepsReport): StepsView {
  const rows = report.steps.map(stepRow);
  const cols = rows.map((r) => r.label);
  const byModule = gridOf(
    report,
    cols,
    (s) => pooled(s.tensors, (t) => t.module),
    (a, b) => (MODULE_ORDER.get(a) ?? 99) - (MODULE_ORDER.get(b) ?? 99),
  );
  const byLayer = gridOf(
    report,
    cols,
    (s) => pooled(s.tensors, (t) => (t.layer === null ? null : String(t.layer))),
    (a, b) => Number(a) - Number(b),
  );
  const lrs = new Set(report.steps.map((s) => (s.prediction ? `${formatRate(s.prediction.learningRate.value)} from ${s.prediction.learningRate.source}` : '')));
  const predicted = report.steps.filter((s) => s.prediction);
  const noPrediction = predicted.length === 0 ? (report.steps.map((s) => s.predictionUnavailable).find((x) => x) ?? 'no step has a prediction') : null;
  return {
    rows,
    byModule,
    byLayer,
    learningRate: lrs.size === 1 && predicted.length === report.steps.length ? [...lrs][0] : null,
    noPrediction,
    headline: stepsHeadline(report),
  };
}

/** One line for a run: the steps, the median changed share, the XOR+zstd payload of the last step. */
export function stepsHeadline(report: StepsReport): string {
  const n = report.steps.length;
  const shares = report.steps
    .map((s) => changedShare(s.unchanged))
    .filter((x): x is number => x !== null)
    .sort((a, b) => a - b);
  const median = shares.length ? (shares.length % 2 ? shares[(shares.length - 1) / 2] : (shares[shares.length / 2 - 1] + shares[shares.length / 2]) / 2) : null;
  const last = report.steps[n - 1];
  const parts = [`${n} step${n === 1 ? '' : 's'}`, `median ${pct(median, 1)} changed`];
  if (last)
    parts.push(
      `last step ${last.payload.xorZstd !== null ? `${formatBytes(last.payload.xorZstd)} XOR+zstd` : `${formatBytes(last.payload.coo)} COO`} of ${formatBytes(last.payload.dense)} dense`,
    );
  return parts.join(' · ');
}

/** The report without its per-tensor rows (the panel shows the model, modules and layers): what crosses to the webview. */
export function slimSteps(report: StepsReport): StepsReport {
  return { ...report, steps: report.steps.map((s) => ({ ...s, tensors: [] })) };
}

/**
 * How many of the run's complete checkpoints (paths, in step order) the walk did not include: a run still
 * training has saved more since. The base is not one of the run's checkpoints.
 */
export function checkpointsSinceWalk(report: StepsReport, complete: readonly string[]): number {
  const walked = new Set(report.checkpoints.map((c) => c.path));
  return complete.filter((p) => !walked.has(p)).length;
}

/** Whether a walk is of the run as it is now: the same base, the same complete checkpoints in the same order. */
export function walkIsCurrent(report: StepsReport, complete: readonly string[], base: string | null): boolean {
  const walked = report.checkpoints.map((c) => c.path).filter((p) => p !== report.base);
  return report.base === base && walked.length === complete.length && walked.every((p, i) => p === complete[i]);
}
