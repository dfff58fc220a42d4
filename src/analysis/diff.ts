/**
 * The diff pass: M1 (bf16-aware update sparsity), M4 (row/column changed ratios) and the Gate I / Gate III
 * probes, streamed tensor by tensor in bounded chunks, reading the next chunk while the current one is
 * computed. Memory is bounded by the chunk size and the per-row/column counters of one tensor.
 */
import type { Checkpoint, TensorRef } from '../formats/checkpoint';
import { isFloatDtype, bytesPerElement, decodeToFloat64 } from '../formats/dtype';
import type { LineRatios, TensorDiff, TensorMismatch, TensorPairing } from '../report/schema';
import { classifyModule, layerIndex } from '../core/names';
import { PairingError } from '../formats/errors';
import { Bf16Kernel, sharedBf16Kernel } from './bf16-kernel';
import type { AnalysisPlan } from './plan';

export interface DiffOptions {
  eta: number;
  /** Elements per read; bounded memory. */
  chunkElements?: number;
  /** Called after each tensor with the bytes done so far. */
  onProgress?: (p: { tensor: string; index: number; total: number; bytesDone: number; bytesTotal: number }) => void;
  /** Called with each finished tensor (partial results). */
  onTensor?: (t: TensorDiff) => void;
  signal?: AbortSignal;
  /** Longest M4 vector kept exactly; longer ones are block-averaged to at most this many values. */
  maxLineRatios?: number;
  /** Only these tensors (a worker thread's share); mismatches are still reported for all. */
  only?: ReadonlySet<string>;
  /** The bf16 kernel: WebAssembly SIMD where the runtime has it (the default), or the reference in JavaScript. */
  kernel?: DiffKernelChoice;
}

export type DiffKernelChoice = 'auto' | 'js';

export const LEGACY_ABS_TOLERANCE = 1e-5;
const DEFAULT_CHUNK = 1 << 20;

/** bf16 ULP at each biased exponent: 2^(e - 127 - 7), subnormals share the smallest normal binade's ULP. */
const ULP_BY_EXPONENT = (() => {
  const t = new Float64Array(256);
  for (let e = 0; e < 256; e++) t[e] = 2 ** (Math.max(e, 1) - 127 - 7);
  return t;
})();

const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * Histogram of |dw| / ulp keyed by the top 16 bits of the float32 ratio (exponent + 7 mantissa bits):
 * 128 bins per octave. The median it gives is exact for integer ULP counts up to 256 and within 0.8% above.
 */
class UlpHistogram {
  readonly counts = new Uint32Array(65536);
  total = 0;
  private readonly f = new Float32Array(1);
  private readonly u = new Uint32Array(this.f.buffer);
  add(ratio: number): void {
    // Beyond the float32 range (a broken checkpoint's exponent flip) the ratio saturates at its maximum.
    this.f[0] = ratio < FLOAT32_MAX ? ratio : FLOAT32_MAX;
    this.counts[this.u[0] >>> 16]++;
    this.total++;
  }
  median(): number | null {
    if (this.total === 0) return null;
    const target = Math.floor((this.total - 1) / 2);
    let acc = 0;
    for (let b = 0; b < 65536; b++) {
      acc += this.counts[b];
      if (acc > target) {
        this.u[0] = b << 16;
        return this.f[0];
      }
    }
    return null;
  }
  reset(): void {
    this.counts.fill(0);
    this.total = 0;
  }
}

/** Per-tensor accumulators, filled chunk by chunk. */
class TensorAccumulator {
  changed = 0;
  nonFinite = 0;
  unchangedAbs = 0;
  finite = 0;
  dSq = 0;
  baseSq = 0;
  maxAbs = 0;
  exactChanged = 0;
  hidden = 0;
  /** Sums of squares are kept in units of 2^(2 sqShift): only F64 data beyond 2^500 needs a shift. */
  sqShift = 0;
  /** Per-row / per-column changed counts; a tensor that is not 2-D is counted as one row (not reported). */
  readonly rows: Uint32Array;
  readonly cols: Uint32Array;
  readonly ncols: number;
  readonly is2d: boolean;
  constructor(
    shape: readonly number[],
    readonly hist: UlpHistogram,
  ) {
    this.is2d = shape.length === 2;
    const numel = shape.reduce((a, b) => a * b, 1);
    // A zero-element tensor gets no per-row counters, whatever its dimensions say.
    const [r, c] = this.is2d && numel > 0 ? shape : [1, Math.max(1, numel)];
    this.rows = new Uint32Array(Math.max(1, r));
    this.cols = new Uint32Array(Math.max(1, c));
    this.ncols = Math.max(1, c);
  }
}

const f32scratch = new Float32Array(1);
const u32scratch = new Uint32Array(f32scratch.buffer);

function bf16OfNumber(x: number): number {
  f32scratch[0] = x;
  const bits = u32scratch[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return 0x7fc0;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function ulpOfNumber(x: number): number {
  f32scratch[0] = x;
  return ULP_BY_EXPONENT[(u32scratch[0] >>> 23) & 0xff];
}

/** 1 / ULP_BY_EXPONENT: powers of two, so the product is exact. */
const INV_ULP_BY_EXPONENT = ULP_BY_EXPONENT.map((u) => 1 / u);

/**
 * Accumulates two bf16 chunks into `acc` with the WebAssembly SIMD kernel ({@link Bf16Kernel}; the thread's
 * shared one when none is given), or with the reference below where there is none, `null` asks for the
 * reference, or the tensor is wider than the kernel counts.
 */
export function accumulateBf16(
  acc: TensorAccumulator,
  b0: Uint16Array,
  b1: Uint16Array,
  startIndex: number,
  kernel: Bf16Kernel | null | undefined = sharedBf16Kernel(),
): void {
  if (kernel?.accepts(acc)) kernel.accumulate(acc, b0, b1, startIndex);
  else accumulateBf16Js(acc, b0, b1, startIndex);
}

/**
 * The reference kernel for two bf16 chunks: M1 by bit patterns (+0 == -0), everything else from decoded values.
 * Branch-free in the changed/unchanged decision (about half the entries change, at random, so a branch
 * there is mispredicted half the time): unchanged entries contribute zeros. Rows are walked as blocks so
 * per-row counts are written once per row.
 */
export function accumulateBf16Js(acc: TensorAccumulator, b0: Uint16Array, b1: Uint16Array, startIndex: number): void {
  const n = b0.length;
  const rows = acc.rows;
  const cols = acc.cols;
  const ncols = acc.ncols;
  let col = startIndex % ncols;
  let row = (startIndex - col) / ncols;
  const f = new Float32Array(3);
  const u = new Uint32Array(f.buffer);
  const counts = acc.hist.counts;
  let changed = 0;
  let nonFinite = 0;
  let legacyChanged = 0;
  let dSq = 0;
  let baseSq = 0;
  let maxAbs = acc.maxAbs;
  let i = 0;
  while (i < n) {
    const end = Math.min(n, i + (ncols - col));
    let rowChanged = 0;
    for (; i < end; i++, col++) {
      const a = b0[i];
      const b = b1[i];
      if ((a & 0x7f80) === 0x7f80 || (b & 0x7f80) === 0x7f80) {
        nonFinite++;
        continue;
      }
      u[0] = a << 16;
      u[1] = b << 16;
      const w0 = f[0];
      const d = f[1] - w0;
      const ad = Math.abs(d);
      // changed = bits differ and not both zeros, as integer arithmetic (no branch): x in [0, 0xffff]
      // gives (x + 0xffff) >>> 16 == (x != 0).
      const c = (((a ^ b) + 0xffff) >>> 16) & ((((a | b) & 0x7fff) + 0x7fff) >>> 15);
      baseSq += w0 * w0;
      dSq += d * d;
      maxAbs = Math.max(maxAbs, ad);
      changed += c;
      rowChanged += c;
      cols[col] += c;
      legacyChanged += ad > LEGACY_ABS_TOLERANCE ? c : 0;
      f[2] = Math.min(ad * INV_ULP_BY_EXPONENT[(a >>> 7) & 0xff], FLOAT32_MAX);
      counts[u[2] >>> 16] += c;
    }
    rows[row] += rowChanged;
    if (col === ncols) {
      col = 0;
      row++;
    }
  }
  const finite = n - nonFinite;
  acc.changed += changed;
  acc.nonFinite += nonFinite;
  acc.finite += finite;
  acc.unchangedAbs += finite - legacyChanged;
  acc.dSq += dSq;
  acc.baseSq += baseSq;
  acc.maxAbs = maxAbs;
  acc.hist.total += changed;
}

/**
 * Kernel for any other pair of float dtypes (decoded to float64): M1 by the relative rule with eta.
 * When the checkpoint is stored in fp32/f64, also counts changes that bf16 storage would hide (Gate III).
 */
export function accumulateFloat(
  acc: TensorAccumulator,
  x0: Float64Array,
  x1: Float64Array,
  count: number,
  startIndex: number,
  eta: number,
  gate3: boolean,
): void {
  const rows = acc.rows;
  const cols = acc.cols;
  const ncols = acc.ncols;
  let col = startIndex % ncols;
  let row = (startIndex - col) / ncols;
  if (acc.sqShift === 0) {
    // Squares of F64 values past 2^500 would overflow: switch this tensor's sums to scaled units.
    let big = 0;
    for (let i = 0; i < count; i++) {
      const m = Math.max(Math.abs(x0[i]), Math.abs(x1[i]));
      if (m > big && m !== Infinity) big = m;
    }
    if (big > 2 ** 500) {
      acc.sqShift = 600;
      acc.baseSq *= 2 ** -1200;
      acc.dSq *= 2 ** -1200;
    }
  }
  const sc = 2 ** -acc.sqShift;
  for (let i = 0; i < count; i++) {
    const w0 = x0[i];
    const w1 = x1[i];
    if (!Number.isFinite(w0) || !Number.isFinite(w1)) {
      acc.nonFinite++;
    } else {
      acc.finite++;
      acc.baseSq += (w0 * sc) ** 2;
      const ds = w1 * sc - w0 * sc;
      const d = ds / sc;
      const ad = Math.min(Math.abs(d), Number.MAX_VALUE);
      if (gate3 && d !== 0) {
        acc.exactChanged++;
        if (bf16OfNumber(w0) === bf16OfNumber(w1) || (w0 === 0 && w1 === 0)) acc.hidden++;
      }
      if (ad <= LEGACY_ABS_TOLERANCE) acc.unchangedAbs++;
      if (ad > eta * Math.max(Math.abs(w0), Math.abs(w1))) {
        acc.changed++;
        acc.dSq += ds * ds;
        if (ad > acc.maxAbs) acc.maxAbs = ad;
        acc.hist.add(ad / ulpOfNumber(w0));
        rows[row]++;
        cols[col]++;
      } else if (d !== 0) {
        // Below eta: unchanged for M1, but the tiny difference still belongs to ||dW||.
        acc.dSq += ds * ds;
        if (ad > acc.maxAbs) acc.maxAbs = ad;
      }
    }
    if (++col === ncols) {
      col = 0;
      row++;
    }
  }
}

export function lineRatios(counts: Uint32Array, other: number, maxLen: number): LineRatios {
  if (other <= 0) return { length: 0, bin: 1, values: [] };
  const length = counts.length;
  const bin = Math.max(1, Math.ceil(length / maxLen));
  const values: number[] = [];
  for (let s = 0; s < length; s += bin) {
    const e = Math.min(length, s + bin);
    let c = 0;
    for (let i = s; i < e; i++) c += counts[i];
    values.push(round6(c / ((e - s) * other)));
  }
  return { length, bin, values };
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

export interface DiffResult {
  tensors: TensorDiff[];
  mismatches: TensorMismatch[];
  /** How the checkpoint's tensors were paired with the base's (wrapper prefixes stripped, counts). */
  pairing: TensorPairing;
}

/**
 * Wrapper prefixes that training frameworks put in front of every tensor name: torch.compile
 * (`_orig_mod.`), DistributedDataParallel (`module.`), a PEFT model saved after merging
 * (`base_model.model.`). They can stack (`module._orig_mod.`).
 */
export const WRAPPER_PREFIXES: readonly string[] = ['_orig_mod.', 'module.', 'base_model.model.'];

/** Every stack of wrapper prefixes that starts `name`, shortest first ('' included). */
function wrapperStacks(name: string): string[] {
  const out = [''];
  let rest = name;
  let stack = '';
  for (let again = true; again;) {
    again = false;
    for (const w of WRAPPER_PREFIXES) {
      if (rest.startsWith(w) && rest.length > w.length) {
        stack += w;
        rest = rest.slice(w.length);
        out.push(stack);
        again = true;
        break;
      }
    }
  }
  return out;
}

/** The stacks of wrapper prefixes that some names of a checkpoint start with. */
function candidatePrefixes(names: Iterable<string>): string[] {
  const seen = new Set<string>(['']);
  for (const n of names) for (const p of wrapperStacks(n)) seen.add(p);
  return [...seen];
}

/**
 * The wrapper prefixes to strip: the pair (base prefix, checkpoint prefix) under which the most base
 * tensors find a checkpoint tensor of the same remaining name; no stripping on a tie, then the shortest.
 * A prefix is stripped only where the rest then matches the other side's names.
 */
export function choosePrefixes(baseNames: readonly string[], ckptNames: ReadonlySet<string>): { basePrefix: string; checkpointPrefix: string } {
  const baseSet = new Set(baseNames);
  let best = { basePrefix: '', checkpointPrefix: '', matches: -1 };
  for (const bp of candidatePrefixes(baseNames)) {
    for (const cp of candidatePrefixes(ckptNames)) {
      let matches = 0;
      for (const name of baseSet) if (name.startsWith(bp) && ckptNames.has(cp + name.slice(bp.length))) matches++;
      const better = matches > best.matches || (matches === best.matches && bp.length + cp.length < best.basePrefix.length + best.checkpointPrefix.length);
      if (better) best = { basePrefix: bp, checkpointPrefix: cp, matches };
    }
  }
  return { basePrefix: best.basePrefix, checkpointPrefix: best.checkpointPrefix };
}

export interface TensorPairingResult {
  /** Report name (the base's tensor name), base tensor, checkpoint tensor. */
  pairs: [string, TensorRef, TensorRef][];
  mismatches: TensorMismatch[];
  pairing: TensorPairing;
  /** Float tensors of the base that found no checkpoint tensor of the same name and shape. */
  unpairedBase: string[];
  /** Checkpoint tensors that found no base tensor of the same name and shape. */
  unpairedCheckpoint: string[];
  /** Shape mismatches, as '"name" (base [..] vs checkpoint [..])'. */
  shapeMismatches: string[];
  /** The checkpoint's name of each shape-mismatched base tensor. */
  shapeMismatchedCheckpoint: string[];
}

/**
 * Pairs tensors by name, after stripping the wrapper prefixes that make the two sides' names differ
 * (see {@link choosePrefixes}), and reports every mismatch; never skips silently. Report names are the
 * base's tensor names; `only-in-checkpoint` mismatches carry the checkpoint's own names.
 */
export function pairTensors(base: Checkpoint, ckpt: Checkpoint): TensorPairingResult {
  const pairs: [string, TensorRef, TensorRef][] = [];
  const mismatches: TensorMismatch[] = [];
  const unpairedBase: string[] = [];
  const shapeMismatches: string[] = [];
  const shapeMismatchedCheckpoint: string[] = [];
  const names = [...base.tensors.keys()].sort(naturalCompare);
  const { basePrefix, checkpointPrefix } = choosePrefixes(names, new Set(ckpt.tensors.keys()));
  const ckptNameOf = (name: string): string | undefined => (name.startsWith(basePrefix) ? checkpointPrefix + name.slice(basePrefix.length) : undefined);
  const matched = new Set<string>();
  let baseFloatTensors = 0;
  for (const name of names) {
    const a = base.tensors.get(name)!;
    const baseFloat = isFloatDtype(a.info.dtype);
    if (baseFloat) baseFloatTensors++;
    const cname = ckptNameOf(name);
    const b = cname === undefined ? undefined : ckpt.tensors.get(cname);
    if (!b) {
      mismatches.push({ name, problem: 'only-in-base', detail: 'not in the checkpoint' });
      if (baseFloat) unpairedBase.push(name);
      continue;
    }
    matched.add(cname!);
    if (a.info.shape.length !== b.info.shape.length || a.info.shape.some((d, i) => d !== b.info.shape[i])) {
      const detail = `base [${a.info.shape.join(', ')}] vs checkpoint [${b.info.shape.join(', ')}]`;
      mismatches.push({ name, problem: 'shape-mismatch', detail });
      shapeMismatches.push(`${JSON.stringify(name)} (${detail})`);
      shapeMismatchedCheckpoint.push(cname!);
      if (baseFloat) unpairedBase.push(name);
      continue;
    }
    if (!baseFloat || !isFloatDtype(b.info.dtype)) {
      mismatches.push({ name, problem: 'not-float', detail: `${a.info.dtype} / ${b.info.dtype}: M1 covers floating-point tensors only` });
      if (baseFloat) unpairedBase.push(name);
      continue;
    }
    if (a.info.dtype !== b.info.dtype) {
      mismatches.push({
        name,
        problem: 'dtype-mismatch',
        detail: `base ${a.info.dtype} vs checkpoint ${b.info.dtype}: compared as floats with the relative rule`,
      });
    }
    pairs.push([name, a, b]);
  }
  const unpairedCheckpoint: string[] = [];
  for (const name of [...ckpt.tensors.keys()].sort(naturalCompare)) {
    if (matched.has(name)) continue;
    mismatches.push({ name, problem: 'only-in-checkpoint', detail: 'not in the base' });
    unpairedCheckpoint.push(name);
  }
  // A shape mismatch leaves the checkpoint's tensor unpaired too.
  unpairedCheckpoint.push(...shapeMismatchedCheckpoint);
  return {
    pairs,
    mismatches,
    pairing: { basePrefix, checkpointPrefix, paired: pairs.length, baseFloatTensors },
    unpairedBase,
    unpairedCheckpoint,
    shapeMismatches,
    shapeMismatchedCheckpoint,
  };
}

/**
 * Refuses a pairing that would make a report out of too little: no tensor paired, or fewer than half of
 * the base's float tensors (shape mismatches count as unpaired). A wrong base, a different model or a
 * renamed checkpoint would otherwise read as "unchanged: 100%" over nothing.
 */
export function assertPairing(base: Checkpoint, ckpt: Checkpoint, r: TensorPairingResult): void {
  const { paired, baseFloatTensors } = r.pairing;
  if (paired > 0 && paired * 2 >= baseFloatTensors) return;
  throw new PairingError(ckpt.path, base.path, {
    ...r.pairing,
    unpairedBase: r.unpairedBase,
    unpairedCheckpoint: r.unpairedCheckpoint,
    shapeMismatches: r.shapeMismatches,
  });
}

/** Orders "layers.2" before "layers.10". */
export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** The diff pass over a plan's pairs (or its `only` share), reading through the plan's open files. */
export async function diffCheckpoints(plan: AnalysisPlan, opts: DiffOptions): Promise<DiffResult> {
  const { base, checkpoint: ckpt } = plan;
  const mismatches = plan.pairing.mismatches;
  const pairs = opts.only ? plan.pairs.filter((p) => opts.only!.has(p.name)) : plan.pairs;
  const chunk = opts.chunkElements ?? DEFAULT_CHUNK;
  const maxLine = opts.maxLineRatios ?? 4096;
  const hist = new UlpHistogram();
  const bytesTotal = pairs.reduce((s, p) => s + p.bytes, 0);
  let bytesDone = 0;
  // Two sets of read buffers: the next chunk is read while the current one is computed. With the SIMD
  // kernel they live in its memory, so chunks are read where the kernel reads them.
  const maxBytes = chunk * 8;
  const kernel = opts.kernel === 'js' ? undefined : Bf16Kernel.create([maxBytes, maxBytes, maxBytes, maxBytes]);
  const bufs = kernel
    ? [
        [kernel.buffers[0], kernel.buffers[1]],
        [kernel.buffers[2], kernel.buffers[3]],
      ]
    : [0, 1].map(() => [new Uint8Array(new ArrayBuffer(maxBytes)), new Uint8Array(new ArrayBuffer(maxBytes))]);
  const x0 = new Float64Array(chunk);
  const x1 = new Float64Array(chunk);
  const f32 = new Float32Array(chunk);
  const tensors: TensorDiff[] = [];

  for (let ti = 0; ti < pairs.length; ti++) {
    const { name, base: a, checkpoint: b } = pairs[ti];
    opts.signal?.throwIfAborted();
    const info = a.info;
    const bothBf16 = info.dtype === 'BF16' && b.info.dtype === 'BF16';
    const gate3 = b.info.dtype === 'F32' || b.info.dtype === 'F64';
    hist.reset();
    const acc = new TensorAccumulator(info.shape, hist);
    const numel = info.numel;
    // Both sides the same stored tensor (a weight an adapter leaves as it is): read it once, copy it once.
    const same = a.file === b.file && a.info === b.info;
    const read = async (start: number, slot: number): Promise<[Uint8Array, Uint8Array]> => {
      const count = Math.min(chunk, numel - start);
      if (!same) return Promise.all([a.file.readElements(a.info, start, count, bufs[slot][0]), b.file.readElements(b.info, start, count, bufs[slot][1])]);
      const r0 = await a.file.readElements(a.info, start, count, bufs[slot][0]);
      const r1 = bufs[slot][1].subarray(0, r0.byteLength);
      r1.set(r0);
      return [r0, r1];
    };
    let pending = numel > 0 ? read(0, 0) : undefined;
    for (let start = 0, slot = 0; start < numel; start += chunk, slot ^= 1) {
      const [r0, r1] = await pending!;
      const count = Math.min(chunk, numel - start);
      pending = start + chunk < numel ? read(start + chunk, slot ^ 1) : undefined;
      if (bothBf16) {
        const p0 = new Uint16Array(r0.buffer, r0.byteOffset, count);
        const p1 = new Uint16Array(r1.buffer, r1.byteOffset, count);
        accumulateBf16(acc, p0, p1, start, kernel ?? null);
      } else {
        decodeToFloat64(info.dtype, r0, count, x0, f32);
        decodeToFloat64(b.info.dtype, r1, count, x1, f32);
        accumulateFloat(acc, x0, x1, count, start, opts.eta, gate3);
      }
      bytesDone += count * (bytesPerElement(info.dtype) + bytesPerElement(b.info.dtype));
      opts.signal?.throwIfAborted();
    }
    const d = finishTensor(name, info.shape, info.dtype === b.info.dtype ? info.dtype : `${info.dtype}->${b.info.dtype}`, numel, acc, maxLine, gate3);
    tensors.push(d);
    opts.onTensor?.(d);
    opts.onProgress?.({ tensor: name, index: ti + 1, total: pairs.length, bytesDone, bytesTotal });
  }
  // A checkpoint rewritten under us must not produce numbers.
  await base.assertUnchanged();
  await ckpt.assertUnchanged();
  return { tensors, mismatches, pairing: plan.pairing.pairing };
}

/** The reasons a tensor has no M1 share (`TensorDiff.unchangedUnavailable`). */
export const NO_ENTRIES = 'the tensor has no entries';
export const ALL_NON_FINITE = 'every entry is NaN or Inf in the base or the checkpoint';

/** A tensor's numbers from its filled accumulator (the diff pass and the step-to-step pass share it). */
export function finishTensor(name: string, shape: number[], dtype: string, numel: number, acc: TensorAccumulator, maxLine: number, gate3: boolean): TensorDiff {
  const module = classifyModule(name);
  const finite = acc.finite;
  // Norms beyond the float64 range (only absurd F64 data) saturate at its maximum.
  const unit = 2 ** acc.sqShift;
  const baseNorm = Math.min(Math.sqrt(acc.baseSq) * unit, Number.MAX_VALUE);
  const updNorm = Math.min(Math.sqrt(acc.dSq) * unit, Number.MAX_VALUE);
  const d: TensorDiff = {
    name,
    module,
    layer: layerIndex(name),
    shape,
    dtype,
    numel,
    unchanged: finite === 0 ? null : (finite - acc.changed) / finite,
    changed: acc.changed,
    nonFinite: acc.nonFinite,
    unchangedLegacyAbs: finite === 0 ? null : acc.unchangedAbs / finite,
    relUpdateNorm: baseNorm > 0 && Number.isFinite(updNorm / baseNorm) ? updNorm / baseNorm : null,
    updateNormFro: updNorm,
    baseNormFro: baseNorm,
    maxAbsUpdate: acc.maxAbs,
    medianUpdateUlps: acc.hist.median(),
  };
  // No finite entry: no share of anything, rather than a share of nothing that reads as "unchanged: 100%".
  if (finite === 0) d.unchangedUnavailable = numel === 0 ? NO_ENTRIES : ALL_NON_FINITE;
  if (acc.is2d) {
    const empty = numel === 0;
    d.rowChangedRatio = empty ? { length: shape[0], bin: 1, values: [] } : lineRatios(acc.rows, shape[1], maxLine);
    d.colChangedRatio = empty ? { length: shape[1], bin: 1, values: [] } : lineRatios(acc.cols, shape[0], maxLine);
  }
  if (gate3) d.hiddenByPrecision = acc.exactChanged === 0 ? 0 : acc.hidden / acc.exactChanged;
  return d;
}

export type { TensorAccumulator };
export function newAccumulator(shape: readonly number[]): TensorAccumulator {
  return new TensorAccumulator(shape, new UlpHistogram());
}
