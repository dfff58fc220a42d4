/**
 * The typed messages between the extension host and the Gatescope webviews, and their validators.
 * Both sides import this one module: the host validates every message a webview posts, the webview
 * validates every message the host posts, and anything unknown or malformed is dropped.
 * Browser-safe (no Node, no vscode).
 */
import type { CheckpointReport, ConsistencyReport, LineRatios, ModuleKind, TensorDiff } from '../report/schema';
import { MODULE_KINDS } from '../report/schema';
import type { HeatmapMetric, StepPoint } from '../ui-model/heatmap';
import { isHeatmapMetric } from '../ui-model/heatmap';
import type { HeadInfo } from '../ui-model/heads';
import type { StepsReport } from '../report/steps-schema';
import type { StepsView } from '../ui-model/steps';

export const PANEL_KINDS = ['dashboard', 'layer', 'compare', 'steps'] as const;
export type PanelKind = (typeof PANEL_KINDS)[number];

/** What a panel remembers across reloads (webview getState/setState and the panel serializer). */
export type PanelState =
  | { panel: 'dashboard'; runId: string; checkpoint: string | null; metric: HeatmapMetric }
  | { panel: 'layer'; runId: string; checkpoint: string; layer: number; tensor: string | null }
  | { panel: 'compare'; base: string; module: ModuleKind | 'all' }
  | { panel: 'steps'; runId: string; grid: 'module' | 'layer' };

export type ExportFormat = 'json' | 'csv' | 'md' | 'html';

export interface CheckpointEntry {
  path: string;
  step: number | null;
  label: string;
  description: string;
  /** The tree's state, e.g. 'done', 'running', 'incomplete'. */
  state: string;
  analysed: boolean;
}

export interface DashboardData {
  runId: string;
  runName: string;
  base: string | null;
  baseProblem: string | null;
  checkpoints: CheckpointEntry[];
  selected: string | null;
  /** The selected checkpoint's report without its long arrays; null while it is not analysed. */
  report: CheckpointReport | null;
  series: StepPoint[];
  busy: string | null;
}

export interface TensorHistory {
  tensor: string;
  points: { step: number | null; checkpoint: string; unchanged: number; row: LineRatios | null; col: LineRatios | null }[];
}

export interface ConsensusMap {
  tensor: string;
  runs: string[];
  rows: number;
  cols: number;
  blockRows: number;
  blockCols: number;
  values: number[];
}

export interface LayerData {
  runId: string;
  runName: string;
  checkpoint: string;
  step: number | null;
  layer: number;
  /** The tensor to show first (from the tree or the heatmap), when known. */
  focus: string | null;
  layers: number[];
  /** The layer's tensors in full (spectra, angle curves, row/column ratios). */
  tensors: TensorDiff[];
  history: TensorHistory[];
  heads: HeadInfo | null;
  consensus: ConsensusMap[];
  settings: { k: number; alpha: number };
}

export interface CompareData {
  base: string;
  /** Without consensus maps (the layer detail shows those). */
  report: ConsistencyReport;
}

export interface StepsData {
  runId: string;
  runName: string;
  base: string | null;
  /** The walk's state: not run yet, running (with its progress), done, failed, cancelled. */
  state: 'none' | 'running' | 'done' | 'error' | 'cancelled';
  busy: string | null;
  error: string | null;
  /** Without per-tensor rows (the view's grids carry modules and layers). */
  report: StepsReport | null;
  view: StepsView | null;
  /** The learning rate the user gave for this run, if any (else the run's files were read). */
  learningRate: number | null;
  /** Complete checkpoints of the run now that the shown walk did not include (training went on). */
  newCheckpoints: number;
}

export type HostToWebview =
  | { type: 'dashboard'; data: DashboardData }
  | { type: 'steps'; data: StepsData }
  | { type: 'layer'; data: LayerData }
  | { type: 'compare'; data: CompareData }
  | { type: 'busy'; text: string | null }
  | { type: 'error'; message: string };

export type WebviewToHost =
  | { type: 'ready'; state: PanelState | null }
  | { type: 'state'; state: PanelState }
  | { type: 'selectCheckpoint'; checkpoint: string }
  | { type: 'openLayer'; checkpoint: string; layer: number; tensor: string | null }
  | { type: 'openDashboard'; runId: string }
  | { type: 'analyze'; checkpoint: string }
  | { type: 'export'; format: ExportFormat }
  | { type: 'compareRuns' }
  | { type: 'openSteps'; runId: string }
  /** Walk the run again; `askLearningRate`: the host asks for a learning rate first. */
  | { type: 'runSteps'; askLearningRate: boolean };

const MAX_STRING = 4096;

function isObj(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function str(x: unknown): x is string {
  return typeof x === 'string' && x.length > 0 && x.length <= MAX_STRING;
}

function layerIndex(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < 100_000;
}

export function isExportFormat(x: unknown): x is ExportFormat {
  return x === 'json' || x === 'csv' || x === 'md' || x === 'html';
}

/** A panel state from an untrusted source (webview state, serializer): a fresh, well-formed copy or null. */
export function parsePanelState(s: unknown): PanelState | null {
  if (!isObj(s)) return null;
  switch (s.panel) {
    case 'dashboard':
      if (!str(s.runId)) return null;
      if (s.checkpoint !== null && !str(s.checkpoint)) return null;
      return { panel: 'dashboard', runId: s.runId, checkpoint: s.checkpoint, metric: isHeatmapMetric(s.metric) ? s.metric : 'unchanged' };
    case 'layer':
      if (!str(s.runId) || !str(s.checkpoint) || !layerIndex(s.layer)) return null;
      if (s.tensor !== null && !str(s.tensor)) return null;
      return { panel: 'layer', runId: s.runId, checkpoint: s.checkpoint, layer: s.layer, tensor: s.tensor };
    case 'compare': {
      if (!str(s.base)) return null;
      const module = s.module === 'all' || (MODULE_KINDS as readonly unknown[]).includes(s.module) ? (s.module as ModuleKind | 'all') : 'all';
      return { panel: 'compare', base: s.base, module };
    }
    case 'steps':
      if (!str(s.runId)) return null;
      return { panel: 'steps', runId: s.runId, grid: s.grid === 'layer' ? 'layer' : 'module' };
    default:
      return null;
  }
}

/** Validates a message posted by a webview. Unknown types, extra shapes and bad fields give null. */
export function parseWebviewMessage(m: unknown): WebviewToHost | null {
  if (!isObj(m) || typeof m.type !== 'string') return null;
  switch (m.type) {
    case 'ready': {
      if (m.state === null || m.state === undefined) return { type: 'ready', state: null };
      return { type: 'ready', state: parsePanelState(m.state) };
    }
    case 'state': {
      const state = parsePanelState(m.state);
      return state ? { type: 'state', state } : null;
    }
    case 'selectCheckpoint':
      return str(m.checkpoint) ? { type: 'selectCheckpoint', checkpoint: m.checkpoint } : null;
    case 'openLayer':
      if (!str(m.checkpoint) || !layerIndex(m.layer)) return null;
      if (m.tensor !== null && m.tensor !== undefined && !str(m.tensor)) return null;
      return { type: 'openLayer', checkpoint: m.checkpoint, layer: m.layer, tensor: typeof m.tensor === 'string' ? m.tensor : null };
    case 'openDashboard':
      return str(m.runId) ? { type: 'openDashboard', runId: m.runId } : null;
    case 'analyze':
      return str(m.checkpoint) ? { type: 'analyze', checkpoint: m.checkpoint } : null;
    case 'export':
      return isExportFormat(m.format) ? { type: 'export', format: m.format } : null;
    case 'compareRuns':
      return { type: 'compareRuns' };
    case 'openSteps':
      return str(m.runId) ? { type: 'openSteps', runId: m.runId } : null;
    case 'runSteps':
      return typeof m.askLearningRate === 'boolean' ? { type: 'runSteps', askLearningRate: m.askLearningRate } : null;
    default:
      return null;
  }
}

/**
 * Validates a message from the host (the webview's side). The host is trusted code, so this checks the
 * envelope and the fields the UI indexes into; the numbers are rendered as text either way.
 */
export function parseHostMessage(m: unknown): HostToWebview | null {
  if (!isObj(m) || typeof m.type !== 'string') return null;
  switch (m.type) {
    case 'dashboard': {
      const d = m.data;
      if (!isObj(d) || !str(d.runId) || typeof d.runName !== 'string' || !Array.isArray(d.checkpoints) || !Array.isArray(d.series)) return null;
      if (d.report !== null && !(isObj(d.report) && d.report.kind === 'gatescope.checkpoint-report' && Array.isArray(d.report.tensors))) return null;
      return { type: 'dashboard', data: d as unknown as DashboardData };
    }
    case 'layer': {
      const d = m.data;
      if (
        !isObj(d) ||
        !str(d.runId) ||
        !str(d.checkpoint) ||
        !layerIndex(d.layer) ||
        !Array.isArray(d.tensors) ||
        !Array.isArray(d.layers) ||
        !Array.isArray(d.history) ||
        !Array.isArray(d.consensus)
      )
        return null;
      return { type: 'layer', data: d as unknown as LayerData };
    }
    case 'compare': {
      const d = m.data;
      if (
        !isObj(d) ||
        !str(d.base) ||
        !isObj(d.report) ||
        d.report.kind !== 'gatescope.consistency-report' ||
        !Array.isArray(d.report.jaccard) ||
        !Array.isArray(d.report.runs)
      )
        return null;
      return { type: 'compare', data: d as unknown as CompareData };
    }
    case 'steps': {
      const d = m.data;
      if (!isObj(d) || !str(d.runId) || typeof d.runName !== 'string' || typeof d.state !== 'string') return null;
      if (d.report !== null && !(isObj(d.report) && d.report.kind === 'gatescope.steps' && Array.isArray(d.report.steps))) return null;
      if (d.view !== null && !(isObj(d.view) && Array.isArray(d.view.rows) && isObj(d.view.byModule) && isObj(d.view.byLayer))) return null;
      return { type: 'steps', data: d as unknown as StepsData };
    }
    case 'busy':
      return m.text === null || typeof m.text === 'string' ? { type: 'busy', text: m.text } : null;
    case 'error':
      return typeof m.message === 'string' ? { type: 'error', message: m.message } : null;
    default:
      return null;
  }
}
