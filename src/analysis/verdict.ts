/**
 * The regime verdict: "off-principal" (RL-like), "principal-targeting" (SFT-like) or "inconclusive".
 * Documented in docs/verdict.md. Sparsity never decides it (the size trap): every measure used here is
 * normalised by the update's size and compared with the value an isotropic (direction-blind) update of the
 * same size would give, or with what bf16 precision alone explains.
 *
 * Measures (each a ratio observed / reference; 1 = no preference):
 *  - principal energy ratio: share of ||dW||_F^2 inside the two-sided top-k subspace / (k^2 / (m n));
 *  - spectral share ratio: (||sigma(W1) - sigma(W0)||_2 / ||dW||_F) / (1 / sqrt(max(m, n)));
 *  - principal overlap ratio: overlap of the changed mask with principal weights / its precision-only expectation.
 * A measure leans one way when its ratio leaves its neutral band; the label needs at least two measures
 * leaning the same way and none leaning the other way.
 */
import type { TensorSpectral, Verdict, VerdictEvidence } from '../report/schema';

export interface VerdictInput {
  /** 1 - offPrincipalEnergy and its isotropic value k^2/(mn). */
  principalEnergy: number;
  principalEnergyIsotropic: number;
  spectralShare: number;
  spectralShareIsotropic: number;
  overlapPrincipal: number | null;
  overlapPrincipalExpected: number | null;
}

/** Neutral bands, fixed before the rule met any real run. */
export const BANDS = {
  principalEnergy: 1.5,
  spectralShare: 1.5,
  overlapPrincipal: 1.05,
};

function lean(ratio: number, band: number): VerdictEvidence['leans'] {
  if (!Number.isFinite(ratio)) return 'neutral';
  if (ratio > band) return 'principal-targeting';
  if (ratio < 1 / band) return 'off-principal';
  return 'neutral';
}

export function verdictFrom(v: VerdictInput): Verdict {
  const evidence: VerdictEvidence[] = [];
  const pe = v.principalEnergy / v.principalEnergyIsotropic;
  evidence.push({
    measure: 'principal energy ratio',
    value: v.principalEnergy,
    baseline: v.principalEnergyIsotropic,
    leans: lean(pe, BANDS.principalEnergy),
    note: `update energy inside the top-k subspaces is ${fmt(pe)}x an isotropic update's (neutral ${fmt(1 / BANDS.principalEnergy)}-${fmt(BANDS.principalEnergy)}x)`,
  });
  const ss = v.spectralShare / v.spectralShareIsotropic;
  evidence.push({
    measure: 'spectral share ratio',
    value: v.spectralShare,
    baseline: v.spectralShareIsotropic,
    leans: lean(ss, BANDS.spectralShare),
    note: `the update moves the singular values ${fmt(ss)}x as much as an isotropic update of its size (neutral ${fmt(1 / BANDS.spectralShare)}-${fmt(BANDS.spectralShare)}x)`,
  });
  if (v.overlapPrincipal !== null && v.overlapPrincipalExpected !== null && v.overlapPrincipalExpected > 0) {
    const op = v.overlapPrincipal / v.overlapPrincipalExpected;
    evidence.push({
      measure: 'principal overlap ratio',
      value: v.overlapPrincipal,
      baseline: v.overlapPrincipalExpected,
      leans: lean(op, BANDS.overlapPrincipal),
      note: `changed weights hit principal weights ${fmt(op)}x as often as bf16 precision alone explains (neutral ${fmt(1 / BANDS.overlapPrincipal)}-${fmt(BANDS.overlapPrincipal)}x)`,
    });
  }
  const off = evidence.filter((e) => e.leans === 'off-principal').length;
  const on = evidence.filter((e) => e.leans === 'principal-targeting').length;
  const label = off >= 2 && on === 0 ? 'off-principal' : on >= 2 && off === 0 ? 'principal-targeting' : 'inconclusive';
  return { label, evidence };
}

export function verdictInputOf(s: TensorSpectral, m: number, n: number): VerdictInput {
  return {
    principalEnergy: 1 - s.offPrincipalEnergy,
    principalEnergyIsotropic: 1 - s.offPrincipalEnergyBaseline,
    spectralShare: s.spectralShareOfUpdate,
    spectralShareIsotropic: isotropicSpectralShare(m, n, s.nssCount),
    overlapPrincipal: s.overlapPrincipal,
    overlapPrincipalExpected: s.overlapPrincipalExpectedPrecision,
  };
}

/**
 * ||delta sigma|| / ||E||_F for a small isotropic E over the first `count` singular values: each
 * sigma_i moves by about u_i^T E v_i, of variance ||E||_F^2 / (m n), so the share is sqrt(count / (m n)).
 * With the full spectrum (count = min(m, n)) this is 1 / sqrt(max(m, n)).
 */
export function isotropicSpectralShare(m: number, n: number, count: number): number {
  return Math.sqrt(count / (m * n));
}

function fmt(x: number): string {
  return Number.isFinite(x) ? (Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3)) : String(x);
}
