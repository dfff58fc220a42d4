/**
 * A LoRA adapter checkpoint seen as the model it makes: every base tensor, with each targeted weight
 * replaced by `W0 + scale * B @ A` rounded once to the base weight's dtype (what merging the adapter into
 * the base stores) and the adapter's modules_to_save in place of theirs. Nothing is written and no whole
 * update is held: a read of elements [start, start + count) reads the same range of W0 and computes
 * those entries of the update from the factors, so every pass, the cache, the shards and the extension
 * treat an adapter run like any other. The spectral pass takes the update itself from {@link MergedWeight.update}:
 * its Gate II measures are of the exact W0 + scale * B @ A, which the merge's rounding would blur.
 */
import * as path from 'node:path';
import { Checkpoint, type AdapterOrigin, type TensorRef, type TensorSource } from '../formats/checkpoint';
import { SafetensorsFile, type SharedFile, type TensorInfo } from '../formats/safetensors';
import { CheckpointFormatError } from '../formats/errors';
import { bytesPerElement, decodeToFloat64, isFloatDtype } from '../formats/dtype';
import { encodeFromFloat64, isWritableFloat } from '../formats/encode';
import { ADAPTER_WEIGHTS, adapterLayout, adapterWeightsIn, readAdapterConfig, type AdapterConfig, type LoraTarget } from '../formats/adapter-config';
import { transposeToColumnMajor } from '../linalg/qr';
import { addLowRankEntries, type LowRankUpdate } from '../linalg/low-rank';

export interface AdapterOpenOptions {
  /**
   * The base given is the residual base a principal-direction init (PiSSA and kin) trains on, saved
   * beside the adapter: the adapter then applies to it as to any base.
   */
  residualBase?: boolean;
}

/** Opens `ckptPath` for comparison with `base`: a LoRA adapter folder becomes its merged view, anything else opens as it is. */
export async function openCheckpointFor(base: Checkpoint, ckptPath: string, opts: AdapterOpenOptions = {}): Promise<Checkpoint> {
  const weights = await adapterWeightsIn(ckptPath);
  return weights ? openAdapterView(base, ckptPath, weights, opts) : Checkpoint.open(ckptPath);
}

/** A targeted weight's merged entries, computed on read from W0 and the factors. */
export class MergedWeight implements TensorSource {
  private loaded?: Promise<LowRankUpdate>;

  constructor(
    private readonly adapterFile: SafetensorsFile,
    readonly base: TensorRef,
    readonly target: LoraTarget,
    readonly fanInFanOut: boolean,
  ) {}

  get path(): string {
    return this.adapterFile.path;
  }
  get identity(): SafetensorsFile['identity'] {
    return this.adapterFile.identity;
  }
  get headerHash(): string {
    return this.adapterFile.headerHash;
  }

  /** The report's tensor: the base weight's name, shape and dtype. */
  get info(): TensorInfo {
    const i = this.base.info;
    return { name: i.name, dtype: i.dtype, shape: i.shape, numel: i.numel, begin: 0, end: i.numel * bytesPerElement(i.dtype) };
  }

  /** What a read of `count` elements holds besides its result: the base's bytes, the float64 sums and their encoding. */
  readScratchBytes(count: number): number {
    return count * (2 * bytesPerElement(this.base.info.dtype) + 8);
  }

  /**
   * The update as it applies to the stored weight, dW = L R with the scale folded into L: scale * B and A,
   * or with fan_in_fan_out (stored in x out) scale * A^T and B^T. Exact float64 (the factors decoded once),
   * never rounded. Callers share it: it is not to be modified.
   */
  update(): Promise<LowRankUpdate> {
    this.loaded ??= (async () => {
      const { a, b, rank: r, scale } = this.target;
      const read = async (t: TensorInfo): Promise<Float64Array> => {
        const out = new Float64Array(t.numel);
        decodeToFloat64(t.dtype, await this.adapterFile.readElements(t, 0, t.numel), t.numel, out);
        return out;
      };
      const [fa, fb] = [await read(a), await read(b)];
      const [rows, cols] = this.base.info.shape;
      if (!this.fanInFanOut) return { rows, cols, rank: r, left: fb.map((x) => x * scale), right: fa };
      const inDim = a.shape[1];
      const left = new Float64Array(rows * r);
      for (let p = 0; p < r; p++) for (let i = 0; i < rows; i++) left[i * r + p] = scale * fa[p * inDim + i];
      return { rows, cols, rank: r, left, right: transposeToColumnMajor(fb, b.shape[0], r) };
    })();
    return this.loaded;
  }

  async readElements(t: TensorInfo, start: number, count: number, into?: Uint8Array): Promise<Uint8Array> {
    const info = this.base.info;
    if (t.name !== info.name) throw new Error(`${t.name}: not the merged weight ${info.name}`);
    const u = await this.update();
    const raw = await this.base.file.readElements(info, start, count);
    const w = new Float64Array(count);
    decodeToFloat64(info.dtype, raw, count, w);
    addLowRankEntries(u, start, count, w);
    const bytes = encodeFromFloat64(info.dtype, w);
    const buf = into && into.byteLength >= bytes.byteLength ? into.subarray(0, bytes.byteLength) : new Uint8Array(new ArrayBuffer(bytes.byteLength));
    buf.set(bytes);
    return buf;
  }
}

/**
 * What a worker thread needs to build the same adapter view over the same base: the adapter file's open
 * descriptor and parsed header, and the config as read (nothing is opened or read again).
 */
export interface SharedAdapterView {
  dir: string;
  file: SharedFile;
  config: AdapterConfig;
}

/** The adapter views this thread opened, with what built them. */
const views = new WeakMap<Checkpoint, { dir: string; file: SafetensorsFile; config: AdapterConfig }>();

/** Shares an adapter view for a worker thread; the view (and its base) stay open meanwhile. */
export function shareAdapterView(view: Checkpoint): SharedAdapterView {
  const v = views.get(view);
  if (!v) throw new Error(`${view.path}: not an adapter view opened in this thread`);
  return { dir: v.dir, file: v.file.share(), config: v.config };
}

/** A thread's adapter view over `base` (itself borrowed), from what another thread shared. */
export function borrowAdapterView(base: Checkpoint, s: SharedAdapterView): Checkpoint {
  return composeAdapterView(base, s.dir, SafetensorsFile.borrow(s.file), s.config);
}

async function openAdapterView(base: Checkpoint, dir: string, weightsPath: string, opts: AdapterOpenOptions): Promise<Checkpoint> {
  const config = await readAdapterConfig(dir);
  if (config.principalInit && !opts.residualBase) {
    throw new CheckpointFormatError(
      config.file,
      'adapter',
      `init_lora_weights is ${JSON.stringify(config.principalInit)}: this adapter applies to the residual base its init left (W0 minus its top-r part), ` +
        'which the adapter alone cannot rebuild. Give the residual base saved with it as the base and pass --residual-base, ' +
        'or convert it to a plain LoRA adapter as PEFT documents (save_pretrained with path_initial_model_for_weight_conversion)',
    );
  }
  const file = await SafetensorsFile.open(weightsPath);
  try {
    return composeAdapterView(base, dir, file, config);
  } catch (e) {
    await file.close();
    throw e;
  }
}

/** The merged view of an open adapter file over `base`, from its header and config alone. */
function composeAdapterView(base: Checkpoint, dir: string, file: SafetensorsFile, config: AdapterConfig): Checkpoint {
  const weightsPath = file.path;
  const layout = adapterLayout(weightsPath, config, file.tensors.values());
  if (layout.targets.length === 0 && layout.full.length === 0)
    throw new CheckpointFormatError(weightsPath, 'adapter', 'the adapter holds no LoRA factors and no saved modules');
  const tensors = new Map<string, TensorRef>(base.tensors);
  const targets: string[] = [];
  for (const t of layout.targets) {
    const name = `${t.module}.weight`;
    const w0 = base.tensors.get(name);
    if (!w0) throw new CheckpointFormatError(weightsPath, 'adapter', `the adapter updates ${JSON.stringify(name)}, which the base does not have`, t.a.name);
    const [m, n] = w0.info.shape;
    const out = t.b.shape[0];
    const inDim = t.a.shape[1];
    const [wantM, wantN] = config.fanInFanOut ? [inDim, out] : [out, inDim];
    if (w0.info.shape.length !== 2 || m !== wantM || n !== wantN) {
      throw new CheckpointFormatError(
        weightsPath,
        'adapter',
        `lora_B [${t.b.shape.join(', ')}] @ lora_A [${t.a.shape.join(', ')}] is ${out} x ${inDim}${config.fanInFanOut ? ' (fan_in_fan_out: stored transposed)' : ''}, ` +
          `but the base weight ${name} is [${w0.info.shape.join(', ')}]`,
        t.a.name,
      );
    }
    if (!isFloatDtype(t.a.dtype) || !isFloatDtype(t.b.dtype))
      throw new CheckpointFormatError(weightsPath, 'adapter', `LoRA factors are ${t.a.dtype} / ${t.b.dtype}, not floats`, t.a.name);
    if (!isWritableFloat(w0.info.dtype))
      throw new CheckpointFormatError(weightsPath, 'adapter', `the base weight is ${w0.info.dtype}: a merge into it is not supported`, t.a.name);
    const merged = new MergedWeight(file, w0, t, config.fanInFanOut);
    tensors.set(name, { file: merged, info: merged.info });
    targets.push(name);
  }
  const saved: string[] = [];
  for (const { name, info } of layout.full) {
    // PEFT saves modules_to_save under the model's own names; a tensor the base lacks is reported as unpaired.
    tensors.set(name, { file, info });
    saved.push(name);
  }
  const origin: AdapterOrigin = {
    config: config.file,
    configDigest: config.digest,
    r: config.r,
    loraAlpha: config.loraAlpha,
    useRslora: config.useRslora,
    fanInFanOut: config.fanInFanOut,
    targets,
    saved,
    principalInit: config.principalInit,
    baseModel: config.baseModel,
  };
  const dtypes = [...new Set(targets.map((n) => base.tensors.get(n)!.info.dtype))].join('/');
  const note =
    `${path.basename(dir)} is a LoRA adapter (${ADAPTER_WEIGHTS}, r = ${config.r}, alpha = ${config.loraAlpha}${config.useRslora ? ', rsLoRA' : ''}) on ${targets.length} weight${targets.length === 1 ? '' : 's'}: ` +
    `it is analysed merged into the base, W0 + scale * B @ A rounded once to the base's ${dtypes || 'dtype'}, so M1 counts what merging would change; the Gate II measures are of the exact update, from the factors` +
    (config.principalInit ? `; ${config.principalInit} init: the base given is taken as its residual base` : '');
  const view = Checkpoint.compose({ path: dir, dir, files: [file], tensors, config: base.config, notes: [note], adapter: origin });
  views.set(view, { dir, file, config });
  return view;
}
