/**
 * Masks for geometry-aware sparse RL (spec: "Masks for geometry-aware sparse RL", M7): one U8 tensor
 * (0/1) per 2-D linear weight, with the weight's name and shape, written to a new safetensors file.
 *
 *   principal     P = top alpha of |W0_k|, W0_k the rank-k SVD reconstruction of W0 (LIFT's principal weights)
 *   nonprincipal  not P
 *   low           L = bottom alpha of |W0|
 *   union         L or not P   (the paper's "non-principal or low-magnitude" mask, ~74% of weights at alpha 0.5)
 *
 * Selections are exact: round(alpha * numel) entries per tensor, ties broken by flat index (the same
 * `selectByMagnitude` and the same rank-k reconstruction as the spectral pass). The SVD runs on the
 * compute backend (onnxruntime CPU or CUDA); one tensor is in memory at a time.
 */
import * as path from 'node:path';
import { Checkpoint, type TensorRef } from '../formats/checkpoint';
import { decodeToFloat32, isFloatDtype, type Dtype } from '../formats/dtype';
import { writeSafetensors, type TensorSpec } from '../formats/writer';
import { classifyModule, isLinearWeight, layerIndex } from '../core/names';
import { selectByMagnitude } from '../analysis/masks';
import { FULL_SVD_MAX_MIN_DIM } from '../analysis/spectral';
import { truncatedSvd } from '../linalg/truncated-svd';
import { createBackend, type ComputeBackend, type DeviceSetting } from '../compute/backend';
import { DEFAULT_SETTINGS, type ModuleKind } from '../report/schema';
import { VERSION } from '../version';
import { assertNewOutput, checkpointDir, TransformInputError } from './guard';

export type MaskKind = 'principal' | 'nonprincipal' | 'low' | 'union';
export const MASK_KINDS: readonly MaskKind[] = ['principal', 'nonprincipal', 'low', 'union'];

export interface MaskOptions {
  kind: MaskKind;
  /** Fraction of P and L (0 < alpha < 1). */
  alpha: number;
  /** Rank of the reconstruction for P (capped at min(m, n) per tensor). */
  k: number;
  /** Also embeddings, the output head and other 2-D float tensors (default: linear layers only, as in the paper). */
  allModules?: boolean;
  /** The new .safetensors file; must not exist, not inside the base's folder nor any checkpoint folder. */
  out: string;
  /** Where to run the SVD products when no backend is passed (default auto). */
  device?: DeviceSetting;
  /** A backend to reuse (not disposed here). */
  backend?: ComputeBackend;
  /** Randomized-SVD settings (defaults: the analysis defaults). */
  svd?: { oversample?: number; powerIterations?: number; seed?: number };
  onProgress?: (p: { tensor: string; index: number; total: number }) => void;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

export interface MaskTensorSummary {
  name: string;
  module: ModuleKind;
  layer: number | null;
  shape: number[];
  numel: number;
  /** Entries set to 1. */
  ones: number;
  density: number;
  /** Rank used for P (absent for kind low). */
  k?: number;
  svdMethod?: 'full' | 'randomized';
  /** NaN/Inf entries of W0 (treated as 0). */
  nonFinite: number;
}

export interface MaskGroup {
  tensors: number;
  numel: number;
  ones: number;
  density: number;
}

export interface MaskSummary {
  kind: 'gatescope.mask';
  tool: { name: 'gatescope'; version: string };
  createdAt: string;
  base: string;
  out: string;
  maskKind: MaskKind;
  alpha: number;
  k: number;
  allModules: boolean;
  device: string;
  tensors: MaskTensorSummary[];
  byModule: Partial<Record<ModuleKind, MaskGroup>>;
  numel: number;
  ones: number;
  density: number;
  /** 2-D float tensors left out, and why. */
  skipped: { name: string; reason: string }[];
}

/** Which tensors get a mask; null = included, else why not. */
export function maskApplies(name: string, shape: readonly number[], dtype: Dtype, allModules: boolean): string | null {
  if (shape.length !== 2) return 'not a matrix';
  if (!isFloatDtype(dtype)) return `not a float tensor (${dtype})`;
  const mod = classifyModule(name);
  if (allModules) return null;
  if (!isLinearWeight(name, shape, mod))
    return mod === 'embed' || mod === 'head'
      ? `${mod === 'embed' ? 'embedding' : 'output head'}: excluded as in the paper (--all-modules includes it)`
      : 'not a linear-layer weight';
  return null;
}

/**
 * P of one matrix: the top `count` entries of |W0_k| (rank-k reconstruction), as the spectral pass
 * computes it. `w0` is row-major m x n float32 with finite entries.
 */
export async function principalMask(
  backend: ComputeBackend,
  w0: Float32Array,
  m: number,
  n: number,
  k: number,
  count: number,
  svd: { oversample: number; powerIterations: number; seed: number },
): Promise<{ mask: Uint8Array; k: number; method: 'full' | 'randomized' }> {
  const kk = Math.min(k, m, n);
  const s = await truncatedSvd(backend, { rows: m, cols: n, data: w0 }, kk, { ...svd, fullIfMinDimAtMost: FULL_SVD_MAX_MIN_DIM });
  const US = new Float32Array(m * kk);
  for (let r = 0; r < m; r++) for (let c = 0; c < kk; c++) US[r * kk + c] = s.U[r * s.k + c] * s.S[c];
  const V = new Float32Array(n * kk);
  for (let r = 0; r < n; r++) for (let c = 0; c < kk; c++) V[r * kk + c] = s.V[r * s.k + c];
  const W0k = await backend.matmul({ rows: m, cols: kk, data: US }, { rows: n, cols: kk, data: V }, { transB: true });
  return { mask: selectByMagnitude(W0k.data, count, true), k: kk, method: s.method };
}

/** L of one matrix: the bottom `count` entries of |W0|. */
export function lowMagnitudeMask(w0: Float32Array, count: number): Uint8Array {
  return selectByMagnitude(w0, count, false);
}

/** Combines P and L into the requested kind (a new array except for principal and low). */
export function combineMask(kind: MaskKind, P: Uint8Array | undefined, L: Uint8Array | undefined): Uint8Array {
  switch (kind) {
    case 'principal':
      return P!;
    case 'low':
      return L!;
    case 'nonprincipal':
      return P!.map((x) => x ^ 1);
    case 'union':
      return P!.map((x, i) => (x ^ 1) | L![i]);
  }
}

async function readWeight(ref: TensorRef): Promise<{ w0: Float32Array; nonFinite: number }> {
  const { info, file } = ref;
  const bytes = await file.readElements(info, 0, info.numel);
  const w0 = new Float32Array(info.numel);
  decodeToFloat32(info.dtype, bytes, info.numel, w0);
  let nonFinite = 0;
  for (let i = 0; i < w0.length; i++) {
    if (!Number.isFinite(w0[i])) {
      w0[i] = 0;
      nonFinite++;
    }
  }
  return { w0, nonFinite };
}

function checkOptions(opts: MaskOptions): void {
  if (!MASK_KINDS.includes(opts.kind)) throw new TransformInputError(`mask kind must be one of ${MASK_KINDS.join(', ')}, got ${String(opts.kind)}`);
  if (!(opts.alpha > 0 && opts.alpha < 1)) throw new TransformInputError(`alpha must be in (0, 1), got ${opts.alpha}`);
  if (!Number.isInteger(opts.k) || opts.k < 1) throw new TransformInputError(`k must be a positive integer, got ${opts.k}`);
}

/**
 * Writes the mask file for `basePath` and returns per-tensor and per-module densities.
 * Tensors are processed one at a time while the file is written.
 */
export async function exportMasks(basePath: string, opts: MaskOptions): Promise<MaskSummary> {
  checkOptions(opts);
  const baseDir = await checkpointDir(basePath);
  const out = path.resolve(opts.out);
  await assertNewOutput(opts.out, baseDir, 'the mask file');
  const allModules = opts.allModules ?? false;
  const ckpt = await Checkpoint.open(basePath);
  const needsP = opts.kind !== 'low';
  const needsL = opts.kind === 'low' || opts.kind === 'union';
  let backend = opts.backend;
  const ownBackend = !backend && needsP;
  try {
    const specs: TensorSpec[] = [];
    const skipped: { name: string; reason: string }[] = [];
    for (const { info } of ckpt.tensors.values()) {
      const why = maskApplies(info.name, info.shape, info.dtype, allModules);
      if (why === null) specs.push({ name: info.name, dtype: 'U8', shape: info.shape });
      else if (info.shape.length === 2) skipped.push({ name: info.name, reason: why });
    }
    if (specs.length === 0) throw new TransformInputError(`no ${allModules ? '2-D float' : 'linear-layer'} weights in ${basePath} to mask`);
    if (ownBackend) backend = await createBackend({ device: opts.device ?? 'auto', log: opts.log });
    const svd = {
      oversample: opts.svd?.oversample ?? DEFAULT_SETTINGS.oversample,
      powerIterations: opts.svd?.powerIterations ?? DEFAULT_SETTINGS.powerIterations,
      seed: opts.svd?.seed ?? DEFAULT_SETTINGS.seed,
    };
    const tensors: MaskTensorSummary[] = [];
    let index = 0;
    const metadata: Record<string, string> = {
      format: 'pt',
      'gatescope.mask': JSON.stringify({
        version: VERSION,
        kind: opts.kind,
        alpha: opts.alpha,
        k: opts.k,
        allModules,
        svd,
        definition: definitionOf(opts.kind),
      }),
    };
    await writeSafetensors(
      out,
      specs,
      async function* (spec) {
        opts.signal?.throwIfAborted();
        opts.onProgress?.({ tensor: spec.name, index: ++index, total: specs.length });
        const ref = ckpt.tensors.get(spec.name)!;
        const [m, n] = spec.shape;
        const numel = m * n;
        const { w0, nonFinite } = await readWeight(ref);
        const count = Math.round(opts.alpha * numel);
        const p = needsP ? await principalMask(backend!, w0, m, n, opts.k, count, svd) : undefined;
        const L = needsL ? lowMagnitudeMask(w0, count) : undefined;
        const mask = combineMask(opts.kind, p?.mask, L);
        let ones = 0;
        for (let i = 0; i < numel; i++) ones += mask[i];
        const module = classifyModule(spec.name);
        tensors.push({
          name: spec.name,
          module,
          layer: layerIndex(spec.name),
          shape: spec.shape,
          numel,
          ones,
          density: numel ? ones / numel : 0,
          ...(p ? { k: p.k, svdMethod: p.method } : {}),
          nonFinite,
        });
        yield mask;
      },
      { metadata },
    );
    await ckpt.assertUnchanged();
    const byModule: Partial<Record<ModuleKind, MaskGroup>> = {};
    let totalN = 0;
    let totalOnes = 0;
    for (const t of tensors) {
      const g = (byModule[t.module] ??= { tensors: 0, numel: 0, ones: 0, density: 0 });
      g.tensors++;
      g.numel += t.numel;
      g.ones += t.ones;
      totalN += t.numel;
      totalOnes += t.ones;
    }
    for (const g of Object.values(byModule)) g.density = g.numel ? g.ones / g.numel : 0;
    return {
      kind: 'gatescope.mask',
      tool: { name: 'gatescope', version: VERSION },
      createdAt: new Date().toISOString(),
      base: path.resolve(basePath),
      out,
      maskKind: opts.kind,
      alpha: opts.alpha,
      k: opts.k,
      allModules,
      device: backend?.name ?? 'none (no SVD needed)',
      tensors,
      byModule,
      numel: totalN,
      ones: totalOnes,
      density: totalN ? totalOnes / totalN : 0,
      skipped,
    };
  } finally {
    if (ownBackend && backend) await backend.dispose();
    await ckpt.close();
  }
}

export function definitionOf(kind: MaskKind): string {
  switch (kind) {
    case 'principal':
      return 'P: top alpha of |rank-k reconstruction of W0|';
    case 'nonprincipal':
      return 'not P';
    case 'low':
      return 'L: bottom alpha of |W0|';
    case 'union':
      return 'L or not P';
  }
}
