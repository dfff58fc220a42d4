/**
 * The typed message protocol between an engine client (the extension host or the CLI) and the engine
 * worker process. One request starts one job; the worker answers with progress, partial results,
 * and exactly one of done / error / cancelled.
 */
import type { AnalysisSettings, CheckpointReport, ConsistencyReport, TensorDiff } from '../report/schema';
import type { DeviceSetting } from '../compute/backend';
import type { ScrambleSummary } from '../transform/scramble';
import type { MaskSummary } from '../transform/mask';
import type { StepsReport } from '../report/steps-schema';

export type JobSpec =
  | { kind: 'analyze'; base: string; checkpoint: string; passes: 'diff' | 'full'; settings: AnalysisSettings; device: DeviceSetting }
  /** With settings: the comparative regime verdict too (each checkpoint's full analysis, through the cache); without: M2/M3 only. */
  | { kind: 'compare'; base: string; checkpoints: string[]; labels: string[]; eta: number; settings?: AnalysisSettings; device?: DeviceSetting }
  | { kind: 'scramble'; base: string; out: string; layers: number[]; rotate: boolean; permute: boolean; rotation: 'haar' | 'hadamard'; seed: number }
  | {
      kind: 'mask';
      base: string;
      out: string;
      maskKind: 'principal' | 'nonprincipal' | 'low' | 'union';
      alpha: number;
      k: number;
      allModules: boolean;
      device: DeviceSetting;
    }
  /** A run walked step to step; base null: start at its first checkpoint. learningRate: the user's, over the run's files. */
  | { kind: 'steps'; root: string; base: string | null; learningRate?: number; learningRateSource?: string; eta: number };

export type JobResult = CheckpointReport | ConsistencyReport | ScrambleSummary | MaskSummary | StepsReport;

export type ClientToWorker =
  | {
      type: 'start';
      jobId: string;
      spec: JobSpec;
      cacheDir: string | null;
      /** Size limit of the base-subspace cache under cacheDir (the worker alone evicts it). */ baseCacheBytes?: number;
      /** Size limit of the result cache in cacheDir (the worker alone evicts it; default 512 MB). */ resultCacheBytes?: number;
    }
  | { type: 'cancel'; jobId: string }
  | { type: 'shutdown' };

export type WorkerToClient =
  | { type: 'ready'; pid: number }
  | { type: 'progress'; jobId: string; phase: string; tensor: string; index: number; total: number; fraction: number }
  | { type: 'partial'; jobId: string; tensor: TensorDiff }
  | { type: 'done'; jobId: string; result: JobResult; fromCache: boolean }
  | { type: 'error'; jobId: string; message: string; problem?: string; file?: string; incomplete: boolean }
  | { type: 'cancelled'; jobId: string }
  | { type: 'log'; line: string };

export function isWorkerMessage(m: unknown): m is WorkerToClient {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}
