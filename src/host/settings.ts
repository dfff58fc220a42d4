/** The extension's settings (package.json `contributes.configuration`), read in one place. */
import * as vscode from 'vscode';
import { DEFAULT_SETTINGS, type AnalysisSettings } from '../report/schema';
import type { DeviceSetting } from '../compute/backend';

export interface GatescopeSettings {
  analysis: AnalysisSettings;
  device: DeviceSetting;
  passes: 'full' | 'diff';
  autoAnalyze: boolean;
  watchPatterns: string[];
  baseOverrides: Record<string, string>;
  cacheSizeLimitMB: number;
  /** Size limit of the base-subspace cache (beside the results; the engine evicts it). */
  baseCacheSizeLimitMB: number;
  /** 0: the engine's default, three quarters of the machine's memory. */
  maxMemoryMB: number;
}

export const DEFAULT_WATCH_PATTERNS = ['**/*.safetensors', '**/*.safetensors.index.json', '**/model_world_size_*_rank_*.pt'];

function positive(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : fallback;
}

export function readSettings(): GatescopeSettings {
  const c = vscode.workspace.getConfiguration('gatescope');
  const device = c.get<string>('device', 'auto');
  const passes = c.get<string>('passes', 'full');
  const alpha = c.get<number>('alpha', DEFAULT_SETTINGS.alpha);
  const overrides = c.get<Record<string, unknown>>('baseOverrides', {}) ?? {};
  const baseOverrides: Record<string, string> = {};
  for (const [k, v] of Object.entries(overrides)) if (typeof v === 'string' && v.length > 0) baseOverrides[k] = v;
  const patterns = c.get<unknown>('watchPatterns', DEFAULT_WATCH_PATTERNS);
  return {
    analysis: {
      ...DEFAULT_SETTINGS,
      k: Math.max(1, Math.round(positive(c.get('k'), DEFAULT_SETTINGS.k))),
      alpha: typeof alpha === 'number' && alpha > 0 && alpha < 1 ? alpha : DEFAULT_SETTINGS.alpha,
      eta: positive(c.get('eta'), DEFAULT_SETTINGS.eta),
    },
    device: device === 'cpu' || device === 'cuda' ? device : 'auto',
    passes: passes === 'diff' ? 'diff' : 'full',
    autoAnalyze: c.get<boolean>('autoAnalyze', true) !== false,
    watchPatterns: Array.isArray(patterns) ? patterns.filter((p): p is string => typeof p === 'string' && p.length > 0) : DEFAULT_WATCH_PATTERNS,
    baseOverrides,
    cacheSizeLimitMB: positive(c.get('cacheSizeLimitMB'), 512),
    baseCacheSizeLimitMB: positive(c.get('baseCacheSizeLimitMB'), 4096),
    maxMemoryMB: positive(c.get('engineMaxMemoryMB'), 0),
  };
}

/** Settings whose change invalidates the reports shown (they are part of the engine's cache key). */
export const ANALYSIS_KEYS = ['gatescope.k', 'gatescope.alpha', 'gatescope.eta', 'gatescope.passes'];
