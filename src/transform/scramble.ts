/**
 * Geometry scrambling (the paper's Gate II intervention): a copy of a checkpoint in which chosen layers
 * are transformed without changing the function the network computes.
 *
 * - rotate: per KV head h, an orthogonal R_h (d x d, d = head_dim) acts on the value/output pair:
 *   v_h <- R_h^T v_h (rows of v_proj and its bias) and, for every query head j that reads KV head h,
 *   o_proj[:, j] <- o_proj[:, j] R_h (its d columns). Attention mixes value vectors with weights that
 *   sum to one, so the head output is R_h^T times the old one and o_proj's R_h cancels it.
 *   R_h is Haar-random (QR of a seeded Gaussian matrix with the sign fix) or the normalised
 *   Sylvester Hadamard matrix H_d / sqrt(d) (d a power of two).
 * - permute: the KV heads are permuted (pi) and, with them, their groups of query heads; query heads
 *   inside a group (they share K and V) are permuted too (tau). q, k, v rows and biases, o columns and
 *   full-width q/k norms move consistently. RoPE acts within a head, so whole-head moves keep it exact.
 *
 * Grouped-query attention: query heads h*G .. h*G+G-1 read KV head h, G = num_heads / num_kv_heads.
 * With both, new KV head i is old KV head pi(i), rotated by R_i; new query head j is old query head
 * sigma(j) with floor(sigma(j)/G) = pi(floor(j/G)); o_proj[:, new j] = o_proj[:, old sigma(j)] R_floor(j/G).
 *
 * Arithmetic is float64, written back in the tensor's dtype with one rounding (bf16 outputs therefore
 * agree with the original within bf16 rounding; pure permutations move bytes and are exact).
 * The copy is a new folder (never in place), written tensor by tensor: no more than one head block or
 * one chunk of rows is in memory at a time.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Checkpoint, type TensorRef } from '../formats/checkpoint';
import { bytesPerElement, decodeToFloat64, type Dtype } from '../formats/dtype';
import { writeSafetensors, type TensorSpec } from '../formats/writer';
import { classifyModule, layerIndex } from '../core/names';
import { qr } from '../linalg/qr';
import { Rng } from '../linalg/random';
import { VERSION } from '../version';
import { encodeFromFloat64, isWritableFloat } from '../formats/encode';
import { assertNewOutput, checkpointDir, TransformInputError } from './guard';
import { partialPath, removeStalePartials } from '../formats/partial';

export type RotationKind = 'haar' | 'hadamard';

export interface ScrambleOptions {
  /** Layer indices to transform (as in `model.layers.N.`). */
  layers: number[];
  rotate: boolean;
  permute: boolean;
  rotation: RotationKind;
  seed: number;
  /** The new checkpoint folder; must not exist and must not be inside the base's folder. */
  out: string;
  onProgress?: (p: { tensor: string; index: number; total: number }) => void;
  signal?: AbortSignal;
}

export interface AttentionGeometry {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Query heads per KV head. */
  groupSize: number;
}

export interface LayerScramble {
  layer: number;
  /** Attention tensor prefix, e.g. `model.layers.3.self_attn.`. */
  prefix: string;
  /** New KV head i holds old KV head kvPermutation[i] (identity without --permute). */
  kvPermutation: number[];
  /** New query head j holds old query head queryPermutation[j]. */
  queryPermutation: number[];
  /** Row-major d x d rotation of each new KV head (absent without --rotate). */
  rotations?: Float64Array[];
  /** Tensors of this layer that the transform changes. */
  changed: string[];
}

export interface ScrambleSummary {
  kind: 'gatescope.scramble';
  tool: { name: 'gatescope'; version: string };
  createdAt: string;
  base: string;
  out: string;
  modelFile: string;
  layers: number[];
  rotate: boolean;
  permute: boolean;
  rotation: RotationKind | null;
  seed: number;
  attention: AttentionGeometry;
  perLayer: {
    layer: number;
    kvPermutation: number[];
    queryPermutation: number[];
    /** Frobenius distance of each R_h from the identity (0 would mean no rotation). */
    rotationDistanceFromIdentity?: number[];
    changed: string[];
  }[];
  changedTensors: string[];
  tensorsWritten: number;
  bytesWritten: number;
  copiedFiles: string[];
  notes: string[];
}

/** Files copied next to the weights: config, generation config, tokenizer and chat template. */
const COPY_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'vocab.txt',
  'merges.txt',
  'tokenizer.model',
  'spiece.model',
  'chat_template.jinja',
  'chat_template.json',
];

const CHUNK_BYTES = 16 * 1024 * 1024;

function intField(obj: Record<string, unknown> | undefined, key: string): number | undefined {
  const v = obj?.[key];
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
}

/** Heads, KV heads and head_dim from config.json (top level or `text_config`). */
export function attentionGeometry(config: Record<string, unknown> | undefined): AttentionGeometry {
  if (!config) throw new TransformInputError('the base checkpoint has no config.json: the number of heads and the head dimension are needed to scramble');
  const text = config.text_config && typeof config.text_config === 'object' ? (config.text_config as Record<string, unknown>) : undefined;
  const pick = (k: string): number | undefined => intField(config, k) ?? intField(text, k);
  const numHeads = pick('num_attention_heads') ?? pick('n_head');
  if (!numHeads) throw new TransformInputError('config.json has no num_attention_heads');
  const numKvHeads = pick('num_key_value_heads') ?? numHeads;
  const hidden = pick('hidden_size') ?? pick('n_embd');
  const headDim = pick('head_dim') ?? (hidden && hidden % numHeads === 0 ? hidden / numHeads : undefined);
  if (!headDim) throw new TransformInputError('config.json gives neither head_dim nor a hidden_size divisible by num_attention_heads');
  if (numHeads % numKvHeads !== 0) throw new TransformInputError(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  return { numHeads, numKvHeads, headDim, groupSize: numHeads / numKvHeads };
}

/** Row-major d x d normalised Sylvester Hadamard matrix H_d / sqrt(d); d must be a power of two. */
export function hadamard(d: number): Float64Array {
  if (!(d >= 1 && (d & (d - 1)) === 0))
    throw new TransformInputError(`a Hadamard rotation needs head_dim to be a power of two, got ${d} (use the Haar rotation instead)`);
  const H = new Float64Array(d * d);
  const s = 1 / Math.sqrt(d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      // Sylvester: H[i][j] = (-1)^popcount(i & j).
      let x = i & j;
      let parity = 0;
      while (x) {
        parity ^= x & 1;
        x >>>= 1;
      }
      H[i * d + j] = parity ? -s : s;
    }
  }
  return H;
}

/** Row-major d x d Haar-distributed orthogonal matrix: Q of a Gaussian matrix, columns signed by diag(R). */
export function haarOrthogonal(rng: Rng, d: number): Float64Array {
  const G = new Float64Array(d * d);
  rng.fillGaussian(G);
  const { Q, R } = qr(G, d, d);
  for (let c = 0; c < d; c++) {
    if (R[c * d + c] < 0) for (let r = 0; r < d; r++) Q[r * d + c] = -Q[r * d + c];
  }
  return Q;
}

/** Uniform random permutation of 0..n-1 (Fisher-Yates). */
function randomPermutation(rng: Rng, n: number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextU32() % (i + 1);
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

function isIdentity(p: number[]): boolean {
  return p.every((x, i) => x === i);
}

/** A per-layer generator, independent of which other layers are chosen. */
function layerRng(seed: number, layer: number): Rng {
  return new Rng((Math.imul(seed | 0, 0x2545f491) ^ Math.imul(layer + 1, 0x9e3779b1)) | 0);
}

/**
 * The permutations and rotations of one layer. Permutations are redrawn until they move something
 * (the KV permutation when there are 2+ KV heads, the query permutation when there are 2+ heads),
 * so that --permute never silently leaves a layer as it was.
 */
export function planLayer(
  geom: AttentionGeometry,
  layer: number,
  opts: Pick<ScrambleOptions, 'rotate' | 'permute' | 'rotation' | 'seed'>,
): { kvPermutation: number[]; queryPermutation: number[]; rotations?: Float64Array[] } {
  const { numKvHeads: KV, groupSize: G, headDim: d, numHeads: H } = geom;
  const rng = layerRng(opts.seed, layer);
  let kvPermutation = Array.from({ length: KV }, (_, i) => i);
  let queryPermutation = Array.from({ length: H }, (_, i) => i);
  if (opts.permute) {
    for (let attempt = 0; attempt < 1000; attempt++) {
      kvPermutation = randomPermutation(rng, KV);
      const inGroup = Array.from({ length: KV }, () => randomPermutation(rng, G));
      queryPermutation = [];
      for (let i = 0; i < KV; i++) for (let g = 0; g < G; g++) queryPermutation.push(kvPermutation[i] * G + inGroup[i][g]);
      if ((KV < 2 || !isIdentity(kvPermutation)) && (H < 2 || !isIdentity(queryPermutation))) break;
    }
  }
  let rotations: Float64Array[] | undefined;
  if (opts.rotate) {
    rotations = [];
    for (let i = 0; i < KV; i++) rotations.push(opts.rotation === 'hadamard' ? hadamard(d) : haarOrthogonal(rng, d));
  }
  return { kvPermutation, queryPermutation, rotations };
}

type Role = 'q.weight' | 'q.bias' | 'k.weight' | 'k.bias' | 'v.weight' | 'v.bias' | 'o.weight' | 'o.bias' | 'q.norm' | 'k.norm';

interface Job {
  role: Role;
  layer: LayerScramble;
  ref: TensorRef;
}

const NORM_RE = /(?:^|\.)(q|k|query|key)_(?:norm|layernorm|ln)\.weight$/;

/** Finds one layer's attention tensors and checks their shapes against the geometry. */
function layerTensors(ckpt: Checkpoint, geom: AttentionGeometry, layer: number): { prefix: string; roles: Map<string, Role> } {
  const { numHeads: H, numKvHeads: KV, headDim: d } = geom;
  const inLayer = ckpt.tensorNames().filter((n) => layerIndex(n) === layer);
  if (inLayer.length === 0) throw new TransformInputError(`layer ${layer} does not exist in the base checkpoint`);
  const one = (mod: 'q' | 'k' | 'v' | 'o', suffix: 'weight' | 'bias'): string | undefined => {
    const hits = inLayer.filter((n) => classifyModule(n) === mod && n.endsWith(`.${suffix}`));
    if (hits.length > 1)
      throw new TransformInputError(`layer ${layer} has several ${mod} projections (${hits.join(', ')}): only one self-attention per layer is supported`);
    return hits[0];
  };
  const qW = one('q', 'weight');
  const kW = one('k', 'weight');
  const vW = one('v', 'weight');
  const oW = one('o', 'weight');
  if (!qW || !kW || !vW || !oW) {
    throw new TransformInputError(
      `layer ${layer} has no separate q/k/v/o projection weights (fused attention projections such as qkv_proj or c_attn are not supported)`,
    );
  }
  const prefix = qW.slice(0, qW.lastIndexOf('.', qW.length - '.weight'.length - 1) + 1);
  const roles = new Map<string, Role>([
    [qW, 'q.weight'],
    [kW, 'k.weight'],
    [vW, 'v.weight'],
    [oW, 'o.weight'],
  ]);
  for (const [mod, role] of [
    ['q', 'q.bias'],
    ['k', 'k.bias'],
    ['v', 'v.bias'],
    ['o', 'o.bias'],
  ] as const) {
    const b = one(mod, 'bias');
    if (b) roles.set(b, role);
  }
  for (const n of roles.keys()) {
    if (!n.startsWith(prefix)) throw new TransformInputError(`layer ${layer}: ${n} is not under the attention prefix ${prefix}`);
  }
  // Anything else under the attention prefix must be understood, or the transform might not be exact.
  for (const n of inLayer) {
    if (!n.startsWith(prefix) || roles.has(n)) continue;
    const m = NORM_RE.exec(n);
    if (m) {
      roles.set(n, m[1].startsWith('q') ? 'q.norm' : 'k.norm');
      continue;
    }
    throw new TransformInputError(
      `layer ${layer}: attention tensor ${n} is not understood (only q/k/v/o projections, their biases and q/k norms are); scrambling could change the function, refused`,
    );
  }
  const shape = (n: string): number[] => ckpt.tensors.get(n)!.info.shape;
  const expect = (n: string, ok: boolean, want: string): void => {
    if (!ok)
      throw new TransformInputError(`${n} has shape [${shape(n).join(', ')}], expected ${want} for ${H} heads, ${KV} KV heads, head_dim ${d} (config.json)`);
  };
  for (const [n, role] of roles) {
    const s = shape(n);
    switch (role) {
      case 'q.weight':
        expect(n, s.length === 2 && s[0] === H * d, `[${H * d}, hidden]`);
        break;
      case 'k.weight':
      case 'v.weight':
        expect(n, s.length === 2 && s[0] === KV * d, `[${KV * d}, hidden]`);
        break;
      case 'o.weight':
        expect(n, s.length === 2 && s[1] === H * d, `[hidden, ${H * d}]`);
        break;
      case 'q.bias':
        expect(n, s.length === 1 && s[0] === H * d, `[${H * d}]`);
        break;
      case 'k.bias':
      case 'v.bias':
        expect(n, s.length === 1 && s[0] === KV * d, `[${KV * d}]`);
        break;
      case 'o.bias':
        expect(n, s.length === 1, '[hidden]');
        break;
      case 'q.norm':
        expect(n, s.length === 1 && (s[0] === d || s[0] === H * d), `[${d}] or [${H * d}]`);
        break;
      case 'k.norm':
        expect(n, s.length === 1 && (s[0] === d || s[0] === KV * d), `[${d}] or [${KV * d}]`);
        break;
    }
  }
  return { prefix, roles };
}

/** Whether a role's tensor changes under the chosen transforms. */
function changes(role: Role, shape: number[], geom: AttentionGeometry, rotate: boolean, permute: boolean): boolean {
  switch (role) {
    case 'q.weight':
    case 'q.bias':
    case 'k.weight':
    case 'k.bias':
      return permute;
    case 'v.weight':
    case 'v.bias':
    case 'o.weight':
      return permute || rotate;
    case 'q.norm':
    case 'k.norm':
      return permute && shape[0] !== geom.headDim;
    case 'o.bias':
      return false;
  }
}

/** Streams a tensor's bytes unchanged, in bounded chunks. */
async function* copyTensor(ref: TensorRef): AsyncGenerator<Uint8Array> {
  const { info, file } = ref;
  const esize = bytesPerElement(info.dtype);
  const per = Math.max(1, Math.floor(CHUNK_BYTES / esize));
  for (let start = 0; start < info.numel; start += per) {
    yield await file.readElements(info, start, Math.min(per, info.numel - start));
  }
}

/** Row blocks (heads) in a new order: new block b = old block perm[b]; exact byte moves. */
async function* permuteBlocks(ref: TensorRef, perm: number[]): AsyncGenerator<Uint8Array> {
  const blockElems = ref.info.numel / perm.length;
  for (const src of perm) {
    for (let off = 0; off < blockElems;) {
      const count = Math.min(blockElems - off, Math.max(1, Math.floor(CHUNK_BYTES / bytesPerElement(ref.info.dtype))));
      yield await ref.file.readElements(ref.info, src * blockElems + off, count);
      off += count;
    }
  }
}

function requireWritable(ref: TensorRef): Dtype {
  const dt = ref.info.dtype;
  if (!isWritableFloat(dt)) throw new TransformInputError(`${ref.info.name} is ${dt}: rotations can only be written back as F64, F32, BF16 or F16`);
  return dt;
}

/** v_proj rows / bias: new KV block i = R_i^T (old block kvPermutation[i]). */
async function* rotateValueBlocks(ref: TensorRef, L: LayerScramble, d: number): AsyncGenerator<Uint8Array> {
  const dt = requireWritable(ref);
  const R = L.rotations!;
  const KV = L.kvPermutation.length;
  const cols = ref.info.numel / (KV * d);
  const old = new Float64Array(d * cols);
  const out = new Float64Array(d * cols);
  for (let i = 0; i < KV; i++) {
    const bytes = await ref.file.readElements(ref.info, L.kvPermutation[i] * d * cols, d * cols);
    decodeToFloat64(dt, bytes, d * cols, old);
    const Ri = R[i];
    out.fill(0);
    for (let a = 0; a < d; a++) {
      // out[a, :] = sum_b R[b][a] old[b, :]
      const oa = a * cols;
      for (let b = 0; b < d; b++) {
        const r = Ri[b * d + a];
        if (r === 0) continue;
        const ob = b * cols;
        for (let c = 0; c < cols; c++) out[oa + c] += r * old[ob + c];
      }
    }
    yield encodeFromFloat64(dt, out);
  }
}

/** o_proj columns: new head j's d columns = (old columns of head queryPermutation[j]) R_floor(j/G), row by row. */
async function* transformOutputColumns(ref: TensorRef, L: LayerScramble, geom: AttentionGeometry): AsyncGenerator<Uint8Array> {
  const { headDim: d, numHeads: H, groupSize: G } = geom;
  const [rows, cols] = ref.info.shape;
  const dt = ref.info.dtype;
  const esize = bytesPerElement(dt);
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / (cols * 8)));
  const R = L.rotations;
  if (R) requireWritable(ref);
  for (let r0 = 0; r0 < rows; r0 += rowsPerChunk) {
    const nr = Math.min(rowsPerChunk, rows - r0);
    const bytes = await ref.file.readElements(ref.info, r0 * cols, nr * cols);
    if (!R) {
      // Pure permutation: move the bytes of each head's column block.
      const out = new Uint8Array(bytes.length);
      const blk = d * esize;
      for (let r = 0; r < nr; r++) {
        const base = r * cols * esize;
        for (let j = 0; j < H; j++) out.set(bytes.subarray(base + L.queryPermutation[j] * blk, base + (L.queryPermutation[j] + 1) * blk), base + j * blk);
      }
      yield out;
      continue;
    }
    const old = new Float64Array(nr * cols);
    decodeToFloat64(dt, bytes, nr * cols, old);
    const out = new Float64Array(nr * cols);
    for (let r = 0; r < nr; r++) {
      const base = r * cols;
      for (let j = 0; j < H; j++) {
        const Rj = R[Math.floor(j / G)];
        const src = base + L.queryPermutation[j] * d;
        const dst = base + j * d;
        for (let a = 0; a < d; a++) {
          const s = old[src + a];
          if (s === 0) continue;
          const ra = a * d;
          for (let c = 0; c < d; c++) out[dst + c] += s * Rj[ra + c];
        }
      }
    }
    yield encodeFromFloat64(dt, out);
  }
}

function produce(job: Job, geom: AttentionGeometry, opts: ScrambleOptions): AsyncIterable<Uint8Array> {
  const { role, layer: L, ref } = job;
  switch (role) {
    case 'q.weight':
    case 'q.bias':
    case 'q.norm':
      return permuteBlocks(ref, L.queryPermutation);
    case 'k.weight':
    case 'k.bias':
    case 'k.norm':
      return permuteBlocks(ref, L.kvPermutation);
    case 'v.weight':
    case 'v.bias':
      return opts.rotate ? rotateValueBlocks(ref, L, geom.headDim) : permuteBlocks(ref, L.kvPermutation);
    case 'o.weight':
      return transformOutputColumns(ref, L, geom);
    case 'o.bias':
      return copyTensor(ref);
  }
}

function frobeniusFromIdentity(R: Float64Array, d: number): number {
  let s = 0;
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) s += (R[i * d + j] - (i === j ? 1 : 0)) ** 2;
  return Math.sqrt(s);
}

function checkOptions(opts: ScrambleOptions): void {
  if (!opts.rotate && !opts.permute) throw new TransformInputError('nothing to do: ask for --rotate, --hadamard and/or --permute');
  if (!Array.isArray(opts.layers) || opts.layers.length === 0) throw new TransformInputError('no layers given (e.g. --layers 20,25)');
  for (const l of opts.layers) if (!Number.isInteger(l) || l < 0) throw new TransformInputError(`layer ${String(l)} is not a non-negative integer`);
  if (!Number.isInteger(opts.seed)) throw new TransformInputError(`seed ${String(opts.seed)} is not an integer`);
  if (opts.rotation !== 'haar' && opts.rotation !== 'hadamard')
    throw new TransformInputError(`rotation must be haar or hadamard, got ${String(opts.rotation)}`);
}

/**
 * Writes a scrambled copy of `basePath` to the new folder `opts.out` (model.safetensors, the config and
 * tokenizer files, SCRAMBLE.json) and returns what was done. The folder appears only when complete.
 */
export async function scrambleCheckpoint(basePath: string, opts: ScrambleOptions): Promise<ScrambleSummary> {
  checkOptions(opts);
  const layers = [...new Set(opts.layers)].sort((a, b) => a - b);
  const baseDir = await checkpointDir(basePath);
  const out = path.resolve(opts.out);
  await assertNewOutput(opts.out, baseDir, 'the scrambled checkpoint');
  const ckpt = await Checkpoint.open(basePath);
  const tmp = partialPath(out);
  try {
    const geom = attentionGeometry(ckpt.config);
    const jobs = new Map<string, Job>();
    const plans: LayerScramble[] = [];
    for (const layer of layers) {
      const { prefix, roles } = layerTensors(ckpt, geom, layer);
      const plan = planLayer(geom, layer, opts);
      const L: LayerScramble = { layer, prefix, ...plan, changed: [] };
      for (const [name, role] of roles) {
        const ref = ckpt.tensors.get(name)!;
        if (!changes(role, ref.info.shape, geom, opts.rotate, opts.permute)) continue;
        // Refuse before writing anything when a rotated tensor's dtype cannot hold the result.
        if (opts.rotate && (role === 'v.weight' || role === 'v.bias' || role === 'o.weight')) requireWritable(ref);
        jobs.set(name, { role, layer: L, ref });
        L.changed.push(name);
      }
      L.changed.sort();
      plans.push(L);
    }

    const createdAt = new Date().toISOString();
    const notes = [
      'Function-preserving: the scrambled layers compute the same outputs (up to the rounding of the stored dtype).',
      'Rotations: new v_proj block i = R_i^T (old block kvPermutation[i]); o_proj[:, new head j] = o_proj[:, old head queryPermutation[j]] R_floor(j/groupSize).',
      opts.rotation === 'hadamard'
        ? 'R_i = H_d / sqrt(d) (Sylvester Hadamard) for every KV head.'
        : 'R_i Haar-random: Q of a Gaussian d x d matrix (columns signed by diag(R)), seeded per layer from the seed.',
    ];
    const summary: ScrambleSummary = {
      kind: 'gatescope.scramble',
      tool: { name: 'gatescope', version: VERSION },
      createdAt,
      base: path.resolve(basePath),
      out,
      modelFile: 'model.safetensors',
      layers,
      rotate: opts.rotate,
      permute: opts.permute,
      rotation: opts.rotate ? opts.rotation : null,
      seed: opts.seed,
      attention: geom,
      perLayer: plans.map((L) => ({
        layer: L.layer,
        kvPermutation: L.kvPermutation,
        queryPermutation: L.queryPermutation,
        ...(L.rotations ? { rotationDistanceFromIdentity: L.rotations.map((R) => Number(frobeniusFromIdentity(R, geom.headDim).toFixed(6))) } : {}),
        changed: L.changed,
      })),
      changedTensors: plans.flatMap((L) => L.changed).sort(),
      tensorsWritten: 0,
      bytesWritten: 0,
      copiedFiles: [],
      notes,
    };

    // The header's metadata: the base's (e.g. format: pt) plus a compact record of the transform.
    const metadata: Record<string, string> = { ...(ckpt.files[0]?.metadata ?? {}) };
    metadata.format = metadata.format ?? 'pt';
    metadata['gatescope.scramble'] = JSON.stringify({
      version: VERSION,
      layers,
      rotate: opts.rotate,
      permute: opts.permute,
      rotation: summary.rotation,
      seed: opts.seed,
      perLayer: summary.perLayer.map(({ layer, kvPermutation, queryPermutation }) => ({ layer, kvPermutation, queryPermutation })),
      changed: summary.changedTensors,
    });

    const specs: TensorSpec[] = [...ckpt.tensors.values()].map((r) => ({ name: r.info.name, dtype: r.info.dtype, shape: r.info.shape }));
    await fsp.mkdir(path.dirname(out), { recursive: true });
    await removeStalePartials(path.dirname(out));
    await fsp.mkdir(tmp);
    let index = 0;
    await writeSafetensors(
      path.join(tmp, 'model.safetensors'),
      specs,
      (spec) => {
        opts.signal?.throwIfAborted();
        opts.onProgress?.({ tensor: spec.name, index: ++index, total: specs.length });
        const job = jobs.get(spec.name);
        return job ? produce(job, geom, opts) : copyTensor(ckpt.tensors.get(spec.name)!);
      },
      { metadata },
    );
    await ckpt.assertUnchanged();
    summary.tensorsWritten = specs.length;
    summary.bytesWritten = (await fsp.stat(path.join(tmp, 'model.safetensors'))).size;

    for (const f of COPY_FILES) {
      const src = path.join(ckpt.dir, f);
      const st = await fsp.stat(src).catch(() => undefined);
      if (!st?.isFile()) continue;
      await fsp.copyFile(src, path.join(tmp, f));
      summary.copiedFiles.push(f);
    }
    await fsp.writeFile(path.join(tmp, 'SCRAMBLE.json'), JSON.stringify(summary, null, 2) + '\n');
    if (
      await fsp.lstat(out).then(
        () => true,
        () => false,
      )
    )
      throw new TransformInputError(`refusing to write ${opts.out}: it appeared while the copy was written`);
    await fsp.rename(tmp, out);
    return summary;
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    await ckpt.close();
  }
}
