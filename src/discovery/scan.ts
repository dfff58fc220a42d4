/**
 * Finds checkpoints under a folder, groups them into runs, orders their steps, tells complete from
 * still-being-written, and finds each run's base model from what the run's own files say.
 *
 * Layouts: HF model folders (config.json + safetensors, sharded or not), HF Trainer / TRL `checkpoint-N`,
 * verl `global_step_N/actor/huggingface` (raw FSDP shards listed as needing a merge), OpenRLHF
 * `global_stepN_hf` exports and DeepSpeed folders (needing conversion), and loose `*.safetensors` files.
 * Only headers are read; nothing is written.
 */
import { promises as fsp, type Dirent } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CheckpointFormatError } from '../formats/errors';
import { Checkpoint, INDEX_FILE, SINGLE_FILE, listShardFiles, readSmallRegularFile } from '../formats/checkpoint';
import { ADAPTER_WEIGHTS, adapterWeightsIn, readAdapterConfig } from '../formats/adapter-config';
import { readConfigKeys, syntaxOf } from './config-keys';
import { STEP_FILE_RE, runRootFor, type Layout } from './layout';

export { stepOf, type Layout } from './layout';

export type CheckpointState = 'complete' | 'incomplete' | 'needs-merging' | 'error';

export interface DiscoveredCheckpoint {
  path: string;
  step: number | null;
  layout: Layout;
  state: CheckpointState;
  /** Why it is incomplete / broken, or what it needs. */
  reason?: string;
  /** The command that turns raw trainer shards into safetensors. */
  mergeCommand?: string;
  bytes: number;
  mtimeMs: number;
  /** A PEFT LoRA adapter (adapter_model.safetensors + adapter_config.json): its rank, alpha and principal init. */
  adapter?: { r: number; loraAlpha: number; principalInit: string | null };
}

export interface BaseModelInfo {
  /** What the run's files name as the base (a path or a hub id), and where that was read. */
  ref: string | null;
  source: string | null;
  /** A local checkpoint path when the reference could be resolved. */
  resolved: string | null;
  problem?: string;
}

export interface DiscoveredRun {
  /** Stable id: the run's root folder. */
  id: string;
  root: string;
  name: string;
  checkpoints: DiscoveredCheckpoint[];
  base: BaseModelInfo;
  /** Roots of the runs that use this folder's checkpoint as their base (a base model, not a training run). */
  baseOf: string[];
}

export interface ScanOptions {
  maxDepth?: number;
  /** run root (absolute) or run name -> base checkpoint path: wins over what the files say. */
  baseOverrides?: Record<string, string>;
  /** Hugging Face hub cache folders to resolve hub ids; defaults from HF_HUB_CACHE / HF_HOME / ~/.cache. */
  hfCacheDirs?: string[];
  /** Stop after this many checkpoints (a workspace with thousands stays responsive). */
  maxCheckpoints?: number;
}

export interface ScanResult {
  root: string;
  runs: DiscoveredRun[];
  /** Folders skipped because they could not be read. */
  warnings: string[];
}

const SKIP_DIRS = new Set(['node_modules', '.git', '__pycache__', '.venv', 'venv', 'wandb', '.cache', '.gatescope-cache', 'dist', 'out']);

export function defaultHfCacheDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs: string[] = [];
  if (env.HF_HUB_CACHE) dirs.push(env.HF_HUB_CACHE);
  if (env.HUGGINGFACE_HUB_CACHE) dirs.push(env.HUGGINGFACE_HUB_CACHE);
  if (env.HF_HOME) dirs.push(path.join(env.HF_HOME, 'hub'));
  const xdg = env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  dirs.push(path.join(xdg, 'huggingface', 'hub'));
  return [...new Set(dirs)];
}

/**
 * Completeness from headers alone: a file shorter than its header promises, or a missing shard, is
 * incomplete; an index that names tensors its shards do not hold is an error. Opening the checkpoint
 * the way the analysis does validates the index against every shard header.
 */
export async function checkCompleteness(
  p: string,
): Promise<{ state: CheckpointState; reason?: string; bytes: number; mtimeMs: number; adapter?: DiscoveredCheckpoint['adapter'] }> {
  let bytes = 0;
  let mtimeMs = 0;
  try {
    // An adapter's weights are only half of it: its config must read too (rank, alpha, a supported kind).
    const config = (await adapterWeightsIn(p)) ? await readAdapterConfig(p) : undefined;
    const ckpt = await Checkpoint.open(p);
    for (const f of ckpt.files) {
      bytes += f.identity.size;
      mtimeMs = Math.max(mtimeMs, f.identity.mtimeMs);
    }
    await ckpt.close();
    return {
      state: 'complete',
      bytes,
      mtimeMs,
      ...(ckpt.notes.length ? { reason: ckpt.notes.join('; ') } : {}),
      ...(config ? { adapter: { r: config.r, loraAlpha: config.loraAlpha, principalInit: config.principalInit } } : {}),
    };
  } catch (e) {
    if (e instanceof CheckpointFormatError) {
      return { state: e.looksIncomplete ? 'incomplete' : 'error', reason: e.message, bytes, mtimeMs };
    }
    return { state: 'error', reason: (e as Error).message, bytes, mtimeMs };
  }
}

/** A path as one shell word: merge commands are copied into a terminal, and paths have spaces. */
export function shellQuote(p: string): string {
  return /^[\w@%+=:,./-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`;
}

interface Found {
  path: string;
  layout: Layout;
  step: number | null;
  runRoot: string;
  mergeCommand?: string;
  reason?: string;
}

async function walk(root: string, maxDepth: number, found: Found[], warnings: string[], limit: number): Promise<void> {
  const visit = async (dir: string, depth: number): Promise<void> => {
    if (found.length >= limit) return;
    let entries: Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (e) {
      warnings.push(`${dir}: ${(e as Error).message}`);
      return;
    }
    const names = new Set(entries.map((e) => e.name));
    const safetensors = entries.filter((e) => e.isFile() && e.name.endsWith('.safetensors')).map((e) => e.name);
    // A PEFT adapter folder is a checkpoint too (analysed merged into its base); without its config it is reported broken.
    const isModelDir = names.has(SINGLE_FILE) || names.has(INDEX_FILE) || names.has(ADAPTER_WEIGHTS) || (safetensors.length > 0 && names.has('config.json'));
    if (isModelDir) {
      const r = runRootFor(dir);
      found.push({ path: dir, layout: r.layout, step: r.step, runRoot: r.root });
    } else if (safetensors.length > 0) {
      for (const f of safetensors.sort()) {
        const m = STEP_FILE_RE.exec(f);
        found.push({ path: path.join(dir, f), layout: 'loose-file', step: m ? Number(m[1]) : null, runRoot: dir });
      }
    }
    // Raw trainer state that needs converting before it can be read (never unpickled here).
    const fsdp = entries.some((e) => /^model_world_size_\d+_rank_\d+\.pt$/.test(e.name));
    if (fsdp && !isModelDir && !names.has('huggingface')) {
      const r = runRootFor(dir);
      found.push({
        path: dir,
        layout: 'verl-fsdp',
        step: r.step,
        runRoot: r.root,
        reason: 'raw FSDP shards (.pt): merge them to safetensors first',
        mergeCommand: `python -m verl.model_merger merge --backend fsdp --local_dir ${shellQuote(dir)} --target_dir ${shellQuote(path.join(dir, 'huggingface'))}`,
      });
    }
    const deepspeed = entries.some((e) => /^(?:mp_rank_\d+_model_states|zero_pp_rank_\d+.*_optim_states)\.pt$/.test(e.name));
    if (deepspeed && !isModelDir) {
      const r = runRootFor(dir);
      found.push({
        path: dir,
        layout: 'deepspeed',
        step: r.step,
        runRoot: r.root,
        reason: 'DeepSpeed checkpoint (.pt): export it as a Hugging Face model first',
        mergeCommand: `python ${shellQuote(path.join(path.dirname(dir), 'zero_to_fp32.py'))} ${shellQuote(path.dirname(dir))} ${shellQuote(`${dir}_hf`)} --safe_serialization`,
      });
    }
    if (depth >= maxDepth) return;
    for (const e of entries) {
      // Links are not followed: a scan never leaves the folder it was given.
      if (!e.isDirectory() || e.isSymbolicLink()) continue;
      if (SKIP_DIRS.has(e.name) || (e.name.startsWith('.') && e.name !== '.')) continue;
      await visit(path.join(dir, e.name), depth + 1);
    }
  };
  await visit(root, 0);
}

export async function scanFolder(rootIn: string, opts: ScanOptions = {}): Promise<ScanResult> {
  const root = path.resolve(rootIn);
  const found: Found[] = [];
  const warnings: string[] = [];
  await walk(root, opts.maxDepth ?? 8, found, warnings, opts.maxCheckpoints ?? 5000);
  const byRoot = new Map<string, Found[]>();
  for (const f of found) {
    const list = byRoot.get(f.runRoot) ?? [];
    list.push(f);
    byRoot.set(f.runRoot, list);
  }
  const runs: DiscoveredRun[] = [];
  for (const [runRoot, list] of byRoot) {
    const checkpoints: DiscoveredCheckpoint[] = [];
    for (const f of list) {
      if (f.layout === 'verl-fsdp' || f.layout === 'deepspeed') {
        const st = await fsp.stat(f.path).catch(() => undefined);
        checkpoints.push({
          path: f.path,
          step: f.step,
          layout: f.layout,
          state: 'needs-merging',
          reason: f.reason,
          mergeCommand: f.mergeCommand,
          bytes: 0,
          mtimeMs: st?.mtimeMs ?? 0,
        });
        continue;
      }
      const c = await checkCompleteness(f.path);
      checkpoints.push({
        path: f.path,
        step: f.step,
        layout: f.layout,
        state: c.state,
        reason: c.reason,
        bytes: c.bytes,
        mtimeMs: c.mtimeMs,
        ...(c.adapter ? { adapter: c.adapter } : {}),
      });
    }
    // A merged huggingface folder supersedes the raw shards of the same step.
    const merged = new Set(checkpoints.filter((c) => c.layout === 'verl').map((c) => c.step));
    const kept = checkpoints.filter((c) => !(c.layout === 'verl-fsdp' && merged.has(c.step)));
    kept.sort((a, b) => (a.step ?? -1) - (b.step ?? -1) || a.path.localeCompare(b.path));
    const rel = path.relative(root, runRoot);
    const run: DiscoveredRun = {
      id: runRoot,
      root: runRoot,
      name: rel === '' ? path.basename(runRoot) : rel.split(path.sep).join('/'),
      checkpoints: kept,
      base: { ref: null, source: null, resolved: null },
      baseOf: [],
    };
    run.base = await findBaseModel(run, root, opts);
    runs.push(run);
  }
  runs.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
  for (const run of runs) {
    if (!run.base.resolved) continue;
    const target = path.resolve(run.base.resolved);
    const owner = runs.find((r) => r.checkpoints.some((c) => path.resolve(c.path) === target));
    owner?.baseOf.push(run.root);
  }
  return { root, runs, warnings };
}

/** Where a run's files name its base model, in order of trust. */
async function baseReferences(run: DiscoveredRun): Promise<{ ref: string; source: string }[]> {
  const refs: { ref: string; source: string }[] = [];
  const first = run.checkpoints.find((c) => c.state === 'complete');
  const dirs = [
    ...new Set([first ? (first.layout === 'loose-file' ? path.dirname(first.path) : first.path) : null, run.root].filter((d): d is string => d !== null)),
  ];
  for (const dir of dirs) {
    for (const [file, key] of [
      ['adapter_config.json', 'base_model_name_or_path'],
      ['config.json', '_name_or_path'],
    ] as const) {
      const p = path.join(dir, file);
      const json = await readJsonSmall(p);
      const v = json?.[key];
      if (typeof v === 'string' && v.length > 0) refs.push({ ref: v, source: `${p} (${key})` });
    }
  }
  // Training configs beside the run: verl YAML / Hydra overrides, TRL / HF JSON.
  const entries = await fsp.readdir(run.root).catch(() => [] as string[]);
  for (const name of entries.sort()) {
    const syntax = syntaxOf(name);
    if (!syntax || syntax === 'python') continue;
    const p = path.join(run.root, name);
    const text = await readSmallRegularFile(p, 2_000_000).then(
      (b) => b.toString('utf8'),
      () => '',
    );
    for (const k of readConfigKeys(text, syntax)) {
      if (
        (k.path === 'actor_rollout_ref.model.path' || k.path === 'model_name_or_path' || k.path.endsWith('.model_name_or_path') || k.path === 'pretrain') &&
        k.value
      ) {
        refs.push({ ref: k.value, source: `${p}:${k.line + 1} (${k.path})` });
      }
    }
  }
  return refs;
}

async function readJsonSmall(p: string): Promise<Record<string, unknown> | undefined> {
  try {
    // Regular files only (a FIFO named config.json would block a plain read forever).
    const v = JSON.parse((await readSmallRegularFile(p, 10_000_000)).toString('utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

async function hasWeights(p: string): Promise<boolean> {
  try {
    const st = await fsp.stat(p);
    if (st.isFile()) return p.endsWith('.safetensors');
    await listShardFiles(p);
    return true;
  } catch {
    return false;
  }
}

/** Resolves a hub id like `Qwen/Qwen2.5-Math-1.5B` in the local Hugging Face cache (refs/main, else the newest snapshot). */
export async function resolveHubId(id: string, cacheDirs: string[]): Promise<string | null> {
  if (!/^[\w.-]+(?:\/[\w.-]+)?$/.test(id)) return null;
  const folder = `models--${id.split('/').join('--')}`;
  for (const cache of cacheDirs) {
    const repo = path.join(cache, folder);
    const snapshots = path.join(repo, 'snapshots');
    const rev = await fsp.readFile(path.join(repo, 'refs', 'main'), 'utf8').then(
      (t) => t.trim(),
      () => null,
    );
    const candidates: string[] = [];
    if (rev) candidates.push(path.join(snapshots, rev));
    const all = await fsp.readdir(snapshots).catch(() => [] as string[]);
    const withTimes = await Promise.all(all.map(async (s) => ({ s, t: (await fsp.stat(path.join(snapshots, s)).catch(() => undefined))?.mtimeMs ?? 0 })));
    withTimes.sort((a, b) => b.t - a.t);
    candidates.push(...withTimes.map((x) => path.join(snapshots, x.s)));
    for (const c of candidates) if (await hasWeights(c)) return c;
  }
  return null;
}

export async function findBaseModel(run: DiscoveredRun, scanRoot: string, opts: ScanOptions): Promise<BaseModelInfo> {
  const override = opts.baseOverrides?.[run.root] ?? opts.baseOverrides?.[run.name];
  if (override) {
    const p = path.resolve(scanRoot, override);
    return (await hasWeights(p))
      ? { ref: override, source: 'setting', resolved: p }
      : { ref: override, source: 'setting', resolved: null, problem: `the base set for this run has no readable weights: ${p}` };
  }
  const refs = await baseReferences(run);
  const cacheDirs = opts.hfCacheDirs ?? defaultHfCacheDirs();
  const own = new Set(run.checkpoints.map((c) => path.resolve(c.path)));
  let firstProblem: BaseModelInfo | undefined;
  for (const { ref, source } of refs) {
    const sourceDir = path.dirname(source.replace(/(:\d+)? \(.*\)$/, ''));
    const candidates = path.isAbsolute(ref) ? [ref] : [path.resolve(sourceDir, ref), path.resolve(run.root, ref), path.resolve(scanRoot, ref)];
    for (const c of candidates) {
      if (own.has(path.resolve(c))) continue;
      if (await hasWeights(c)) return { ref, source, resolved: c };
    }
    const hub = await resolveHubId(ref, cacheDirs);
    if (hub) return { ref, source, resolved: hub };
    firstProblem ??= { ref, source, resolved: null, problem: `"${ref}" is neither a local checkpoint nor in the Hugging Face cache (${cacheDirs.join(', ')})` };
  }
  return (
    firstProblem ?? {
      ref: null,
      source: null,
      resolved: null,
      problem: 'no file of this run names its base model; set one with "Set Base Model for Run" or --base',
    }
  );
}
