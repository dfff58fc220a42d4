/**
 * The revision of the analysis's numbers. Raised whenever a change makes the same inputs and settings
 * give different measurements, so that results and base subspaces cached by an earlier revision are
 * recomputed, never served.
 *
 * 2: the spectral pass computes both matrices' spectra on one shared subspace (accurate shifts).
 * 3: a LoRA adapter's Gate II measures are of its exact update W0 + scale * B @ A, not of the bf16 merge.
 * 4: the verdict's nulls draw one Gaussian matrix (ziggurat) for both references: their values move within
 *    their sampling noise.
 */
export const ANALYSIS_REVISION = 4;
