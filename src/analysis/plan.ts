/**
 * The plan of one analysis: both checkpoints opened once, read-only; their tensors paired; and, from the
 * headers alone, what each pass applies to and the memory each needs. The result cache key (the files'
 * identities as opened), the memory guard, the shard split, the diff pass (its threads borrow the same
 * descriptors) and the spectral pass all read this one plan, so they agree on which files and tensors an
 * analysis covers and a checkpoint rewritten between two of them cannot make them disagree. A LoRA
 * adapter checkpoint is planned as its merge into the base (analysis/adapter.ts).
 */
import { Checkpoint, type TensorRef } from '../formats/checkpoint';
import { bytesPerElement } from '../formats/dtype';
import { classifyModule, isLinearWeight } from '../core/names';
import { assertPairing, pairTensors, type TensorPairingResult } from './diff';
import { MergedWeight, openCheckpointFor, type AdapterOpenOptions } from './adapter';

/** Matrices whose smaller side is at most this get an exact full SVD (all singular values). */
export const FULL_SVD_MAX_MIN_DIM = 256;

/**
 * Bytes per element the spectral pass holds at once for one matrix pair, besides the raw data of both
 * (see `readPair` and `analyzePair` in spectral.ts): float32 copies of W0 and W1 (8), dW (4), the rank-k
 * reconstruction (4), the magnitude selection's scratch (8), and the changed, principal, low-magnitude,
 * principal-not-low and exponent-group masks (5), with room for the range-scaled copies of W0 and W1 (8)
 * and the nulls' planted updates (8).
 */
export const SPECTRAL_BYTES_PER_ELEMENT = 45;

/**
 * Why the spectral pass does not take a tensor, from its name and shape alone; null when it does, unless
 * its data removes it (every entry NaN, a zero base: `spectralApplies` in spectral.ts adds those).
 */
export function spectralScope(name: string, shape: readonly number[]): string | null {
  if (shape.length !== 2) return '1-D or higher-rank tensor: spectral measures apply to matrices';
  const module = classifyModule(name);
  if (module === 'embed') return 'embedding: rows are token lookups, not a linear map (skipped as in the paper)';
  if (module === 'head') return 'output head: skipped as in the paper';
  if (!isLinearWeight(name, shape, module)) return 'not a linear-layer weight';
  if (Math.min(shape[0], shape[1]) < 2) return 'matrix too small for a spectrum';
  return null;
}

export interface PlannedPair {
  /** The report name (the base's tensor name). */
  name: string;
  base: TensorRef;
  checkpoint: TensorRef;
  /** Bytes the diff pass streams: both sides' data. */
  bytes: number;
  /** Whether the spectral pass of a full analysis takes it (from the header; its data can still remove it). */
  spectral: boolean;
  /** Why the spectral pass skips a matrix it would otherwise take (a weight an adapter leaves as it is). */
  spectralSkip?: string;
}

export interface TensorNeed {
  tensor: string;
  shape: number[];
  dtype: string;
  pass: 'diff' | 'spectral';
  bytes: number;
}

/** The memory one pair needs at once in each pass that takes it. */
export function needsOf(p: PlannedPair): TensorNeed[] {
  const { shape, dtype: d0 } = p.base.info;
  const d1 = p.checkpoint.info.dtype;
  const dtype = d0 === d1 ? d0 : `${d0}->${d1}`;
  const out: TensorNeed[] = [];
  // The diff pass streams the data; per tensor it keeps a changed counter per row and per column.
  if (shape.length === 2) out.push({ tensor: p.name, shape, dtype, pass: 'diff', bytes: (shape[0] + shape[1]) * 4 });
  if (p.spectral) {
    const numel = p.base.info.numel;
    // An adapter's merged weight is computed on read: reading it whole also holds the merge's scratch.
    const merge = p.checkpoint.file instanceof MergedWeight ? p.checkpoint.file.readScratchBytes(numel) : 0;
    const bytes = numel * (bytesPerElement(d0) + bytesPerElement(d1) + SPECTRAL_BYTES_PER_ELEMENT) + merge;
    out.push({ tensor: p.name, shape, dtype, pass: 'spectral', bytes });
  }
  return out;
}

export class AnalysisPlan {
  private readonly byName: ReadonlyMap<string, PlannedPair>;

  private constructor(
    readonly base: Checkpoint,
    readonly checkpoint: Checkpoint,
    readonly passes: 'diff' | 'full',
    /** The pairing with every mismatch, as the report states it. */
    readonly pairing: TensorPairingResult,
    /** The paired tensors in report order. */
    readonly pairs: readonly PlannedPair[],
    /** Whether close() closes the checkpoints (the plan opened them). */
    private readonly owned: boolean,
  ) {
    this.byName = new Map(pairs.map((p) => [p.name, p]));
  }

  /** Opens both checkpoints read-only and plans; a pairing that covers too little is refused here. */
  static async open(basePath: string, checkpointPath: string, passes: 'diff' | 'full', opts: AdapterOpenOptions = {}): Promise<AnalysisPlan> {
    const base = await Checkpoint.open(basePath);
    let ckpt: Checkpoint | undefined;
    try {
      ckpt = await openCheckpointFor(base, checkpointPath, opts);
      return AnalysisPlan.build(base, ckpt, passes, true);
    } catch (e) {
      await base.close();
      await ckpt?.close();
      throw e;
    }
  }

  /** Plans of several checkpoints against one base, opened once for all of them (a comparison); close() closes all. */
  static async openAll(
    basePath: string,
    checkpointPaths: readonly string[],
    passes: 'diff' | 'full',
    opts: AdapterOpenOptions = {},
  ): Promise<{ base: Checkpoint; plans: AnalysisPlan[]; close(): Promise<void> }> {
    const opened: Checkpoint[] = [];
    const close = async (): Promise<void> => {
      await Promise.all(opened.map((c) => c.close()));
    };
    try {
      const base = await Checkpoint.open(basePath);
      opened.push(base);
      for (const p of checkpointPaths) opened.push(await openCheckpointFor(base, p, opts));
      return { base, plans: opened.slice(1).map((c) => AnalysisPlan.of(base, c, passes)), close };
    } catch (e) {
      await close();
      throw e;
    }
  }

  /** A plan over checkpoints the caller opened and closes (a comparison holds its base for every run). */
  static of(base: Checkpoint, checkpoint: Checkpoint, passes: 'diff' | 'full'): AnalysisPlan {
    return AnalysisPlan.build(base, checkpoint, passes, false);
  }

  private static build(base: Checkpoint, ckpt: Checkpoint, passes: 'diff' | 'full', owned: boolean): AnalysisPlan {
    const pairing = pairTensors(base, ckpt);
    assertPairing(base, ckpt, pairing);
    // An adapter leaves every weight it does not target as it is: no spectrum to compare there.
    const adapter = ckpt.adapter;
    const touched = adapter ? new Set([...adapter.targets, ...adapter.saved]) : undefined;
    const untouched = adapter ? `not updated by the adapter (it updates ${adapter.targets.length} weights)` : undefined;
    const pairs = pairing.pairs.map(([name, a, b]): PlannedPair => {
      const inScope = passes === 'full' && spectralScope(name, a.info.shape) === null;
      const skip = inScope && touched && !touched.has(name) ? untouched : undefined;
      return {
        name,
        base: a,
        checkpoint: b,
        bytes: a.info.end - a.info.begin + b.info.end - b.info.begin,
        spectral: inScope && !skip,
        ...(skip ? { spectralSkip: skip } : {}),
      };
    });
    return new AnalysisPlan(base, ckpt, passes, pairing, pairs, owned);
  }

  pair(name: string): PlannedPair | undefined {
    return this.byName.get(name);
  }

  /** The identities of the base's and the checkpoint's files as this plan opened them. */
  fileIdentities(): [string[], string[]] {
    return [this.base.fileIdentities(), this.checkpoint.fileIdentities()];
  }

  /** The largest allocation any one tensor needs in any pass of this analysis. */
  largestNeed(): TensorNeed | undefined {
    let worst: TensorNeed | undefined;
    for (const p of this.pairs) for (const n of needsOf(p)) if (!worst || n.bytes > worst.bytes) worst = n;
    return worst;
  }

  async close(): Promise<void> {
    if (!this.owned) return;
    await Promise.all([this.base.close(), this.checkpoint.close()]);
  }
}
