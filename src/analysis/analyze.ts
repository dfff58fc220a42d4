/**
 * One analysis of a checkpoint against its base: the diff pass, and (when asked) the spectral pass and
 * the verdict. Runs in plain Node: the CLI calls it directly, the extension through the engine worker.
 */
import { AnalysisPlan } from './plan';
import { MergedWeight } from './adapter';
import { lowRankNorms } from '../linalg/low-rank';
import { diffCheckpointsParallel } from './diff-parallel';
import { summarize } from '../report/summarize';
import { SCHEMA_VERSION, type AnalysisSettings, type CheckpointReport, type TensorDiff } from '../report/schema';
import { checkpointLabel, stepOfPath } from '../discovery/layout';
import { VERSION } from '../version';
import * as path from 'node:path';
import type { PairSpectral } from './spectral';
import { contentDigest, partialReport, planShards, type PartialReport, type ShardSpec } from './shards';

export interface AnalyzeProgress {
  phase: 'diff' | 'spectral';
  tensor: string;
  index: number;
  total: number;
  /** 0..1 over the whole analysis (the spectral pass itself reports 0..1 over its own work). */
  fraction: number;
}

export interface AnalyzeOptions {
  settings: AnalysisSettings;
  passes: 'diff' | 'full';
  onProgress?: (p: AnalyzeProgress) => void;
  onTensor?: (t: TensorDiff) => void;
  signal?: AbortSignal;
  /** Threads of the diff pass (default: the cores, at most 4) and the thread script (default: next to the bundle). */
  threads?: number;
  threadScript?: string;
  /** The base given is the residual base a principal-init adapter (PiSSA) trained on (see analysis/adapter.ts). */
  residualBase?: boolean;
  /** The spectral pass, injected so that the diff-only path never loads the compute backend. */
  spectral?: SpectralPass;
}

export interface SpectralPassResult {
  /** The run-level part of the report. */
  report: Pick<CheckpointReport, 'verdict' | 'spectralSummary' | 'baseBases'>;
  /** Per analysed tensor (by report name): everything the run level pooled, for a shard's partial report. */
  results: ReadonlyMap<string, PairSpectral>;
  /** Tensors the pass does not apply to, and why (by report name). */
  skipped: ReadonlyMap<string, string>;
}

export interface SpectralPass {
  device: string;
  run(plan: AnalysisPlan, tensors: TensorDiff[], opts: AnalyzeOptions): Promise<SpectralPassResult>;
}

export { stepOfPath };

export async function analyzeCheckpoint(basePath: string, ckptPath: string, opts: AnalyzeOptions): Promise<CheckpointReport> {
  const plan = await AnalysisPlan.open(basePath, ckptPath, opts.passes, { residualBase: opts.residualBase });
  try {
    return (await analyze(plan, opts)).report;
  } finally {
    await plan.close();
  }
}

/** The analysis of a plan the caller opened (the engine keys its cache and guards memory with the same plan). */
export async function analyzePlan(plan: AnalysisPlan, opts: AnalyzeOptions): Promise<CheckpointReport> {
  if (plan.passes !== opts.passes) throw new Error(`a plan for the ${plan.passes} pass cannot run the ${opts.passes} pass`);
  return (await analyze(plan, opts)).report;
}

/**
 * One shard of the analysis (docs/report-schema.md, "Partial report"): the tensors the plan gives
 * shard `shard.index` of `shard.count`, and what merging them needs. `gatescope merge` rebuilds the report.
 */
export async function analyzeShard(basePath: string, ckptPath: string, shard: ShardSpec, opts: AnalyzeOptions): Promise<PartialReport> {
  const plan = await AnalysisPlan.open(basePath, ckptPath, opts.passes, { residualBase: opts.residualBase });
  try {
    const { report, spectral, shards } = await analyze(plan, opts, shard);
    const inputs = { baseContent: contentDigest(plan.base), checkpointContent: contentDigest(plan.checkpoint) };
    return partialReport(report, shards!, shard, inputs, spectral ?? new Map());
  } finally {
    await plan.close();
  }
}

async function analyze(plan: AnalysisPlan, opts: AnalyzeOptions, shard?: ShardSpec) {
  const started = Date.now();
  const { base, checkpoint: ckpt } = plan;
  const diffShare = opts.passes === 'full' ? 0.3 : 1;
  const shards = shard ? planShards(plan, shard.count, opts.settings) : undefined;
  const only = shards ? new Set(shards.tensors.filter((t) => t.shard === shard!.index).map((t) => t.name)) : undefined;
  const { tensors, mismatches, pairing } = await diffCheckpointsParallel(plan, {
    only,
    threads: opts.threads,
    threadScript: opts.threadScript,
    eta: opts.settings.eta,
    signal: opts.signal,
    onTensor: opts.onTensor,
    onProgress: (p) =>
      opts.onProgress?.({
        phase: 'diff',
        tensor: p.tensor,
        index: p.index,
        total: p.total,
        fraction: diffShare * (p.bytesTotal ? p.bytesDone / p.bytesTotal : 1),
      }),
  });
  const report: CheckpointReport = {
    schemaVersion: SCHEMA_VERSION,
    kind: 'gatescope.checkpoint-report',
    tool: { name: 'gatescope', version: VERSION },
    createdAt: new Date().toISOString(),
    base: path.resolve(base.path),
    checkpoint: path.resolve(ckpt.path),
    step: stepOfPath(ckpt.path),
    label: checkpointLabel(ckpt.path),
    ...(base.notes.length || ckpt.notes.length ? { notes: [...base.notes, ...ckpt.notes] } : {}),
    settings: opts.settings,
    passes: opts.passes,
    summary: summarize(tensors),
    tensors,
    mismatches,
    pairing,
    durationMs: 0,
  };
  if (ckpt.adapter) await describeAdapter(plan, report);
  const diffMs = Date.now() - started;
  report.timings = { diffMs };
  let spectral: ReadonlyMap<string, PairSpectral> | undefined;
  if (opts.passes === 'full') {
    if (!opts.spectral) throw new Error('the full analysis needs a spectral pass');
    report.device = opts.spectral.device;
    // The spectral pass reports its own 0..1; here it becomes the part of the whole after the diff pass.
    const r = await opts.spectral.run(plan, tensors, {
      ...opts,
      onProgress: opts.onProgress && ((p) => opts.onProgress!({ ...p, fraction: diffShare + (1 - diffShare) * p.fraction })),
    });
    for (const t of tensors) {
      const why = r.skipped.get(t.name);
      if (why) t.spectralSkipped = why;
      const x = r.results.get(t.name);
      if (x) {
        t.spectral = x.spectral;
        t.verdict = x.verdict;
      }
    }
    Object.assign(report, r.report);
    spectral = r.results;
    await base.assertUnchanged();
    await ckpt.assertUnchanged();
    report.timings = { diffMs, spectralMs: Date.now() - started - diffMs };
  }
  report.durationMs = Date.now() - started;
  return { report, spectral, shards };
}

/** The adapter's part of the report: its config, and per targeted weight the exact update norms from the factors. */
async function describeAdapter(plan: AnalysisPlan, report: CheckpointReport): Promise<void> {
  const a = plan.checkpoint.adapter!;
  report.adapter = {
    config: path.resolve(a.config),
    r: a.r,
    loraAlpha: a.loraAlpha,
    useRslora: a.useRslora,
    fanInFanOut: a.fanInFanOut,
    targets: a.targets,
    saved: a.saved,
    principalInit: a.principalInit,
    baseModel: a.baseModel,
  };
  for (const t of report.tensors) {
    const src = plan.pair(t.name)?.checkpoint.file;
    if (!(src instanceof MergedWeight)) continue;
    const norms = lowRankNorms(await src.update());
    t.adapter = {
      rank: src.target.rank,
      alpha: src.target.alpha,
      scale: src.target.scale,
      updateNormFro: norms.fro,
      updateSpectralNorm: norms.spectral,
      relUpdateNorm: t.baseNormFro > 0 ? norms.fro / t.baseNormFro : null,
    };
  }
}
