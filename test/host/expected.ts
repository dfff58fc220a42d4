/**
 * What the host tests expect, computed outside VS Code before they run (test/host/expect.ts writes it,
 * from the CLI's own `scan`, `analyze` and `compare` output): the in-host suite and the Chromium driver
 * compare the extension against it.
 */
import { readFileSync } from 'node:fs';
import type { DiscoveredRun } from '../../src/discovery/scan';
import type { LensSpec } from '../../src/ui-model/lenses';
import type { CheckpointReport, ConsistencyReport } from '../../src/report/schema';
import type { StepsReport } from '../../src/report/steps-schema';

export interface ExpectedReport {
  runId: string;
  runName: string;
  base: string;
  checkpoint: string;
  step: number | null;
  /** The tree / quick-pick label of the checkpoint, e.g. `step 300`. */
  checkpointLabel: string;
  /** The CLI's JSON report (`gatescope analyze BASE CKPT --json`). */
  reportFile: string;
  /** The dashboard's headline numbers, formatted as the webview formats them. */
  display: {
    headline: string;
    unchanged: string;
    unchangedLinear: string;
    relUpdateNorm: string;
    principalAngleMax: string | null;
    verdict: string | null;
    /** The "unchanged" heatmap: row and column headers, cell texts (row-major, '' = empty), legend ends. */
    heatmap: { layers: string[]; modules: string[]; cells: string[]; min: string; max: string };
  };
}

export interface ExpectedCompare {
  base: string;
  checkpoints: string[];
  labels: string[];
  /** `gatescope compare BASE CKPT... --json` */
  reportFile: string;
}

export interface ExpectedSteps {
  runId: string;
  runName: string;
  /** `gatescope steps RUN --json` */
  reportFile: string;
  /** The panel's table, formatted as the webview formats it (src/ui-model/steps.ts). */
  rows: { label: string; changed: string; xorZstd: string; band: string; agreement: string }[];
  headline: string;
}

export interface ExpectedConfig {
  /** Absolute path of a training config file with Gatescope lenses. */
  file: string;
  /** Relative to the examples folder (what Quick Open is given). */
  relative: string;
  specs: Pick<LensSpec, 'kind' | 'line' | 'column' | 'key' | 'title' | 'value'>[];
  /** Per output-directory spec (same order as the output specs): the run it points to, or null. */
  outputRuns: (string | null)[];
  /** The run the file's Gate lenses link to (its first output folder with a run): the learning-rate lens adds "Step to step" for it. */
  fileRun: string | null;
}

export interface Expected {
  schema: 1;
  examples: string;
  /** `gatescope scan EXAMPLES --json`: the runs the extension must list. */
  runs: DiscoveredRun[];
  reports: ExpectedReport[];
  compares: ExpectedCompare[];
  steps: ExpectedSteps[];
  configs: ExpectedConfig[];
}

export function loadExpected(file: string): Expected {
  const e = JSON.parse(readFileSync(file, 'utf8')) as Expected;
  if (e.schema !== 1) throw new Error(`${file}: unknown schema ${String(e.schema)}`);
  return e;
}

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/**
 * A report without what differs between two runs of the same analysis: when and how fast it ran, and what
 * came from a cache. Everything else, every number included, must be identical.
 */
export function comparable<T extends CheckpointReport | ConsistencyReport | StepsReport>(r: T): Omit<T, 'createdAt' | 'durationMs'> {
  const copy = { ...r } as Partial<CheckpointReport>;
  delete copy.createdAt;
  delete copy.durationMs;
  delete copy.timings;
  delete copy.baseBases;
  if (copy.tensors) {
    copy.tensors = copy.tensors.map((t) => {
      const sub = t.spectral?.subspace;
      if (!sub) return t;
      return { ...t, spectral: { ...t.spectral!, subspace: { ...sub, baseFromCache: false, baseIterations: null, baseConverged: null } } };
    });
  }
  return copy as unknown as Omit<T, 'createdAt' | 'durationMs'>;
}

/** The first difference between two JSON values, as `path: a !== b` (for a readable assertion message). */
export function firstDifference(a: unknown, b: unknown, at = '$'): string | null {
  if (Object.is(a, b)) return null;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return `${at}: ${JSON.stringify(a)} !== ${JSON.stringify(b)}`;
  if (Array.isArray(a) !== Array.isArray(b)) return `${at}: array vs object`;
  const ka = Object.keys(a);
  const kb = Object.keys(b as object);
  for (const k of new Set([...ka, ...kb])) {
    const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${at}.${k}`);
    if (d) return d;
  }
  return null;
}
