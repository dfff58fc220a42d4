/**
 * The Gatescope report: what the engine returns, the CLI writes and the views read.
 * Documented in docs/report-schema.md. Bump SCHEMA_VERSION on any incompatible change.
 *
 * Naming: one name for one thing across code, report, UI and docs (see ../shared spec):
 * `unchanged` is the M1 share of bit-identical (bf16) or eta-equal entries, a fraction in [0, 1].
 */

export const SCHEMA_VERSION = 2;

export type ModuleKind = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down' | 'embed' | 'norm' | 'head' | 'other';

export const MODULE_KINDS: readonly ModuleKind[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'embed', 'norm', 'head', 'other'];

/** Settings that change numbers; part of every cache key. */
export interface AnalysisSettings {
  /** M1 relative tolerance for non-bf16 float tensors. */
  eta: number;
  /** Top-k for M5, M7, M8 (capped at min(m, n) per tensor). */
  k: number;
  /** Top-k of the spectrum used for NSS (M6); the full spectrum is used where a matrix is small enough. */
  kSpectrum: number;
  /** Fraction for the principal and low-magnitude masks (M7). */
  alpha: number;
  /** Oversampling and power iterations of the randomized SVD. */
  oversample: number;
  powerIterations: number;
  /** Seed of the randomized SVD's test matrix: results are reproducible. */
  seed: number;
}

export const DEFAULT_SETTINGS: AnalysisSettings = {
  eta: 1e-3,
  k: 64,
  kSpectrum: 256,
  alpha: 0.5,
  oversample: 10,
  powerIterations: 4,
  seed: 1234,
};

/** Per-row / per-column changed ratios (M4), block-averaged when a side is long. */
export interface LineRatios {
  /** Number of rows (or columns) of the tensor. */
  length: number;
  /** How many consecutive rows (columns) each value averages; 1 = exact per-row values. */
  bin: number;
  values: number[];
}

export interface TensorDiff {
  name: string;
  module: ModuleKind;
  layer: number | null;
  shape: number[];
  dtype: string;
  numel: number;
  /**
   * M1: share of entries unchanged (bf16: bit-identical, +0 == -0; other floats: |dw| <= eta max(|w0|,|w1|)).
   * Excludes non-finite entries; null when no entry is finite (see `unchangedUnavailable`).
   */
  unchanged: number | null;
  /** Why `unchanged` (and `unchangedLegacyAbs`) is null: the tensor has no entries, or every entry is NaN or Inf on one side. */
  unchangedUnavailable?: string;
  changed: number;
  /** Entries where either side is NaN or Inf: a defect of the checkpoint, counted apart. */
  nonFinite: number;
  /** Legacy comparison (Mukherjee et al.): share with |dw| <= 1e-5. Not the spec's M1. Null with `unchanged`. */
  unchangedLegacyAbs: number | null;
  /** ||dW||_F / ||W0||_F (null when ||W0||_F == 0). */
  relUpdateNorm: number | null;
  updateNormFro: number;
  baseNormFro: number;
  maxAbsUpdate: number;
  /** Median over changed entries of |dw| / ulp_bf16(w0); null when nothing changed. */
  medianUpdateUlps: number | null;
  /** M4, 2-D tensors only. */
  rowChangedRatio?: LineRatios;
  colChangedRatio?: LineRatios;
  /** Gate III probe: present when the checkpoint tensor is fp32/f64 and the base is a float tensor. */
  hiddenByPrecision?: number;
  /** Spectral measurements (M5-M8), present when the spectral pass ran and applies to this tensor. */
  spectral?: TensorSpectral;
  /** Why a spectral measurement was skipped for this tensor. */
  spectralSkipped?: string;
  /** Per-tensor regime verdict, present with the spectral pass. */
  verdict?: Verdict;
  /**
   * A weight a LoRA adapter updates: its rank and scale, and the exact norms of the update scale * B @ A
   * from the factors (before the merge rounds it; the diff pass's norms are of the merged weight).
   */
  adapter?: TensorAdapter;
}

export interface TensorAdapter {
  rank: number;
  alpha: number;
  /** alpha / rank, or alpha / sqrt(rank) with rsLoRA. */
  scale: number;
  /** ||scale * B @ A||_F and ||scale * B @ A||_2, exact (r x r Gram matrices in float64). */
  updateNormFro: number;
  updateSpectralNorm: number;
  /** updateNormFro / ||W0||_F (null when the base weight is zero). */
  relUpdateNorm: number | null;
}

/**
 * The checkpoint is a LoRA adapter, analysed merged into the base (each targeted weight rounded once to its
 * dtype). The reader's `AdapterOrigin` (formats/checkpoint.ts) is this plus the config's digest.
 */
export interface ReportAdapter {
  /** The adapter's config file. */
  config: string;
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  fanInFanOut: boolean;
  /** Base weights it updates, and full tensors it saves (modules_to_save), by report name. */
  targets: string[];
  saved: string[];
  /** `init_lora_weights` when it names a principal-direction init (pissa, olora, corda): the base given was taken as its residual base. */
  principalInit: string | null;
  /** The base model the adapter names (`base_model_name_or_path`). */
  baseModel: string | null;
}

export interface TensorSpectral {
  k: number;
  /** 'full' when every singular value was computed exactly, 'randomized' for the truncated SVD. */
  svdMethod: 'full' | 'randomized';
  /**
   * The randomized path: both matrices' top values and vectors on one shared subspace, iterated until the
   * top-k subspace settles (src/linalg/shared-subspace.ts). Absent with the full SVD.
   */
  subspace?: {
    /** Columns of the shared basis. */
    basisWidth: number;
    /** The base's subspace came from the cache (no base iterations in this analysis). */
    baseFromCache: boolean;
    /** Subspace iterations on the base and whether they settled (both null when it came from the cache). */
    baseIterations: number | null;
    baseConverged: boolean | null;
    /** Subspace iterations on the checkpoint, started from the base's subspace. */
    checkpointIterations: number;
    /** Estimated remaining distance (||sin Theta||_F) of the checkpoint's top-k subspace from the converged one, and the tolerance. */
    errorEstimate: number;
    tolerance: number;
    /** False when the checkpoint's iteration stopped at its cap before the tolerance (its angles are estimates). */
    converged: boolean;
  };
  /** M5: largest principal angle (degrees) over the left and right top-k subspaces. */
  principalAngleMaxDeg: number;
  principalAnglesLeftDeg: number[];
  principalAnglesRightDeg: number[];
  /** M6: ||sigma(W1) - sigma(W0)||_2 / ||sigma(W0)||_2 over the first `nssCount` values. */
  nss: number;
  nssCount: number;
  nssSpectrum: 'full' | 'top-k';
  sigmaBase: number[];
  sigmaCheckpoint: number[];
  /** M6 on the principal part: ||sigma_1..k(W1) - sigma_1..k(W0)||_2 / ||sigma_1..k(W0)||_2 (exact with the full SVD). */
  nssPrincipal: number;
  /** First-order shifts u_i^T dW v_i of the top-k singular values (the base's singular vectors): exact products, no subtraction of two estimates. */
  principalShiftFirstOrder: number[];
  /** ||principalShiftFirstOrder||_2 / ||sigma_1..k(W0)||_2. */
  nssPrincipalFirstOrder: number;
  /** ||principalShiftFirstOrder||_2 / ||dW||_F: how much of the update moves the principal spectrum (first order). */
  spectralSharePrincipal: number;
  /** The verdict's nulls, simulated at this update's size and storage (docs/verdict.md). */
  nulls: {
    directionBlind: { principalEnergy: number; spectralSharePrincipal: number };
    gradientLike: { principalEnergy: number; spectralSharePrincipal: number };
    /** The share of a stored update of this size that is bf16 rounding residual, and that residual's principal and diagonal energy shares. */
    rounding: { share: number; principalEnergy: number; diagonalEnergy: number };
    matchedBy: 'changed' | 'norm';
  };
  /** ||dW||_2 (largest singular value of the update). */
  updateSpectralNorm: number;
  /** ||sigma(W1)-sigma(W0)||_2 / ||dW||_F in [0, 1] by Mirsky: how much of the update moved the spectrum. */
  spectralShareOfUpdate: number;
  /** M7 overlaps |X and M| / |M| and their random baselines (density of X). */
  overlapPrincipal: number | null;
  overlapPrincipalBaseline: number;
  overlapPrincipalExpectedPrecision: number | null;
  overlapLowMagnitude: number | null;
  overlapLowMagnitudeBaseline: number;
  overlapLowMagnitudeExpectedPrecision: number | null;
  overlapPrincipalNotLow: number | null;
  overlapPrincipalNotLowBaseline: number;
  overlapPrincipalNotLowExpectedPrecision: number | null;
  /** M8: share of ||dW||_F^2 outside the two-sided top-k projection; baseline 1 - k^2/(mn). */
  offPrincipalEnergy: number;
  offPrincipalEnergyBaseline: number;
  offPrincipalEnergyLeft: number;
  offPrincipalEnergyLeftBaseline: number;
  offPrincipalEnergyRight: number;
  offPrincipalEnergyRightBaseline: number;
  /** Stable rank ||W||_F^2 / ||W||_2^2 of base and checkpoint. */
  stableRankBase: number;
  stableRankCheckpoint: number;
  /** Power-law exponent fitted to the tail of the base's empirical spectral density (Hill estimator), WeightWatcher-style. */
  esdAlphaBase: number | null;
  esdAlphaCheckpoint: number | null;
}

export type VerdictLabel = 'off-principal' | 'principal-targeting' | 'inconclusive';

export interface VerdictEvidence {
  measure: string;
  value: number;
  /** The direction-blind null (off-principal below it), or for overlaps what bf16 precision alone explains. */
  baseline: number;
  /** The gradient-like null (principal-targeting above it), for the bracketed measures. */
  baselineGradient?: number;
  /** value / baselineGradient for bracketed measures (median of per-tensor ratios at the run level), value / baseline for overlaps. */
  ratio?: number;
  /** value / baseline for bracketed measures. */
  ratioDirectionBlind?: number;
  /** Which way this measure leans. */
  leans: 'off-principal' | 'principal-targeting' | 'neutral';
  note: string;
}

export interface Verdict {
  label: VerdictLabel;
  /** One line on why: the measures that decided, or why there is no regime ("no update", "non-finite values"). */
  reason?: string;
  evidence: VerdictEvidence[];
  /** Run level: how many analysed weights got each label. */
  tensorLabels?: Record<VerdictLabel, number>;
}

export interface GroupSummary {
  /**
   * Share of unchanged entries over the group's finite entries. A group without a finite entry has no
   * share and is left out of `byModule` / `byLayer` (its tensors carry `unchangedUnavailable`).
   */
  unchanged: number;
  numel: number;
  changed: number;
  nonFinite: number;
  tensors: number;
  relUpdateNorm: number | null;
}

export interface ReportSummary {
  /** M1 over all compared floating-point tensors; null when none of their entries is finite. */
  unchanged: number | null;
  /** M1 over the 2-D weights of linear layers (embeddings and head excluded); null when there is no finite entry in them (or no such weight). */
  unchangedLinear: number | null;
  /** M1 with embeddings and norms excluded; null as above. */
  unchangedNoEmbedNorm: number | null;
  unchangedLegacyAbs: number | null;
  numel: number;
  changed: number;
  nonFinite: number;
  relUpdateNorm: number | null;
  byModule: Partial<Record<ModuleKind, GroupSummary>>;
  /** Keyed by layer index as a string; tensors outside layers are not included. */
  byLayer: Record<string, GroupSummary>;
}

export interface TensorMismatch {
  name: string;
  problem: 'only-in-base' | 'only-in-checkpoint' | 'shape-mismatch' | 'dtype-mismatch' | 'not-float';
  detail: string;
}

/** How the checkpoint's tensors were paired with the base's (docs/report-schema.md). */
export interface TensorPairing {
  /** Wrapper prefix stripped from the checkpoint's names ('_orig_mod.', 'module.', 'base_model.model.', possibly stacked), '' for none. */
  checkpointPrefix: string;
  /** The same for the base's names. */
  basePrefix: string;
  /** Float tensors compared (same name after stripping, same shape, float on both sides). */
  paired: number;
  /** Float tensors of the base. At least half of them must pair, or the analysis fails. */
  baseFloatTensors: number;
}

export interface CheckpointReport {
  schemaVersion: number;
  kind: 'gatescope.checkpoint-report';
  tool: { name: 'gatescope'; version: string };
  createdAt: string;
  base: string;
  checkpoint: string;
  step: number | null;
  /** The checkpoint as people name it: its run and step ("rl-kl step 80"). */
  label?: string;
  /** What the reader should know about how the checkpoints were read (e.g. an index beside a model.safetensors: which was used). */
  notes?: string[];
  settings: AnalysisSettings;
  /** 'diff' = M1, M4, Gate I probes; 'full' = diff + spectral (M5-M8) + verdict. */
  passes: 'diff' | 'full';
  device?: string;
  summary: ReportSummary;
  tensors: TensorDiff[];
  mismatches: TensorMismatch[];
  /** How tensors were paired; report names are the base's names. Absent in reports written before it existed. */
  pairing?: TensorPairing;
  /** Run-level regime verdict (full pass only). */
  verdict?: Verdict;
  /** Spectral aggregates over tensors (full pass only). */
  spectralSummary?: SpectralSummary;
  /** Base subspaces of the spectral pass's randomized path: how many came from the cache, how many were computed (and stored when `cached`). */
  baseBases?: { fromCache: number; computed: number; cached: boolean };
  /** Milliseconds of each pass (summed over the shards of a merged report). */
  timings?: { diffMs: number; spectralMs?: number };
  /** A report merged from shards (`gatescope merge`): how many, and each one's duration; `durationMs` is the longest. */
  shards?: { count: number; durationsMs: number[] };
  /** The checkpoint is a LoRA adapter, analysed as its merge into the base. */
  adapter?: ReportAdapter;
  durationMs: number;
}

export interface SpectralSummary {
  tensors: number;
  principalAngleMaxDeg: number;
  principalAngleMedianDeg: number;
  nssMedian: number;
  /** Medians of the principal-part spectral measures (top-k values; first-order shifts). */
  nssPrincipalMedian: number;
  nssPrincipalFirstOrderMedian: number;
  spectralSharePrincipalMedian: number;
  spectralShareOfUpdateMedian: number;
  offPrincipalEnergyMedian: number;
  offPrincipalEnergyBaselineMedian: number;
  /** Pooled over tensors: sum |P and M| / sum |M|, with pooled baselines. */
  overlapPrincipal: number | null;
  overlapPrincipalBaseline: number;
  overlapPrincipalExpectedPrecision: number | null;
  overlapLowMagnitude: number | null;
  overlapLowMagnitudeBaseline: number;
  overlapLowMagnitudeExpectedPrecision: number | null;
}

/** M2/M3 across runs that share a base. */
export interface ConsistencyReport {
  schemaVersion: number;
  kind: 'gatescope.consistency-report';
  tool: { name: 'gatescope'; version: string };
  createdAt: string;
  base: string;
  runs: { label: string; checkpoint: string; density: number }[];
  /** R x R Jaccard of changed masks pooled over compared tensors, and its independent-mask baseline. */
  jaccard: number[][];
  jaccardBaseline: number[][];
  meanOffDiagonal: number;
  meanOffDiagonalBaseline: number;
  byModule: Partial<Record<ModuleKind, { jaccard: number[][]; jaccardBaseline: number[][] }>>;
  tensors: ConsistencyTensor[];
  /** The comparative regime verdict of every pair of runs (docs/verdict.md); present when the spectral pass ran. */
  regime?: RegimeComparison;
  durationMs: number;
}

export interface ConsistencyTensor {
  name: string;
  module: ModuleKind;
  layer: number | null;
  shape: number[];
  densities: number[];
  jaccard: number[][];
  jaccardBaseline: number[][];
  /** M3: consensus map C = mean_r M_r, block-averaged to rows x cols (row-major), 2-D tensors only. */
  consensus?: { rows: number; cols: number; blockRows: number; blockCols: number; values: number[] };
}

/** One measure of the comparative verdict: the ratio a/b per unit of update, with its 95% interval. */
export interface ComparativeEvidence {
  measure: string;
  /** Geometric mean over shared tensors of the per-tensor ratio a/b. */
  ratio: number;
  ciLow: number;
  ciHigh: number;
  /** The label of the run this measure finds more off-principal, or null (interval includes 1, or inside the band). */
  leans: string | null;
  /** Tensors the ratio is taken over. */
  tensors: number;
  /** Whether this measure takes part in moreOffPrincipal (the max principal angle is shown, not counted). */
  votes: boolean;
}

export interface RegimePair {
  a: string;
  b: string;
  /** Median over shared linear weights of ||dW_a||_F / ||dW_b||_F; null when no shared weight has a regime in both. */
  updateSizeRatio: number | null;
  /** a's or b's label, or null: no difference beyond the update size, or the measures disagree (see summary). */
  moreOffPrincipal: string | null;
  evidence: ComparativeEvidence[];
  tensors: number;
  summary: string;
}

/** Per layer, the paper's figures for one run (medians over the layer's linear weights; the angle is the max). */
export interface RegimeRunLayer {
  layer: number;
  principalAngleMaxDeg: number;
  /** Principal-part NSS (first-order shifts of the top-k values). */
  nssPrincipal: number;
  offPrincipalEnergy: number;
  /** Off-principal energy of the gradient-like null at the same size and storage. */
  offPrincipalEnergyNull: number;
  /** Overlap with principal weights over what precision alone explains. */
  overlapPrincipalRatio: number | null;
}

export interface RegimeComparison {
  /** How the intervals were computed. */
  method: string;
  runs: {
    label: string;
    checkpoint: string;
    step: number | null;
    relUpdateNorm: number | null;
    unchangedLinear: number | null;
    verdict: Verdict | null;
    layers: RegimeRunLayer[];
  }[];
  pairs: RegimePair[];
}
