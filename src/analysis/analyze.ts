/**
 * One analysis of a checkpoint against its base: the diff pass, and (when asked) the spectral pass and
 * the verdict. Runs in plain Node: the CLI calls it directly, the extension through the engine worker.
 */
import { Checkpoint } from '../formats/checkpoint';
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
  run(base: Checkpoint, ckpt: Checkpoint, tensors: TensorDiff[], opts: AnalyzeOptions): Promise<SpectralPassResult>;
}

export { stepOfPath };

export async function analyzeCheckpoint(basePath: string, ckptPath: string, opts: AnalyzeOptions): Promise<CheckpointReport> {
  return (await analyze(basePath, ckptPath, opts)).report;
}

/**
 * One shard of the analysis (docs/report-schema.md, "Partial report"): the tensors the plan gives
 * shard `shard.index` of `shard.count`, and what merging them needs. `gatescope merge` rebuilds the report.
 */
export async function analyzeShard(basePath: string, ckptPath: string, shard: ShardSpec, opts: AnalyzeOptions): Promise<PartialReport> {
  const { report, spectral, plan, inputs } = await analyze(basePath, ckptPath, opts, shard);
  return partialReport(report, plan!, shard, inputs!, spectral ?? new Map());
}

async function analyze(basePath: string, ckptPath: string, opts: AnalyzeOptions, shard?: ShardSpec) {
  const started = Date.now();
  const base = await Checkpoint.open(basePath);
  let ckpt: Checkpoint | undefined;
  try {
    ckpt = await Checkpoint.open(ckptPath);
    const diffShare = opts.passes === 'full' ? 0.3 : 1;
    const plan = shard ? planShards(base, ckpt, shard.count, opts.passes, opts.settings) : undefined;
    const only = plan ? new Set(plan.tensors.filter((t) => t.shard === shard!.index).map((t) => t.name)) : undefined;
    const { tensors, mismatches, pairing } = await diffCheckpointsParallel(base, ckpt, {
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
      base: path.resolve(basePath),
      checkpoint: path.resolve(ckptPath),
      step: stepOfPath(ckptPath),
      label: checkpointLabel(ckptPath),
      ...(base.notes.length || ckpt.notes.length ? { notes: [...base.notes, ...ckpt.notes] } : {}),
      settings: opts.settings,
      passes: opts.passes,
      summary: summarize(tensors),
      tensors,
      mismatches,
      pairing,
      durationMs: 0,
    };
    const diffMs = Date.now() - started;
    report.timings = { diffMs };
    let spectral: ReadonlyMap<string, PairSpectral> | undefined;
    if (opts.passes === 'full') {
      if (!opts.spectral) throw new Error('the full analysis needs a spectral pass');
      report.device = opts.spectral.device;
      // The spectral pass reports its own 0..1; here it becomes the part of the whole after the diff pass.
      const r = await opts.spectral.run(base, ckpt, tensors, {
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
    // Only a shard says what it is a part of.
    const inputs = shard ? { baseContent: contentDigest(base), checkpointContent: contentDigest(ckpt) } : undefined;
    return { report, spectral, plan, inputs };
  } finally {
    await base.close();
    await ckpt?.close();
  }
}
