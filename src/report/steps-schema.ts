/**
 * The step-to-step report (`gatescope steps`, the "Step to Step" view): how sparse each step of a run is
 * between consecutive checkpoints, what bf16 precision predicts for it (Gate III), and what each sparse
 * encoding of the step would move. Documented in docs/report-schema.md ("Step-to-step report").
 */
import type { ModuleKind, TensorMismatch } from './schema';

export const STEPS_SCHEMA_VERSION = 1;

/**
 * Bytes a sync of the step would move, whole model: tensors with no changed bit send nothing in any
 * encoding. "Changed" here is bit-level (`bitsChanged`): what a bit-exact sync must send.
 */
export interface StepPayload {
  /** The full bytes of every tensor with a changed bit. */
  dense: number;
  /** Per tensor with a changed bit: one bit per entry (ceil(numel / 8) bytes) plus the changed values. */
  bitmap: number;
  /** Per changed entry: its flat index (int32; int64 in a tensor of more than 2^31 entries) plus its value. */
  coo: number;
  /**
   * The XOR of the two bit patterns, compressed with zstd at level {@link StepsSettings.zstdLevel}, one frame
   * per block of {@link StepsSettings.frameEntries} entries of a tensor; null where a tensor changed dtype.
   */
  xorZstd: number | null;
}

export interface StepTensor {
  /** The name on the step's `from` side (wrapper prefixes as that checkpoint stores them). */
  name: string;
  module: ModuleKind;
  layer: number | null;
  shape: number[];
  /** The stored dtype, or `FROM->TO` where the two checkpoints store the tensor differently. */
  dtype: string;
  numel: number;
  /** M1 changed entries (bf16: bit patterns differ, +0 == -0; other floats: |dw| > eta max(|w0|, |w1|)). */
  changed: number;
  /** M1 share of finite entries left unchanged; null without a finite entry. */
  unchanged: number | null;
  /** Entries whose bit patterns differ at all (what a bit-exact sync sends). */
  bitsChanged: number;
  nonFinite: number;
  relUpdateNorm: number | null;
  updateNormFro: number;
  baseNormFro: number;
  /** Median |dw| in bf16 ULPs of the `from` value over M1-changed entries; null when none changed. */
  medianUpdateUlps: number | null;
  payload: StepPayload;
}

/** A module type pooled over its tensors (entries summed, norms as root of summed squares). */
export interface StepGroup {
  module: ModuleKind;
  tensors: number;
  numel: number;
  changed: number;
  unchanged: number | null;
  relUpdateNorm: number | null;
}

/** Where a learning rate was read. */
export interface LearningRate {
  value: number;
  /** `--lr`, `<file> (log_history, steps a-b)`, `<file> (learning_rate)`, `<file>:line (key)`. */
  source: string;
}

/**
 * Gate III's prediction for one step, from the bf16 tensors of the step's `from` checkpoint: an entry
 * whose visibility threshold (half a bf16 ULP of its value, |w|/512 to |w|/256) exceeds everything the
 * optimizer can move it by between the two checkpoints cannot change. Adam moves an entry by at most
 * about lr per optimizer step (10 lr is the conservative bound), so the bound over the step is
 * `optimizerSteps x lr` (fp32 master weights accumulate the optimizer steps between two saves).
 */
export interface StepPrediction {
  learningRate: LearningRate;
  /** Optimizer steps between the two checkpoints, and how that was found. */
  optimizerSteps: number;
  optimizerStepsSource: string;
  /** optimizerSteps x lr. */
  bound: number;
  /** Entries of the bf16 tensors the prediction covers. */
  numel: number;
  /** Share of those entries whose half ULP exceeds `bound` (resp. 10 x `bound`): predicted unchanged at least. */
  unchangedAtLr: number;
  unchangedAt10Lr: number;
  /** The observed M1 unchanged share of the same entries. */
  observedUnchanged: number;
  /**
   * `within`: between the two predictions. `below`: more entries changed than Adam steps of 10 lr could
   * change. `above`: fewer changed than the lr bound allows (the usual case: steps smaller than lr).
   */
  agreement: 'within' | 'below' | 'above';
  /** One sentence saying what the agreement means for this run. */
  note: string;
}

export interface StepEntry {
  /** Checkpoint paths as the report writes them (relative to the report's folder unless --absolute-paths). */
  from: string;
  to: string;
  /** The training step of each side; the base is step 0. */
  fromStep: number | null;
  toStep: number | null;
  /** True for the step from the run's base to its first checkpoint. */
  fromBase: boolean;
  /** Whole model, M1. */
  changed: number;
  numel: number;
  unchanged: number | null;
  relUpdateNorm: number | null;
  /** Median over every M1-changed entry of the model (pooled, not a median of medians). */
  medianUpdateUlps: number | null;
  bitsChanged: number;
  payload: StepPayload;
  prediction: StepPrediction | null;
  /** Why there is no prediction, when there is none. */
  predictionUnavailable?: string;
  /**
   * The bf16 tensors' entries of the `from` side counted by biased exponent, `[exponent, count]` in
   * ascending order: enough to redo the prediction for any learning rate without reading the weights.
   */
  fromExponents: [number, number][];
  modules: StepGroup[];
  tensors: StepTensor[];
  mismatches: TensorMismatch[];
}

export interface StepsSettings {
  eta: number;
  zstdLevel: number;
  frameEntries: number;
}

export interface StepsReport {
  schemaVersion: number;
  kind: 'gatescope.steps';
  tool: { name: 'gatescope'; version: string };
  createdAt: string;
  /** The run's root folder and its name. */
  root: string;
  name: string;
  /** The run's base (the first `from`), or null when it is not known or left out. */
  base: string | null;
  settings: StepsSettings;
  /** The checkpoints walked, in order (the base first when known). */
  checkpoints: { path: string; step: number | null }[];
  /** Checkpoints of the run left out (incomplete, needing a merge, unreadable), with why. */
  skipped: { path: string; step: number | null; state: string; reason?: string }[];
  steps: StepEntry[];
  durationMs: number;
}
