/** Small hand-made reports for the UI model tests (shaped like the engine's output). */
import { DEFAULT_SETTINGS, type CheckpointReport, type TensorDiff, type TensorSpectral } from '../../src/report/schema';

export function spectral(over: Partial<TensorSpectral> = {}): TensorSpectral {
  return {
    k: 8,
    svdMethod: 'full',
    principalAngleMaxDeg: 1.5,
    principalAnglesLeftDeg: [0.1, 1.5],
    principalAnglesRightDeg: [0.2, 1.2],
    nss: 6e-4,
    nssCount: 64,
    nssSpectrum: 'full',
    sigmaBase: [3, 2, 1],
    sigmaCheckpoint: [3.01, 2, 0.99],
    updateSpectralNorm: 0.01,
    nssPrincipal: 5e-4,
    principalShiftFirstOrder: [0.001, -0.0005],
    nssPrincipalFirstOrder: 5e-4,
    spectralSharePrincipal: 0.05,
    nulls: {
      directionBlind: { principalEnergy: 0.02, spectralSharePrincipal: 0.03 },
      gradientLike: { principalEnergy: 0.3, spectralSharePrincipal: 0.1 },
      rounding: { share: 0.3, principalEnergy: 0.02, diagonalEnergy: 0.001 },
      matchedBy: 'changed',
    },
    spectralShareOfUpdate: 0.1,
    overlapPrincipal: 0.45,
    overlapPrincipalBaseline: 0.5,
    overlapPrincipalExpectedPrecision: 0.46,
    overlapLowMagnitude: 0.66,
    overlapLowMagnitudeBaseline: 0.5,
    overlapLowMagnitudeExpectedPrecision: 0.66,
    overlapPrincipalNotLow: 0.2,
    overlapPrincipalNotLowBaseline: 0.3,
    overlapPrincipalNotLowExpectedPrecision: 0.21,
    offPrincipalEnergy: 0.98,
    offPrincipalEnergyBaseline: 0.97,
    offPrincipalEnergyLeft: 0.9,
    offPrincipalEnergyLeftBaseline: 0.88,
    offPrincipalEnergyRight: 0.9,
    offPrincipalEnergyRightBaseline: 0.88,
    stableRankBase: 10,
    stableRankCheckpoint: 10.1,
    esdAlphaBase: null,
    esdAlphaCheckpoint: null,
    ...over,
  };
}

export function tensor(name: string, over: Partial<TensorDiff> = {}): TensorDiff {
  const m = /layers\.(\d+)\.(?:self_attn|mlp)\.(\w+?)_proj\.(weight|bias)/.exec(name);
  const isBias = m?.[3] === 'bias';
  return {
    name,
    module: (m?.[2] ?? 'other') as TensorDiff['module'],
    layer: m ? Number(m[1]) : null,
    shape: isBias ? [64] : [64, 32],
    dtype: 'BF16',
    numel: isBias ? 64 : 2048,
    unchanged: 0.5,
    changed: isBias ? 32 : 1024,
    nonFinite: 0,
    unchangedLegacyAbs: 0.2,
    relUpdateNorm: 0.005,
    updateNormFro: 0.05,
    baseNormFro: 10,
    maxAbsUpdate: 0.001,
    medianUpdateUlps: 1.2,
    ...(isBias
      ? {}
      : {
          rowChangedRatio: { length: 64, bin: 1, values: new Array(64).fill(0.5) },
          colChangedRatio: { length: 32, bin: 1, values: new Array(32).fill(0.5) },
          spectral: spectral(),
        }),
    ...over,
  };
}

export function report(step: number | null, tensors: TensorDiff[], over: Partial<CheckpointReport> = {}): CheckpointReport {
  return {
    schemaVersion: 2,
    kind: 'gatescope.checkpoint-report',
    tool: { name: 'gatescope', version: '0.1.0' },
    createdAt: '2025-01-01T00:00:00Z',
    base: '/runs/base',
    checkpoint: `/runs/a/checkpoint-${step}`,
    step,
    settings: DEFAULT_SETTINGS,
    passes: 'full',
    summary: {
      unchanged: 0.541,
      unchangedLinear: 0.53,
      unchangedNoEmbedNorm: 0.53,
      unchangedLegacyAbs: 0.2,
      numel: 1000,
      changed: 459,
      nonFinite: 0,
      relUpdateNorm: 0.004,
      byModule: { q: { unchanged: 0.5, numel: 100, changed: 50, nonFinite: 0, tensors: 2, relUpdateNorm: 0.01 } },
      byLayer: {},
    },
    tensors,
    mismatches: [],
    durationMs: 10,
    verdict: { label: 'off-principal', evidence: [] },
    ...over,
  };
}
