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

export interface AnalyzeProgress {
  phase: 'diff' | 'spectral';
  tensor: string;
  index: number;
  total: number;
  /** 0..1 over the whole analysis. */
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

export interface SpectralPass {
  device: string;
  run(base: Checkpoint, ckpt: Checkpoint, tensors: TensorDiff[], opts: AnalyzeOptions): Promise<Pick<CheckpointReport, 'verdict' | 'spectralSummary' | 'baseBases'>>;
}

export { stepOfPath };

export async function analyzeCheckpoint(basePath: string, ckptPath: string, opts: AnalyzeOptions): Promise<CheckpointReport> {
  const started = Date.now();
  const base = await Checkpoint.open(basePath);
  let ckpt: Checkpoint | undefined;
  try {
    ckpt = await Checkpoint.open(ckptPath);
    const diffShare = opts.passes === 'full' ? 0.3 : 1;
    const { tensors, mismatches, pairing } = await diffCheckpointsParallel(base, ckpt, {
      threads: opts.threads,
      threadScript: opts.threadScript,
      eta: opts.settings.eta,
      signal: opts.signal,
      onTensor: opts.onTensor,
      onProgress: (p) => opts.onProgress?.({ phase: 'diff', tensor: p.tensor, index: p.index, total: p.total, fraction: diffShare * (p.bytesTotal ? p.bytesDone / p.bytesTotal : 1) }),
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
    if (opts.passes === 'full') {
      if (!opts.spectral) throw new Error('the full analysis needs a spectral pass');
      report.device = opts.spectral.device;
      Object.assign(report, await opts.spectral.run(base, ckpt, tensors, opts));
      await base.assertUnchanged();
      await ckpt.assertUnchanged();
      report.timings = { diffMs, spectralMs: Date.now() - started - diffMs };
    }
    report.durationMs = Date.now() - started;
    return report;
  } finally {
    await base.close();
    await ckpt?.close();
  }
}
