/**
 * M2 (Jaccard of changed masks across runs from one base, with the independent-mask baseline) and
 * M3 (the consensus map C = mean_r M_r, block-averaged), streamed tensor by tensor in bounded chunks.
 */
import * as path from 'node:path';
import { maskChunk } from './masks';
import { classifyModule, layerIndex } from '../core/names';
import { AnalysisPlan } from './plan';
import { jaccardBaseline } from '../core/stats';
import { SCHEMA_VERSION, type ConsistencyReport, type ConsistencyTensor, type ModuleKind } from '../report/schema';
import { VERSION } from '../version';

export interface ConsistencyOptions {
  eta: number;
  /** Consensus maps are block-averaged to at most this many rows and columns. */
  mapSize?: number;
  chunkElements?: number;
  labels?: string[];
  signal?: AbortSignal;
  onProgress?: (p: { tensor: string; index: number; total: number }) => void;
}

class PairCounts {
  inter: Float64Array;
  dens: Float64Array;
  total = 0;
  constructor(readonly R: number) {
    this.inter = new Float64Array(R * R);
    this.dens = new Float64Array(R);
  }
  addFrom(o: PairCounts): void {
    for (let i = 0; i < this.inter.length; i++) this.inter[i] += o.inter[i];
    for (let i = 0; i < this.R; i++) this.dens[i] += o.dens[i];
    this.total += o.total;
  }
  matrices(): { jaccard: number[][]; jaccardBaseline: number[][] } {
    const R = this.R;
    const jaccard: number[][] = [];
    const base: number[][] = [];
    for (let a = 0; a < R; a++) {
      jaccard.push([]);
      base.push([]);
      for (let b = 0; b < R; b++) {
        const inter = this.inter[a * R + b];
        const union = this.dens[a] + this.dens[b] - inter;
        jaccard[a].push(union > 0 ? inter / union : 0);
        base[a].push(this.total > 0 ? jaccardBaseline(this.dens[a] / this.total, this.dens[b] / this.total) : 0);
      }
    }
    return { jaccard, jaccardBaseline: base };
  }
}

export async function compareRuns(basePath: string, ckptPaths: string[], opts: ConsistencyOptions): Promise<ConsistencyReport> {
  if (ckptPaths.length < 2) throw new Error('compare needs at least two runs');
  const { plans, close } = await AnalysisPlan.openAll(basePath, ckptPaths, 'diff');
  try {
    return await compareRunPlans(plans, opts);
  } finally {
    await close();
  }
}

/**
 * The comparison over plans of one base that the caller opened (the engine keys its cache, guards memory
 * and runs each run's analysis with the same plans). Paired as the diff pairs them (wrapper prefixes
 * stripped, float tensors of equal shape; a run that pairs too little was refused by its plan). Compared:
 * what every run pairs.
 */
export async function compareRunPlans(plans: readonly AnalysisPlan[], opts: ConsistencyOptions): Promise<ConsistencyReport> {
  if (plans.length < 2) throw new Error('compare needs at least two runs');
  const base = plans[0].base;
  if (plans.some((p) => p.base !== base)) throw new Error('compared runs must be planned against one opened base');
  const ckpts = plans.map((p) => p.checkpoint);
  const basePath = base.path;
  const ckptPaths = ckpts.map((c) => c.path);
  const started = Date.now();
  const R = ckpts.length;
  const chunk = opts.chunkElements ?? 1 << 20;
  const mapSize = opts.mapSize ?? 64;
  const refs = plans.map((plan) => new Map(plan.pairs.map((p) => [p.name, p.checkpoint])));
  const names = [...refs[0].keys()].filter((name) => refs.every((m) => m.has(name)));
  const all = new PairCounts(R);
  const byModule = new Map<ModuleKind, PairCounts>();
  const tensors: ConsistencyTensor[] = [];
  const masks = Array.from({ length: R }, () => new Uint8Array(chunk));
  const f0 = new Float32Array(chunk);
  const f1 = new Float32Array(chunk);
  for (let ti = 0; ti < names.length; ti++) {
    opts.signal?.throwIfAborted();
    const name = names[ti];
    const a = base.tensors.get(name)!;
    const info = a.info;
    const counts = new PairCounts(R);
    const is2d = info.shape.length === 2;
    const [m, n] = is2d ? info.shape : [1, info.numel];
    const bRows = Math.max(1, Math.ceil(m / mapSize));
    const bCols = Math.max(1, Math.ceil(n / mapSize));
    const mapRows = Math.ceil(m / bRows);
    const mapCols = Math.ceil(n / bCols);
    const cons = is2d ? new Float64Array(mapRows * mapCols) : undefined;
    for (let start = 0; start < info.numel; start += chunk) {
      const count = Math.min(chunk, info.numel - start);
      const b0 = await a.file.readElements(info, start, count);
      for (let r = 0; r < R; r++) {
        const ref = refs[r].get(name)!;
        const b1 = await ref.file.readElements(ref.info, start, count);
        maskChunk(info.dtype, b0, ref.info.dtype, b1, count, opts.eta, masks[r], f0, f1);
      }
      for (let i = 0; i < count; i++) {
        let any = 0;
        for (let r = 0; r < R; r++) any += masks[r][i];
        if (any === 0) continue;
        for (let x = 0; x < R; x++) {
          if (!masks[x][i]) continue;
          counts.dens[x]++;
          for (let y = 0; y < R; y++) if (masks[y][i]) counts.inter[x * R + y]++;
        }
        if (cons) {
          const idx = start + i;
          const row = Math.floor(idx / n);
          const col = idx - row * n;
          cons[Math.floor(row / bRows) * mapCols + Math.floor(col / bCols)] += any;
        }
      }
    }
    counts.total = info.numel;
    all.addFrom(counts);
    const module = classifyModule(name);
    let g = byModule.get(module);
    if (!g) byModule.set(module, (g = new PairCounts(R)));
    g.addFrom(counts);
    const t: ConsistencyTensor = {
      name,
      module,
      layer: layerIndex(name),
      shape: info.shape,
      densities: Array.from(counts.dens, (d) => d / info.numel),
      ...counts.matrices(),
    };
    if (cons) {
      const values: number[] = [];
      for (let br = 0; br < mapRows; br++) {
        for (let bc = 0; bc < mapCols; bc++) {
          const rows = Math.min(bRows, m - br * bRows);
          const cols = Math.min(bCols, n - bc * bCols);
          values.push(Math.round((cons[br * mapCols + bc] / (R * rows * cols)) * 1e4) / 1e4);
        }
      }
      t.consensus = { rows: mapRows, cols: mapCols, blockRows: bRows, blockCols: bCols, values };
    }
    tensors.push(t);
    opts.onProgress?.({ tensor: name, index: ti + 1, total: names.length });
  }
  for (const c of [base, ...ckpts]) await c.assertUnchanged();
  const { jaccard, jaccardBaseline: jb } = all.matrices();
  let off = 0;
  let offBase = 0;
  for (let x = 0; x < R; x++)
    for (let y = 0; y < R; y++)
      if (x !== y) {
        off += jaccard[x][y];
        offBase += jb[x][y];
      }
  const pairs = R * (R - 1);
  return {
    schemaVersion: SCHEMA_VERSION,
    kind: 'gatescope.consistency-report',
    tool: { name: 'gatescope', version: VERSION },
    createdAt: new Date().toISOString(),
    base: path.resolve(basePath),
    runs: ckptPaths.map((p, i) => ({
      label: opts.labels?.[i] ?? path.basename(path.resolve(p)),
      checkpoint: path.resolve(p),
      density: all.total > 0 ? all.dens[i] / all.total : 0,
    })),
    jaccard,
    jaccardBaseline: jb,
    meanOffDiagonal: off / pairs,
    meanOffDiagonalBaseline: offBase / pairs,
    byModule: Object.fromEntries([...byModule].map(([k, v]) => [k, v.matrices()])),
    tensors,
    durationMs: Date.now() - started,
  };
}
