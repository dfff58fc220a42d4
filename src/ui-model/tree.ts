/**
 * Labels, descriptions, icons and tooltips of the Gatescope tree, as plain data: the host wraps them in
 * vscode.TreeItems, the unit tests check them without VS Code.
 */
import type { CheckpointState } from '../discovery/scan';
import type { CheckpointReport, GroupSummary, ModuleKind, TensorDiff, Verdict } from '../report/schema';
import { baseName, deg, pct, sci, shortTensorName } from './format';

/** Where a checkpoint stands in this session: its state on disk combined with the analysis job. */
export type JobState =
  | { kind: 'none' }
  | { kind: 'queued' }
  | { kind: 'running'; fraction: number; phase?: string }
  | { kind: 'done'; report: CheckpointReport; fromCache: boolean }
  | { kind: 'error'; message: string }
  | { kind: 'cancelled' };

export interface CheckpointView {
  label: string;
  description: string;
  /** A codicon id (`$(id)` without the `$()`), e.g. `pass`, `sync~spin`. */
  icon: string;
  /** A theme colour id for the icon, or undefined for the default. */
  color?: string;
  tooltip: string;
  /** contextValue: drives the menus in package.json. */
  context: string;
}

export interface CheckpointLike {
  path: string;
  step: number | null;
  state: CheckpointState;
  reason?: string;
  mergeCommand?: string;
  adapter?: AdapterTag;
}

/** What the tree says about a LoRA adapter checkpoint. */
export interface AdapterTag {
  r: number;
  loraAlpha: number;
  principalInit: string | null;
}

/** "LoRA r 8" or "LoRA r 8, pissa init". */
export function adapterLabel(a: AdapterTag): string {
  return `LoRA r ${a.r}${a.principalInit ? `, ${a.principalInit} init` : ''}`;
}

export function checkpointLabel(c: { path: string; step: number | null }): string {
  return c.step !== null ? `step ${c.step}` : baseName(c.path);
}

/** The verdict's reason in a few words, for one line of a tree or a notification. */
export function shortReason(v: Verdict): string {
  const r = v.reason ?? '';
  if (!r) return '';
  const cut = r.split(/[:(]/)[0].trim();
  return cut.length > 60 ? `${cut.slice(0, 57)}...` : cut;
}

/** "54.1% unchanged, inconclusive (between the nulls)" */
export function headline(r: CheckpointReport): string {
  const parts = [`${pct(r.summary.unchanged)} unchanged`];
  if (r.verdict) parts.push(`${r.verdict.label}${shortReason(r.verdict) ? ` (${shortReason(r.verdict)})` : ''}`);
  else if (r.passes === 'diff') parts.push(`rel. update ${sci(r.summary.relUpdateNorm)}`);
  return parts.join(', ');
}

/** `isBaseModel`: the checkpoint belongs to a folder that is only the base of other runs. */
export function checkpointView(c: CheckpointLike, job: JobState, hasBase: boolean, isBaseModel = false): CheckpointView {
  const view = stateView(c, job, hasBase, isBaseModel);
  if (!c.adapter) return view;
  const tag = adapterLabel(c.adapter);
  return {
    ...view,
    description: `${tag} · ${view.description}`,
    tooltip: `${view.tooltip}\n${tag} (alpha ${c.adapter.loraAlpha}): a PEFT adapter, analysed merged into its base for M1 and from its factors for Gate II.`,
  };
}

function stateView(c: CheckpointLike, job: JobState, hasBase: boolean, isBaseModel: boolean): CheckpointView {
  const label = checkpointLabel(c);
  const where = c.path;
  if (c.state === 'incomplete') {
    return {
      label,
      description: 'incomplete, waiting',
      icon: 'watch',
      color: 'list.warningForeground',
      tooltip: `${where}\nStill being written or truncated: ${c.reason ?? ''}\nIt is analysed once it is complete.`,
      context: 'checkpoint.incomplete',
    };
  }
  if (c.state === 'needs-merging') {
    return {
      label,
      description: 'needs merging',
      icon: 'tools',
      color: 'list.warningForeground',
      tooltip: `${where}\n${c.reason ?? ''}${c.mergeCommand ? `\nRun: ${c.mergeCommand}` : ''}`,
      context: 'checkpoint.needsMerging',
    };
  }
  if (c.state === 'error') {
    return {
      label,
      description: 'unreadable',
      icon: 'error',
      color: 'list.errorForeground',
      tooltip: `${where}\n${c.reason ?? 'unreadable'}`,
      context: 'checkpoint.error',
    };
  }
  switch (job.kind) {
    case 'queued':
      return { label, description: 'queued', icon: 'clock', tooltip: `${where}\nWaiting for the engine.`, context: 'checkpoint.busy' };
    case 'running': {
      const p = Math.round(Math.max(0, Math.min(1, job.fraction)) * 100);
      return {
        label,
        description: `analysing ${p}%`,
        icon: 'sync~spin',
        tooltip: `${where}\nAnalysing${job.phase ? ` (${job.phase})` : ''}: ${p}%`,
        context: 'checkpoint.busy',
      };
    }
    case 'done':
      return {
        label,
        description: headline(job.report),
        icon: 'pass',
        color: verdictColor(job.report.verdict?.label),
        tooltip: reportTooltip(job.report),
        context: 'checkpoint.done',
      };
    case 'error':
      return {
        label,
        description: `error: ${firstLine(job.message)}`,
        icon: 'error',
        color: 'list.errorForeground',
        tooltip: `${where}\n${job.message}`,
        context: 'checkpoint.complete',
      };
    case 'cancelled':
      return { label, description: 'cancelled', icon: 'circle-slash', tooltip: where, context: 'checkpoint.complete' };
    case 'none':
      if (isBaseModel && !hasBase)
        return { label, description: 'base model', icon: 'database', tooltip: `${where}\nThe base model of other runs.`, context: 'checkpoint.base' };
      return {
        label,
        description: hasBase ? 'not analysed' : 'no base model',
        icon: 'circle-outline',
        tooltip: hasBase ? where : `${where}\nNo base model found: use "Set Base Model for Run".`,
        context: 'checkpoint.complete',
      };
  }
}

function firstLine(s: string): string {
  const l = s.split('\n')[0];
  return l.length > 80 ? `${l.slice(0, 77)}...` : l;
}

export function verdictColor(label: string | undefined): string | undefined {
  if (label === 'off-principal') return 'charts.green';
  if (label === 'principal-targeting') return 'charts.orange';
  return undefined;
}

export function reportTooltip(r: CheckpointReport): string {
  const s = r.summary;
  const lines = [
    r.checkpoint,
    `base: ${r.base}`,
    `unchanged: ${pct(s.unchanged)} (linear weights ${pct(s.unchangedLinear)})`,
    `relative update norm: ${sci(s.relUpdateNorm)}`,
  ];
  if (r.spectralSummary) {
    const ss = r.spectralSummary;
    lines.push(`max principal angle: ${deg(ss.principalAngleMaxDeg)}; NSS median ${sci(ss.nssMedian)}`);
    lines.push(`off-principal energy median: ${pct(ss.offPrincipalEnergyMedian, 2)} (isotropic ${pct(ss.offPrincipalEnergyBaselineMedian, 2)})`);
  }
  if (r.verdict) {
    lines.push(`verdict: ${r.verdict.label}${r.verdict.reason ? `: ${r.verdict.reason}` : ''}`);
    const c = r.verdict.tensorLabels;
    if (c) lines.push(`per weight: ${c['off-principal']} off-principal, ${c['principal-targeting']} principal-targeting, ${c.inconclusive} inconclusive`);
  }
  if (s.nonFinite > 0) lines.push(`NaN/Inf entries: ${s.nonFinite}`);
  return lines.join('\n');
}

export function runDescription(run: { checkpoints: CheckpointLike[]; base: { resolved: string | null; ref: string | null }; baseOf: string[] }): string {
  const n = run.checkpoints.length;
  const parts = [`${n} checkpoint${n === 1 ? '' : 's'}`];
  if (run.baseOf.length > 0) parts.push(`base of ${run.baseOf.length} run${run.baseOf.length === 1 ? '' : 's'}`);
  else if (run.base.resolved) parts.push(`base: ${baseName(run.base.resolved)}`);
  else parts.push('no base model');
  return parts.join(', ');
}

export function moduleGroupView(module: ModuleKind, g: GroupSummary): { label: string; description: string; tooltip: string } {
  return {
    label: module,
    description: `${pct(g.unchanged)} unchanged, rel. update ${sci(g.relUpdateNorm)}`,
    tooltip: `${g.tensors} tensor(s), ${g.numel.toLocaleString('en-US')} entries, ${g.changed.toLocaleString('en-US')} changed${g.nonFinite ? `, ${g.nonFinite} NaN/Inf` : ''}`,
  };
}

export function tensorView(t: TensorDiff): { label: string; description: string; tooltip: string } {
  const parts = [`${pct(t.unchanged)} unchanged`];
  if (t.spectral) parts.push(`angle ${deg(t.spectral.principalAngleMaxDeg, 1)}`);
  if (t.verdict && t.verdict.label !== 'inconclusive') parts.push(t.verdict.label);
  const tip = [
    t.name,
    `${t.shape.join(' x ')} ${t.dtype}`,
    `unchanged ${pct(t.unchanged, 2)}, relative update ${sci(t.relUpdateNorm)}, max |dw| ${sci(t.maxAbsUpdate)}`,
  ];
  if (t.medianUpdateUlps !== null) tip.push(`median update ${sci(t.medianUpdateUlps)} bf16 ULPs`);
  if (t.hiddenByPrecision !== undefined) tip.push(`hidden by bf16 precision: ${pct(t.hiddenByPrecision)}`);
  if (t.spectralSkipped) tip.push(`spectral: ${t.spectralSkipped}`);
  if (t.verdict) tip.push(`verdict: ${t.verdict.label}${t.verdict.reason ? `: ${t.verdict.reason}` : ''}`);
  return { label: t.layer !== null ? `${t.layer}.${shortTensorName(t.name)}` : t.name, description: parts.join(', '), tooltip: tip.join('\n') };
}
