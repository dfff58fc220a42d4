/**
 * Step to step: every consecutive pair of a run's complete checkpoints (its base first, when known),
 * per tensor, per module and for the model: the M1 changed share, the relative update norm, the median
 * update in ULPs, the bytes each sparse encoding of the step would move, and Gate III's prediction of
 * the unchanged share from the learning rate.
 *
 * Each checkpoint is read once: the pass walks tensor by tensor and, within a tensor, block by block
 * through the checkpoints in order, comparing each block with the same block of the previous checkpoint
 * (N checkpoints cost N reads, not 2N). Memory: three read blocks and one accumulator per step.
 */
import * as path from 'node:path';
import { existsSync, promises as fsp } from 'node:fs';
import { Checkpoint, readSmallRegularFile, type TensorRef } from '../formats/checkpoint';
import { bytesPerElement, decodeToFloat64 } from '../formats/dtype';
import { CheckpointFormatError } from '../formats/errors';
import { scanFolder, type DiscoveredRun } from '../discovery/scan';
import type { Layout } from '../discovery/layout';
import { readConfigKeys, syntaxOf } from '../discovery/config-keys';
import { DEFAULT_SETTINGS, MODULE_KINDS, type ModuleKind, type TensorMismatch } from '../report/schema';
import {
  STEPS_SCHEMA_VERSION,
  type LearningRate,
  type StepEntry,
  type StepGroup,
  type StepPayload,
  type StepPrediction,
  type StepsReport,
  type StepTensor,
} from '../report/steps-schema';
import { TensorPool } from '../report/summarize';
import { VERSION } from '../version';
import { Bf16Kernel } from './bf16-kernel';
import {
  accumulateBf16,
  accumulateFloat,
  assertPairing,
  finishTensor,
  naturalCompare,
  newAccumulator,
  pairTensors,
  type TensorAccumulator,
  type TensorPairingResult,
} from './diff';
import { unchangedShareBelowBound } from './bf16-visibility';
import { defaultThreads, runThreads, shareOut, type ThreadEnd } from './diff-parallel';
import { loadZstd, ZSTD_LEVEL } from './zstd';

/** A run that cannot be walked step by step (one checkpoint, shapes that differ): exit 1, named. */
export class StepsError extends Error {
  override name = 'StepsError';
}

/** Entries per read block and per zstd frame of the xorZstd payload. */
export const FRAME_ENTRIES = 1 << 20;

export interface StepsRunOptions {
  /** The run's base: undefined = the one its files name, null = start at the first checkpoint, a path = that one. */
  base?: string | null;
  /** Overrides the learning rate read from the run's files; `learningRateSource` says where it came from. */
  learningRate?: number;
  learningRateSource?: string;
  eta?: number;
  onProgress?: (p: { phase: string; tensor: string; index: number; total: number; fraction: number }) => void;
  signal?: AbortSignal;
  /** Test hook: every xorZstd frame as written (tensor name on the `from` side, step index, frame). */
  onFrame?: (f: { step: number; tensor: string; start: number; frame: Uint8Array }) => void;
  /** Worker threads (default: one per core, at most 4); 1 walks in this thread. */
  threads?: number;
  threadScript?: string;
}

interface ChainLink {
  path: string;
  step: number | null;
  layout: Layout | 'base';
}

export interface StepsPlan {
  root: string;
  name: string;
  base: string | null;
  chain: ChainLink[];
  skipped: StepsReport['skipped'];
  run: DiscoveredRun;
}

/** Finds the run at `root`, its complete checkpoints in step order, and its base. */
export async function planSteps(rootIn: string, opts: Pick<StepsRunOptions, 'base'> = {}): Promise<StepsPlan> {
  const root = path.resolve(rootIn);
  const st = await fsp.stat(root).catch(() => undefined);
  if (!st) throw new StepsError(`no such run folder: ${rootIn}`);
  if (!st.isDirectory()) throw new StepsError(`${rootIn} is a file: give the run's folder, which holds its checkpoints`);
  const scan = await scanFolder(root, { maxDepth: 6 });
  const runs = scan.runs.filter((r) => r.checkpoints.length > 0);
  let run = runs.find((r) => path.resolve(r.root) === root);
  if (!run) {
    if (runs.length === 0) throw new StepsError(`no checkpoint under ${rootIn}`);
    const inside = runs.find((r) => r.checkpoints.some((c) => path.resolve(c.path) === root));
    if (inside) throw new StepsError(`${rootIn} is a checkpoint of the run ${inside.root}: give the run's folder`);
    if (runs.length > 1) throw new StepsError(`${rootIn} holds ${runs.length} runs (${runs.map((r) => r.name).join(', ')}): give one run's folder`);
    run = runs[0];
  }
  const adapter = run.checkpoints.find((c) => c.adapter);
  if (adapter)
    throw new StepsError(
      `${run.root} is a LoRA adapter run (${adapter.path}): step to step compares the weights each checkpoint stores, and an adapter stores ` +
        'factors, not weights, so its steps are not read yet. Analyse each checkpoint against the base (gatescope analyze BASE CHECKPOINT) or compare the runs (gatescope compare)',
    );
  const skipped = run.checkpoints
    .filter((c) => c.state !== 'complete')
    .map((c) => ({ path: c.path, step: c.step, state: c.state, ...(c.reason ? { reason: c.reason } : {}) }));
  const chain: ChainLink[] = run.checkpoints.filter((c) => c.state === 'complete').map((c) => ({ path: c.path, step: c.step, layout: c.layout }));
  let base: string | null;
  if (opts.base === undefined) base = run.base.resolved;
  else base = opts.base === null ? null : path.resolve(opts.base);
  if (base !== null) chain.unshift({ path: base, step: 0, layout: 'base' });
  return { root: run.root, name: run.name, base, chain, skipped, run };
}

// ---------------------------------------------------------------------------------------------
// Where the learning rate and the optimizer steps between two checkpoints are read.

async function readJson(p: string): Promise<Record<string, unknown> | undefined> {
  try {
    const v = JSON.parse((await readSmallRegularFile(p, 50_000_000)).toString('utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function positiveNumber(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?$/i.test(v.trim()) ? Number(v) : NaN;
  return Number.isFinite(n) && n > 0 ? n : null;
}

const LR_PATHS = ['actor_rollout_ref.actor.optim.lr', 'learning_rate', 'actor_learning_rate'];

interface RunConfigKey {
  file: string;
  line: number;
  path: string;
  value: string;
}

/** The keys of the training configs at the run's root (YAML, JSON, shell, Python), read without running them. */
async function runConfigKeys(root: string): Promise<RunConfigKey[]> {
  const out: RunConfigKey[] = [];
  const names = (await fsp.readdir(root).catch(() => [] as string[])).sort();
  for (const name of names) {
    const syntax = syntaxOf(name);
    if (!syntax) continue;
    const file = path.join(root, name);
    const text = await readSmallRegularFile(file, 2_000_000).then(
      (b) => b.toString('utf8'),
      () => '',
    );
    for (const k of readConfigKeys(text, syntax)) out.push({ file, line: k.line, path: k.path, value: k.value });
    if (syntax === 'shell') {
      // OpenRLHF / TRL scripts pass `--actor_learning_rate 5e-7` as flags.
      text.split(/\r?\n/).forEach((l, line) => {
        for (const m of l.matchAll(/--(actor_learning_rate|learning_rate)[ =]+([^\s\\]+)/g)) out.push({ file, line, path: m[1], value: m[2] });
      });
    }
  }
  return out;
}

function checkpointDir(c: ChainLink): string {
  return c.path.endsWith('.safetensors') ? path.dirname(c.path) : c.path;
}

/** The run's learning rate over (fromStep, toStep]: the trainer's log first, then its arguments, then the configs. */
export async function learningRateFor(run: DiscoveredRun, to: ChainLink, fromStep: number | null, keys: RunConfigKey[]): Promise<LearningRate | null> {
  const dir = checkpointDir(to);
  const state = await readJson(path.join(dir, 'trainer_state.json'));
  const log = Array.isArray(state?.log_history) ? (state.log_history as unknown[]) : [];
  if (to.step !== null && fromStep !== null) {
    let max = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (const e of log) {
      if (!e || typeof e !== 'object') continue;
      const { step, learning_rate: lr } = e as { step?: unknown; learning_rate?: unknown };
      const v = positiveNumber(lr);
      if (typeof step !== 'number' || v === null || step <= fromStep || step > to.step) continue;
      max = Math.max(max, v);
      lo = Math.min(lo, step);
      hi = Math.max(hi, step);
    }
    // The largest rate logged in the window: the bound must hold for every optimizer step of it.
    if (max > 0) return { value: max, source: `${path.join(dir, 'trainer_state.json')} (log_history, largest learning_rate of steps ${lo}-${hi})` };
  }
  for (const d of [dir, run.root]) {
    const args = await readJson(path.join(d, 'training_args.json'));
    const v = positiveNumber(args?.learning_rate);
    if (v !== null) return { value: v, source: `${path.join(d, 'training_args.json')} (learning_rate)` };
  }
  for (const want of LR_PATHS) {
    const k = keys.find((x) => x.path === want || (want !== 'actor_rollout_ref.actor.optim.lr' && x.path.endsWith(`.${want}`)));
    const v = k ? positiveNumber(k.value) : null;
    if (k && v !== null) return { value: v, source: `${k.file}:${k.line + 1} (${k.path})` };
  }
  return null;
}

/** Optimizer steps per unit of the run's checkpoint numbers, where the layout says what they count. */
export function optimizerStepsPerCheckpointStep(layout: Layout | 'base', keys: RunConfigKey[]): { factor: number; source: string } | null {
  if (layout === 'hf-trainer') return { factor: 1, source: 'HF Trainer / TRL checkpoint numbers count optimizer steps' };
  if (layout === 'verl') {
    // verl numbers its saves by trainer iteration; each iteration steps the optimizer once per PPO epoch and mini-batch.
    const get = (p: string): RunConfigKey | undefined => keys.find((k) => k.path === p);
    const epochs = get('actor_rollout_ref.actor.ppo_epochs');
    const batch = get('data.train_batch_size');
    const mini = get('actor_rollout_ref.actor.ppo_mini_batch_size');
    const e = positiveNumber(epochs?.value);
    const b = positiveNumber(batch?.value);
    const m = positiveNumber(mini?.value);
    if (e !== null && b !== null && m !== null && Number.isInteger(e) && Number.isInteger(b / m)) {
      return {
        factor: e * (b / m),
        source: `verl iterations x ppo_epochs (${e}) x train_batch_size / ppo_mini_batch_size (${b}/${m}), ${path.basename(epochs!.file)}`,
      };
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// The pass.

/** What one step collects over the model, merged from the tensors' results in chain order. */
class StepTotals {
  readonly all = new TensorPool();
  readonly modules = new Map<ModuleKind, TensorPool>();
  /** M1-changed entries by |dw| / ulp, keyed like the diff pass's per-tensor histogram (top 16 bits of the float32 ratio). */
  readonly ulps = new Float64Array(65536);
  /** The `from` side's entries of bf16 tensors, by biased exponent; and M1 counts over the same tensors. */
  readonly exponents = new Float64Array(256);
  bf16Finite = 0;
  bf16Changed = 0;
  bitsChanged = 0;
  readonly payload: StepPayload = { dense: 0, bitmap: 0, coo: 0, xorZstd: 0 };
  readonly tensors: StepTensor[] = [];

  add(r: TensorStepResult): void {
    const t = r.tensor;
    this.tensors.push(t);
    this.all.add(t);
    let g = this.modules.get(t.module);
    if (!g) this.modules.set(t.module, (g = new TensorPool()));
    g.add(t);
    for (const [b, c] of r.ulps) this.ulps[b] += c;
    if (r.exponents) {
      for (const [e, c] of r.exponents) this.exponents[e] += c;
      this.bf16Finite += t.numel - t.nonFinite;
      this.bf16Changed += t.changed;
    }
    this.bitsChanged += t.bitsChanged;
    this.payload.dense += t.payload.dense;
    this.payload.bitmap += t.payload.bitmap;
    this.payload.coo += t.payload.coo;
    this.payload.xorZstd = this.payload.xorZstd === null || t.payload.xorZstd === null ? null : this.payload.xorZstd + t.payload.xorZstd;
  }
}

const ratioF32 = new Float32Array(1);
const ratioU32 = new Uint32Array(ratioF32.buffer);

function medianOfUlpHistogram(counts: Float64Array): number | null {
  let total = 0;
  for (let b = 0; b < counts.length; b++) total += counts[b];
  if (total === 0) return null;
  const target = Math.floor((total - 1) / 2);
  let acc = 0;
  for (let b = 0; b < counts.length; b++) {
    acc += counts[b];
    if (acc > target) {
      ratioU32[0] = b << 16;
      return ratioF32[0];
    }
  }
  return null;
}

/** One tensor through the checkpoints that hold it: refs[j] in checkpoint firstStep + j. */
export interface Chain {
  firstStep: number;
  refs: TensorRef[];
  /** The report name of each step (the `from` side's pairing name). */
  names: string[];
}

/** Follows each tensor from the first pair it appears in through the later pairs that hold it. */
function chainsOf(pairings: TensorPairingResult[]): Chain[] {
  const byFrom = pairings.map((p) => new Map(p.pairs.map((x) => [x[1].info.name, x] as const)));
  const used = pairings.map(() => new Set<string>());
  const chains: Chain[] = [];
  for (let s = 0; s < pairings.length; s++) {
    for (const [name, a, b] of pairings[s].pairs) {
      if (used[s].has(a.info.name)) continue;
      const chain: Chain = { firstStep: s, refs: [a, b], names: [name] };
      used[s].add(a.info.name);
      let next = b;
      for (let t = s + 1; t < pairings.length; t++) {
        const link = byFrom[t].get(next.info.name);
        if (!link || used[t].has(next.info.name)) break;
        used[t].add(next.info.name);
        chain.refs.push(link[2]);
        chain.names.push(link[0]);
        next = link[2];
      }
      chains.push(chain);
    }
  }
  chains.sort((x, y) => naturalCompare(x.names[0], y.names[0]) || x.firstStep - y.firstStep);
  return chains;
}

/**
 * The pairings of consecutive checkpoints and the tensors' chains through them. Deterministic: every
 * thread that opens the same checkpoints finds the same chains in the same order.
 */
export function pairRun(ckpts: readonly Checkpoint[]): { pairings: TensorPairingResult[]; chains: Chain[] } {
  const pairings: TensorPairingResult[] = [];
  for (let s = 0; s + 1 < ckpts.length; s++) {
    const r = pairTensors(ckpts[s], ckpts[s + 1]);
    if (r.shapeMismatches.length > 0) {
      const shown = r.shapeMismatches.slice(0, 3).join('; ');
      const more = r.shapeMismatches.length > 3 ? ` and ${r.shapeMismatches.length - 3} more` : '';
      throw new StepsError(`${ckpts[s].path} and ${ckpts[s + 1].path} hold tensors of different shapes: ${shown}${more}`);
    }
    assertPairing(ckpts[s], ckpts[s + 1], r);
    pairings.push(r);
  }
  return { pairings, chains: chainsOf(pairings) };
}

export function chainBytes(c: Chain): number {
  return c.refs.reduce((x, r) => x + (r.info.end - r.info.begin), 0);
}

/** One step of one tensor, as the walk (in this thread or another) hands it back. */
export interface TensorStepResult {
  step: number;
  tensor: StepTensor;
  /** Sparse ULP histogram of the M1-changed entries: [bin, count]. */
  ulps: [number, number][];
  /** Only where both sides are bf16: the `from` side's entries by biased exponent, [exponent, count]. */
  exponents: [number, number][] | null;
}

export interface ChainResult {
  chain: number;
  steps: TensorStepResult[];
  bytes: number;
}

interface TensorStepState {
  acc: TensorAccumulator;
  bitsChanged: number;
  xorBytes: number;
  exponents: Float64Array | null;
}

export interface WalkOptions {
  eta: number;
  signal?: AbortSignal;
  onFrame?: StepsRunOptions['onFrame'];
  /** After each read block, with its bytes. */
  onBytes?: (bytes: number, chain: Chain) => void;
  onChain: (r: ChainResult) => void;
}

/** Walks the chains `which`: each tensor block by block through its checkpoints, each block read once. */
export async function walkChains(chains: readonly Chain[], which: readonly number[], opts: WalkOptions): Promise<void> {
  const zstd = await loadZstd();
  // The read ring lives in the bf16 kernel's memory, so blocks are read where the kernel reads them.
  const kernel = Bf16Kernel.create([0, 1, 2].map(() => FRAME_ENTRIES * 8));
  const bufs = kernel?.buffers ?? [0, 1, 2].map(() => new Uint8Array(new ArrayBuffer(FRAME_ENTRIES * 8)));
  const x0 = new Float64Array(FRAME_ENTRIES);
  const x1 = new Float64Array(FRAME_ENTRIES);
  const f32 = new Float32Array(FRAME_ENTRIES);
  const xor = new Uint8Array(new ArrayBuffer(FRAME_ENTRIES * 8));
  for (const ci of which) {
    const c = chains[ci];
    const info = c.refs[0].info;
    const numel = info.numel;
    const states: TensorStepState[] = c.names.map((_, j) => ({
      acc: newAccumulator(info.shape),
      bitsChanged: 0,
      xorBytes: 0,
      exponents: c.refs[j].info.dtype === 'BF16' && c.refs[j + 1].info.dtype === 'BF16' ? new Float64Array(256) : null,
    }));
    // The read order: block by block, each block through the checkpoints in order.
    const reads: { j: number; start: number; count: number }[] = [];
    for (let start = 0; start < numel; start += FRAME_ENTRIES) {
      for (let j = 0; j < c.refs.length; j++) reads.push({ j, start, count: Math.min(FRAME_ENTRIES, numel - start) });
    }
    const read = (g: number): Promise<Uint8Array> => {
      const { j, start, count } = reads[g];
      const r = c.refs[j];
      return r.file.readElements(r.info, start, count, bufs[g % 3]);
    };
    let pending = reads.length > 0 ? read(0) : undefined;
    let prev: Uint8Array | undefined;
    for (let g = 0; g < reads.length; g++) {
      opts.signal?.throwIfAborted();
      const cur = await pending!;
      pending = g + 1 < reads.length ? read(g + 1) : undefined;
      const { j, start, count } = reads[g];
      if (j > 0) {
        const a = c.refs[j - 1].info.dtype;
        const b = c.refs[j].info.dtype;
        const st = states[j - 1];
        if (st.exponents) {
          const p16 = new Uint16Array(prev!.buffer, prev!.byteOffset, count);
          const c16 = new Uint16Array(cur.buffer, cur.byteOffset, count);
          accumulateBf16(st.acc, p16, c16, start, kernel);
          const x16 = new Uint16Array(xor.buffer, 0, count);
          const exps = st.exponents;
          let nz = 0;
          for (let i = 0; i < count; i++) {
            const v = p16[i] ^ c16[i];
            x16[i] = v;
            nz += (v + 0xffff) >>> 16;
            exps[(p16[i] >>> 7) & 0xff]++;
          }
          st.bitsChanged += nz;
        } else {
          decodeToFloat64(a, prev!, count, x0, f32);
          decodeToFloat64(b, cur, count, x1, f32);
          accumulateFloat(st.acc, x0, x1, count, start, opts.eta, false);
          if (a === b) st.bitsChanged += xorBits(prev!, cur, xor, count, bytesPerElement(a));
          else for (let i = 0; i < count; i++) st.bitsChanged += x0[i] !== x1[i] && !(Number.isNaN(x0[i]) && Number.isNaN(x1[i])) ? 1 : 0;
        }
        if (a === b) {
          const frame = zstd.compress(xor.subarray(0, count * bytesPerElement(a)), ZSTD_LEVEL);
          st.xorBytes += frame.length;
          opts.onFrame?.({ step: c.firstStep + j - 1, tensor: c.names[j - 1], start, frame });
        }
      }
      prev = cur;
      opts.onBytes?.(count * bytesPerElement(c.refs[j].info.dtype), c);
    }
    const steps = states.map((st, j) => stepResult(c.firstStep + j, c.names[j], info.shape, c.refs[j].info.dtype, c.refs[j + 1].info.dtype, numel, st));
    opts.onChain({ chain: ci, steps, bytes: chainBytes(c) });
  }
}

export interface StepsThreadJob {
  paths: string[];
  chains: number[];
  eta: number;
}

export type StepsThreadMessage = { type: 'chain'; result: ChainResult } | { type: 'bytes'; bytes: number } | ThreadEnd;

/** The bundled thread script beside the running bundle (dist/steps-thread.js), if there is one. */
export function defaultStepsThreadScript(): string | undefined {
  const p = path.join(__dirname, 'steps-thread.js');
  return existsSync(p) ? p : undefined;
}

/** The chains shared out between threads by bytes; results merged back in chain order, so any thread count gives the same report. */
async function walkInThreads(paths: string[], chains: readonly Chain[], threads: number, script: string, opts: WalkOptions): Promise<void> {
  const groups = shareOut(
    chains.map((c, i) => [String(i), chainBytes(c)]),
    threads,
  ).map((g) => g.map(Number));
  const jobs = groups.map((which): StepsThreadJob => ({ paths, chains: which, eta: opts.eta }));
  await runThreads<StepsThreadMessage>(
    script,
    jobs,
    'steps',
    (m) => {
      if (m.type === 'chain') opts.onChain(m.result);
      else if (m.type === 'bytes') opts.onBytes?.(m.bytes, chains[0]);
    },
    opts.signal,
    (m) => {
      if (m.format) return new CheckpointFormatError(m.format.file, m.format.problem, m.format.detail, m.format.tensor);
      return m.name === 'StepsError' ? new StepsError(m.message) : new Error(m.message);
    },
  );
}

export async function stepsOfRun(root: string, opts: StepsRunOptions = {}): Promise<StepsReport> {
  const started = Date.now();
  const eta = opts.eta ?? DEFAULT_SETTINGS.eta;
  const plan = await planSteps(root, opts);
  const { chain } = plan;
  if (chain.length < 2) {
    const has = chain.length === 0 ? 'no complete checkpoint' : plan.base ? 'only its base' : `one complete checkpoint (${chain[0].path}) and no known base`;
    throw new StepsError(`${plan.root}: there is no step to compare: the run has ${has}${plan.base || chain.length === 0 ? '' : ' (name one with --base)'}`);
  }
  const keys = await runConfigKeys(plan.root);
  const ckpts: Checkpoint[] = [];
  try {
    for (const link of chain) {
      opts.signal?.throwIfAborted();
      ckpts.push(await Checkpoint.open(link.path));
    }
    const { pairings, chains } = pairRun(ckpts);
    const bytesTotal = chains.reduce((s, c) => s + chainBytes(c), 0);
    let bytesDone = 0;
    const results = new Map<number, ChainResult>();
    const walk: WalkOptions = {
      eta,
      signal: opts.signal,
      onFrame: opts.onFrame,
      onBytes: (bytes, c) => {
        bytesDone += bytes;
        opts.onProgress?.({
          phase: 'steps',
          tensor: c.names[0],
          index: results.size,
          total: chains.length,
          fraction: bytesTotal > 0 ? bytesDone / bytesTotal : 1,
        });
      },
      onChain: (r) => {
        results.set(r.chain, r);
        opts.onProgress?.({
          phase: 'steps',
          tensor: chains[r.chain].names[0],
          index: results.size,
          total: chains.length,
          fraction: bytesTotal > 0 ? bytesDone / bytesTotal : 1,
        });
      },
    };
    const threads = opts.threads ?? defaultThreads();
    const script = opts.threadScript ?? defaultStepsThreadScript();
    // Frames are a test hook of this thread; the walk elsewhere keeps its frames to itself.
    if (threads > 1 && script && chains.length > 1 && !opts.onFrame) {
      try {
        await walkInThreads(
          ckpts.map((c) => c.path),
          chains,
          threads,
          script,
          walk,
        );
      } catch (e) {
        // A thread opens the files after this thread did: a file rewritten in between explains any error.
        for (const ck of ckpts) await ck.assertUnchanged();
        throw e;
      }
    } else {
      await walkChains(
        chains,
        chains.map((_, i) => i),
        walk,
      );
    }
    for (const ck of ckpts) await ck.assertUnchanged();

    const totals = pairings.map(() => new StepTotals());
    for (let ci = 0; ci < chains.length; ci++) for (const r of results.get(ci)!.steps) totals[r.step].add(r);
    const steps: StepEntry[] = [];
    for (let s = 0; s < pairings.length; s++) {
      steps.push(await stepEntry(plan, s, totals[s], pairings[s].mismatches, keys, opts));
    }
    return {
      schemaVersion: STEPS_SCHEMA_VERSION,
      kind: 'gatescope.steps',
      tool: { name: 'gatescope', version: VERSION },
      createdAt: new Date().toISOString(),
      root: plan.root,
      name: plan.name,
      base: plan.base,
      settings: { eta, zstdLevel: ZSTD_LEVEL, frameEntries: FRAME_ENTRIES },
      checkpoints: chain.map((l) => ({ path: l.path, step: l.step })),
      skipped: plan.skipped,
      steps,
      durationMs: Date.now() - started,
    };
  } finally {
    for (const ck of ckpts) await ck.close();
  }
}

/** XOR of two blocks of one dtype into `out`; returns how many entries differ in any bit. */
function xorBits(a: Uint8Array, b: Uint8Array, out: Uint8Array, count: number, size: number): number {
  let nz = 0;
  if (size === 4 || size === 8) {
    const wa = new Uint32Array(a.buffer, a.byteOffset, count * (size / 4));
    const wb = new Uint32Array(b.buffer, b.byteOffset, count * (size / 4));
    const wo = new Uint32Array(out.buffer, out.byteOffset, count * (size / 4));
    if (size === 4) {
      for (let i = 0; i < count; i++) nz += (wo[i] = wa[i] ^ wb[i]) !== 0 ? 1 : 0;
    } else {
      for (let i = 0; i < count; i++) nz += ((wo[2 * i] = wa[2 * i] ^ wb[2 * i]) | (wo[2 * i + 1] = wa[2 * i + 1] ^ wb[2 * i + 1])) !== 0 ? 1 : 0;
    }
  } else if (size === 2) {
    const wa = new Uint16Array(a.buffer, a.byteOffset, count);
    const wb = new Uint16Array(b.buffer, b.byteOffset, count);
    const wo = new Uint16Array(out.buffer, out.byteOffset, count);
    for (let i = 0; i < count; i++) nz += (wo[i] = wa[i] ^ wb[i]) !== 0 ? 1 : 0;
  } else {
    for (let i = 0; i < count; i++) nz += (out[i] = a[i] ^ b[i]) !== 0 ? 1 : 0;
  }
  return nz;
}

const INT32_ENTRIES = 2 ** 31;

function stepResult(
  step: number,
  name: string,
  shape: number[],
  fromDtype: TensorRef['info']['dtype'],
  toDtype: TensorRef['info']['dtype'],
  numel: number,
  st: TensorStepState,
): TensorStepResult {
  const d = finishTensor(name, shape, fromDtype === toDtype ? fromDtype : `${fromDtype}->${toDtype}`, numel, st.acc, 1, false);
  const value = bytesPerElement(toDtype);
  const payload: StepPayload =
    st.bitsChanged > 0
      ? {
          dense: numel * value,
          bitmap: Math.ceil(numel / 8) + st.bitsChanged * value,
          coo: st.bitsChanged * ((numel > INT32_ENTRIES ? 8 : 4) + value),
          xorZstd: fromDtype === toDtype ? st.xorBytes : null,
        }
      : { dense: 0, bitmap: 0, coo: 0, xorZstd: 0 };
  const tensor: StepTensor = {
    name,
    module: d.module,
    layer: d.layer,
    shape,
    dtype: d.dtype,
    numel,
    changed: d.changed,
    unchanged: d.unchanged,
    bitsChanged: st.bitsChanged,
    nonFinite: d.nonFinite,
    relUpdateNorm: d.relUpdateNorm,
    updateNormFro: d.updateNormFro,
    baseNormFro: d.baseNormFro,
    medianUpdateUlps: d.medianUpdateUlps,
    payload,
  };
  const sparse = (counts: ArrayLike<number>): [number, number][] => {
    const out: [number, number][] = [];
    for (let i = 0; i < counts.length; i++) if (counts[i]) out.push([i, counts[i]]);
    return out;
  };
  return { step, tensor, ulps: sparse(st.acc.hist.counts), exponents: st.exponents ? sparse(st.exponents) : null };
}

async function stepEntry(
  plan: StepsPlan,
  s: number,
  t: StepTotals,
  mismatches: TensorMismatch[],
  keys: RunConfigKey[],
  opts: StepsRunOptions,
): Promise<StepEntry> {
  const from = plan.chain[s];
  const to = plan.chain[s + 1];
  const fromBase = from.layout === 'base';
  const modules: StepGroup[] = MODULE_KINDS.filter((m) => t.modules.has(m)).map((m) => {
    const g = t.modules.get(m)!;
    return { module: m, tensors: g.tensors, numel: g.numel, changed: g.changed, unchanged: g.unchanged, relUpdateNorm: g.relUpdateNorm };
  });
  const fromExponents: [number, number][] = [];
  t.exponents.forEach((c, e) => {
    if (c > 0) fromExponents.push([e, c]);
  });
  const entry: StepEntry = {
    from: from.path,
    to: to.path,
    fromStep: from.step,
    toStep: to.step,
    fromBase,
    changed: t.all.changed,
    numel: t.all.numel,
    unchanged: t.all.unchanged,
    relUpdateNorm: t.all.relUpdateNorm,
    medianUpdateUlps: medianOfUlpHistogram(t.ulps),
    bitsChanged: t.bitsChanged,
    payload: t.payload,
    prediction: null,
    fromExponents,
    modules,
    tensors: t.tensors,
    mismatches,
  };
  const lr =
    opts.learningRate !== undefined
      ? { value: opts.learningRate, source: opts.learningRateSource ?? 'given' }
      : await learningRateFor(plan.run, to, from.step, keys);
  if (t.bf16Finite === 0) {
    entry.predictionUnavailable = 'no tensor is stored in bf16 in both checkpoints (the prediction is about bf16 storage)';
  } else if (!lr) {
    entry.predictionUnavailable = "no learning rate: none in trainer_state.json, training_args.json or the run's configs (give one with --lr)";
  } else {
    entry.prediction = predict(lr, from, to, t, keys);
  }
  return entry;
}

function share(x: number): string {
  return `${(100 * x).toFixed(2)}%`;
}

function predict(lr: LearningRate, from: ChainLink, to: ChainLink, t: StepTotals, keys: RunConfigKey[]): StepPrediction {
  const per = optimizerStepsPerCheckpointStep(to.layout, keys);
  let optimizerSteps = 1;
  let optimizerStepsSource = 'not known for this layout: the bound of one optimizer step';
  if (per && from.step !== null && to.step !== null && to.step > from.step) {
    optimizerSteps = per.factor * (to.step - from.step);
    optimizerStepsSource = `${per.source}: ${to.step - from.step} x ${per.factor}`;
  }
  const bound = optimizerSteps * lr.value;
  const unchangedAtLr = unchangedShareBelowBound(t.exponents, bound);
  const unchangedAt10Lr = unchangedShareBelowBound(t.exponents, 10 * bound);
  const observedUnchanged = (t.bf16Finite - t.bf16Changed) / t.bf16Finite;
  const agreement = observedUnchanged < unchangedAt10Lr ? 'below' : observedUnchanged > unchangedAtLr ? 'above' : 'within';
  const seen = `${share(observedUnchanged)} of the bf16 entries stayed unchanged`;
  const note =
    agreement === 'within'
      ? `${seen}, between the predictions at 10 lr (${share(unchangedAt10Lr)}) and lr (${share(unchangedAtLr)}): bf16 rounding of steps of lr to 10 lr accounts for this step's sparsity.`
      : agreement === 'below'
        ? `${seen}, fewer than Adam steps of at most 10 lr can leave (${share(unchangedAt10Lr)}): the learning rate or the optimizer steps between the checkpoints are larger than read, the optimizer moves entries further than Adam, or fp32 master weights sat near a bf16 rounding boundary (a smaller step flips those).`
        : `${seen}, more than the lr bound predicts (${share(unchangedAtLr)}): the updates moved entries by less than lr per optimizer step, as Adam's steps on noisy or cancelling gradients usually do; gradient clipping, a decaying schedule or weight decay pulling against the update shrink them further.`;
  return {
    learningRate: lr,
    optimizerSteps,
    optimizerStepsSource,
    bound,
    numel: t.bf16Finite,
    unchangedAtLr,
    unchangedAt10Lr,
    observedUnchanged,
    agreement,
    note,
  };
}
