/**
 * Sharded analyses: the per-tensor work of one (base, checkpoint, settings) split into N deterministic
 * shards balanced by work, each written as a partial report, and the parts merged into exactly the report
 * one process would have written. Every per-tensor number is independent of which other tensors run in
 * the same process (each tensor's random numbers come from the settings' seed and its name), so merging
 * is reassembly plus the same pooling, in the same tensor order, as the unsharded run.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import type { Checkpoint } from '../formats/checkpoint';
import { FULL_SVD_MAX_MIN_DIM, type AnalysisPlan } from './plan';
import { summarize } from '../report/summarize';
import { summarizeSpectral, type PairSpectral } from './spectral';
import { sharedBasisWidth } from '../linalg/shared-subspace';
import type { Overlap } from './masks';
import { SCHEMA_VERSION, type AnalysisSettings, type CheckpointReport, type TensorDiff } from '../report/schema';
import { VERSION } from '../version';

export const PARTIAL_KIND = 'gatescope.partial-report';
/** Shards of one analysis at most: far more than any cluster array one checkpoint needs. */
export const MAX_SHARDS = 4096;

export interface ShardSpec {
  /** 1-based, as Slurm's array task ids. */
  index: number;
  count: number;
}

export class ShardSpecError extends Error {
  override name = 'ShardSpecError';
}

/** "3/8" -> { index: 3, count: 8 }: shard 3 of 8, 1-based. */
export function parseShardSpec(spec: string): ShardSpec {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  if (!m) throw new ShardSpecError(`expected I/N (shard I of N, 1-based), got ${JSON.stringify(spec)}`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || count > MAX_SHARDS) throw new ShardSpecError(`the number of shards must be from 1 to ${MAX_SHARDS}, got ${count}`);
  if (index < 1 || index > count) throw new ShardSpecError(`the shard index must be from 1 to ${count}, got ${index}`);
  return { index, count };
}

/** One compared tensor, as the plan sees it before reading a byte of data. */
export interface PlannedTensor {
  name: string;
  /** Position in the report's tensor order (the unsharded run's). */
  position: number;
  /** Estimated work in arbitrary units (about nanoseconds on one core). */
  cost: number;
  shard: number;
}

export interface ShardPlan {
  count: number;
  tensors: PlannedTensor[];
  /** Digest of the whole assignment: the parts of one analysis carry the same. */
  digest: string;
  /** Estimated work per shard (index 0 = shard 1). */
  loads: number[];
}

/**
 * Work of one tensor: the diff pass streams both files (~0.5 ns a byte); the spectral pass costs
 * about m n l products (l the basis width, or min(m, n) for a full SVD) with a constant ~1 ns, as
 * profiled on the 1.5B-shaped benchmark (BENCHMARKS.md). The ratio matters, not the unit.
 */
export function tensorCost(shape: readonly number[], bytes: number, spectral: boolean, settings: AnalysisSettings): number {
  let cost = 1e5 + 0.5 * bytes;
  if (spectral && shape.length === 2) {
    const [m, n] = shape;
    const s = Math.min(m, n);
    const kk = Math.min(Math.max(Math.min(settings.k, s), settings.kSpectrum), s);
    const l = s <= FULL_SVD_MAX_MIN_DIM ? s : sharedBasisWidth(s, kk, settings.oversample);
    cost += 1e7 + 1.2 * m * n * l;
  }
  return cost;
}

/**
 * The deterministic split: largest work first, each tensor to the least-loaded shard (lowest index on
 * a tie). Depends only on the two headers, the pass and the settings, so every shard computes the same.
 */
export function planShards(plan: AnalysisPlan, count: number, settings: AnalysisSettings): ShardPlan {
  const { passes } = plan;
  const tensors: PlannedTensor[] = plan.pairs.map((p, position) => ({
    name: p.name,
    position,
    cost: tensorCost(p.base.info.shape, p.bytes, p.spectral, settings),
    shard: 0,
  }));
  const loads = new Array<number>(count).fill(0);
  const order = [...tensors].sort((x, y) => y.cost - x.cost || x.position - y.position);
  for (const t of order) {
    let best = 0;
    for (let s = 1; s < count; s++) if (loads[s] < loads[best]) best = s;
    t.shard = best + 1;
    loads[best] += t.cost;
  }
  const digest = createHash('sha256')
    .update(JSON.stringify({ count, passes, settings, tensors: tensors.map((t) => [t.name, t.shard]) }))
    .digest('hex')
    .slice(0, 32);
  return { count, tensors, digest, loads };
}

/** The identity of a checkpoint's content for merging: each file's name, size and header digest. */
export function contentDigest(c: Checkpoint): string {
  const files: (string | number)[][] = c.files
    .map((f) => [path.basename(f.path), f.identity.size, f.headerHash])
    .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  if (c.adapter) files.push([path.basename(c.adapter.config), c.adapter.configDigest]);
  return createHash('sha256').update(JSON.stringify(files)).digest('hex').slice(0, 32);
}

/** The raw overlap counts the run level pools (not kept in a full report), per spectral tensor. */
export interface PartialPooling {
  principal: Overlap;
  lowMagnitude: Overlap;
  principalNotLow: Overlap;
  degenerate?: string;
}

export interface PartialReport {
  schemaVersion: number;
  kind: typeof PARTIAL_KIND;
  tool: { name: 'gatescope'; version: string };
  createdAt: string;
  shard: {
    index: number;
    count: number;
    /** The assignment's digest, equal in every part of one analysis. */
    plan: string;
    /** Tensors compared in the whole analysis. */
    totalTensors: number;
    /** Report positions of this part's tensors (same order as report.tensors). */
    positions: number[];
  };
  /** Content identity of the inputs (file names, sizes, header digests). */
  inputs: { baseContent: string; checkpointContent: string };
  /** The part's own report: its tensors only; the summaries and verdict over them are not the checkpoint's. */
  report: CheckpointReport;
  /** Per spectral tensor (by name): what the run-level pooling needs. */
  pooling: Record<string, PartialPooling>;
}

export function partialReport(
  report: CheckpointReport,
  plan: ShardPlan,
  shard: ShardSpec,
  inputs: PartialReport['inputs'],
  pooling: ReadonlyMap<string, PairSpectral>,
): PartialReport {
  const position = new Map(plan.tensors.map((t) => [t.name, t.position]));
  const pool: Record<string, PartialPooling> = {};
  for (const [name, r] of pooling)
    pool[name] = {
      principal: r.principal,
      lowMagnitude: r.lowMagnitude,
      principalNotLow: r.principalNotLow,
      ...(r.degenerate ? { degenerate: r.degenerate } : {}),
    };
  return {
    schemaVersion: SCHEMA_VERSION,
    kind: PARTIAL_KIND,
    tool: { name: 'gatescope', version: VERSION },
    createdAt: new Date().toISOString(),
    shard: {
      index: shard.index,
      count: shard.count,
      plan: plan.digest,
      totalTensors: plan.tensors.length,
      positions: report.tensors.map((t) => position.get(t.name)!),
    },
    inputs,
    report,
    pooling: pool,
  };
}

/** A set of parts that cannot be merged: what is missing, doubled or mixed, naming the files. */
export class MergeError extends Error {
  override name = 'MergeError';
}

export interface LoadedPart {
  file: string;
  part: PartialReport;
}

/** Checks the shape of a parsed part enough that merging cannot misread it; names the file otherwise. */
export function asPartialReport(file: string, v: unknown): PartialReport {
  const bad = (why: string): never => {
    throw new MergeError(`${file}: not a Gatescope partial report (${why})`);
  };
  if (!v || typeof v !== 'object') bad('not a JSON object');
  const o = v as Record<string, unknown>;
  if (o.kind !== PARTIAL_KIND)
    bad(o.kind === 'gatescope.checkpoint-report' ? 'a full checkpoint report, not a shard of one' : `kind is ${JSON.stringify(o.kind)}`);
  if (o.schemaVersion !== SCHEMA_VERSION) bad(`schemaVersion ${JSON.stringify(o.schemaVersion)}, this Gatescope reads ${SCHEMA_VERSION}`);
  const s = o.shard as Record<string, unknown> | undefined;
  if (
    !s ||
    !Number.isInteger(s.index) ||
    !Number.isInteger(s.count) ||
    typeof s.plan !== 'string' ||
    !Number.isInteger(s.totalTensors) ||
    !Array.isArray(s.positions)
  )
    bad('no valid "shard" block');
  const r = o.report as Record<string, unknown> | undefined;
  if (!r || r.kind !== 'gatescope.checkpoint-report' || !Array.isArray(r.tensors) || !r.settings || typeof r.passes !== 'string')
    bad('no valid "report" block');
  if ((r!.tensors as unknown[]).length !== (s!.positions as unknown[]).length) bad('its tensors and positions differ in number');
  const inputs = o.inputs as Record<string, unknown> | undefined;
  if (!inputs || typeof inputs.baseContent !== 'string' || typeof inputs.checkpointContent !== 'string') bad('no valid "inputs" block');
  if (!o.pooling || typeof o.pooling !== 'object') bad('no "pooling" block');
  return v as PartialReport;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The full report from every part of one analysis. Refuses a part of another input, settings, pass,
 * plan or version, a shard given twice, and a missing shard, naming the files and the shards.
 */
export function mergeParts(parts: readonly LoadedPart[]): CheckpointReport {
  if (parts.length === 0) throw new MergeError('no parts to merge');
  const first = parts[0];
  const f = first.part;
  const mixed = (what: string, a: LoadedPart, b: LoadedPart): never => {
    throw new MergeError(`${b.file} is a part of another analysis than ${a.file}: ${what} differ`);
  };
  for (const p of parts.slice(1)) {
    const x = p.part;
    if (x.tool.version !== f.tool.version) mixed(`Gatescope versions (${f.tool.version} vs ${x.tool.version})`, first, p);
    if (x.inputs.baseContent !== f.inputs.baseContent) mixed(`the base checkpoints (${f.report.base} vs ${x.report.base})`, first, p);
    if (x.inputs.checkpointContent !== f.inputs.checkpointContent) mixed(`the checkpoints (${f.report.checkpoint} vs ${x.report.checkpoint})`, first, p);
    if (x.report.passes !== f.report.passes) mixed(`the passes (${f.report.passes} vs ${x.report.passes})`, first, p);
    if (!same(x.report.settings, f.report.settings)) mixed('the settings', first, p);
    if (x.shard.count !== f.shard.count) mixed(`the number of shards (${f.shard.count} vs ${x.shard.count})`, first, p);
    if (x.shard.plan !== f.shard.plan || x.shard.totalTensors !== f.shard.totalTensors) mixed("the shard plans (the checkpoints' tensors)", first, p);
  }
  const byIndex = new Map<number, LoadedPart>();
  for (const p of parts) {
    const other = byIndex.get(p.part.shard.index);
    if (other) throw new MergeError(`shard ${p.part.shard.index}/${f.shard.count} is given twice: ${other.file} and ${p.file}`);
    byIndex.set(p.part.shard.index, p);
  }
  const missing: number[] = [];
  for (let i = 1; i <= f.shard.count; i++) if (!byIndex.has(i)) missing.push(i);
  if (missing.length) {
    const shown = missing.length > 12 ? `${missing.slice(0, 12).join(', ')} and ${missing.length - 12} more` : missing.join(', ');
    throw new MergeError(`incomplete: shard${missing.length > 1 ? 's' : ''} ${shown} of ${f.shard.count} missing (have ${parts.length})`);
  }
  const slots: (TensorDiff | undefined)[] = new Array(f.shard.totalTensors);
  const pooling = new Map<string, PartialPooling>();
  for (const { file, part } of parts) {
    part.report.tensors.forEach((t, i) => {
      const at = part.shard.positions[i];
      if (!Number.isInteger(at) || at < 0 || at >= slots.length) throw new MergeError(`${file}: tensor ${t.name} has no place in the report (position ${at})`);
      if (slots[at]) throw new MergeError(`${file}: tensor ${t.name} is also in another part`);
      slots[at] = t;
    });
    for (const [name, r] of Object.entries(part.pooling)) pooling.set(name, r);
  }
  const holes = slots.flatMap((t, i) => (t ? [] : [i]));
  if (holes.length) throw new MergeError(`incomplete: ${holes.length} of ${slots.length} tensors are in no part`);
  const tensors = slots as TensorDiff[];
  const r = f.report;
  const merged: CheckpointReport = {
    schemaVersion: SCHEMA_VERSION,
    kind: 'gatescope.checkpoint-report',
    tool: { name: 'gatescope', version: f.tool.version },
    createdAt: new Date().toISOString(),
    base: r.base,
    checkpoint: r.checkpoint,
    step: r.step,
    ...(r.label !== undefined ? { label: r.label } : {}),
    ...(r.notes ? { notes: r.notes } : {}),
    settings: r.settings,
    passes: r.passes,
    summary: summarize(tensors),
    tensors,
    mismatches: r.mismatches,
    ...(r.pairing ? { pairing: r.pairing } : {}),
    ...(r.adapter ? { adapter: r.adapter } : {}),
    durationMs: 0,
  };
  const ordered = [...byIndex.entries()].sort((a, b) => a[0] - b[0]).map(([, p]) => p.part.report);
  if (r.passes === 'full') {
    const devices = [...new Set(ordered.map((p) => p.device).filter((d): d is string => !!d))];
    if (devices.length) merged.device = devices.join(', ');
    const results: { t: TensorDiff; r: PairSpectral }[] = [];
    for (const t of tensors) {
      if (!t.spectral || !t.verdict) continue;
      const pool = pooling.get(t.name);
      if (!pool) throw new MergeError(`the part holding ${t.name} has no pooling counts for it`);
      results.push({ t, r: { spectral: t.spectral, verdict: t.verdict, ...pool } });
    }
    const s = summarizeSpectral(results);
    if (s) Object.assign(merged, s);
    const bases = ordered.filter((p) => p.baseBases).map((p) => p.baseBases!);
    if (bases.length)
      merged.baseBases = {
        fromCache: bases.reduce((a, b) => a + b.fromCache, 0),
        computed: bases.reduce((a, b) => a + b.computed, 0),
        cached: bases.some((b) => b.cached),
      };
  }
  const diffMs = ordered.reduce((a, p) => a + (p.timings?.diffMs ?? 0), 0);
  const spectralMs = ordered.reduce((a, p) => a + (p.timings?.spectralMs ?? 0), 0);
  merged.timings = r.passes === 'full' ? { diffMs, spectralMs } : { diffMs };
  // The shards ran side by side: the report took as long as its longest part.
  merged.durationMs = Math.max(...ordered.map((p) => p.durationMs));
  merged.shards = { count: f.shard.count, durationsMs: ordered.map((p) => p.durationMs) };
  return merged;
}
