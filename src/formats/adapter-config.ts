/**
 * PEFT adapter checkpoints: `adapter_model.safetensors` beside `adapter_config.json` (what TRL with a
 * `peft_config`, verl and OpenRLHF with LoRA save). This module reads the config and says which LoRA
 * factors of the file update which base weight, with what rank and scale; it never guesses. What it
 * cannot represent as `dW = scale * B @ A` (DoRA, other PEFT types, embedding LoRA) is refused by name.
 */
import { promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { CheckpointFormatError } from './errors';
import { readSmallRegularFile } from './checkpoint';
import { parseStrictJson, isJsonObject, type JsonValue } from './strict-json';
import type { TensorInfo } from './safetensors-header';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

/** LoRA inits along the base matrix's principal directions: the adapter applies to a residual base. */
const PRINCIPAL_INIT = /^(?:pissa|olora|corda)/i;

export interface AdapterConfig {
  file: string;
  /** sha256 of the config's bytes: the merge depends on every field, so the result cache keys on it. */
  digest: string;
  peftType: 'LORA';
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  fanInFanOut: boolean;
  /** Module-name patterns (PEFT's `rank_pattern` / `alpha_pattern`) overriding r and alpha. */
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  targetModules: string[] | string | null;
  modulesToSave: string[];
  baseModel: string | null;
  /** `init_lora_weights` when it names a principal-direction init (pissa, olora, corda). */
  principalInit: string | null;
}

/** Where a folder holds an adapter (its weights file), else undefined. A loose adapter file is not one: its config is beside it. */
export async function adapterWeightsIn(dir: string): Promise<string | undefined> {
  const p = path.join(dir, ADAPTER_WEIGHTS);
  const st = await fsp.stat(p).catch(() => undefined);
  return st?.isFile() ? p : undefined;
}

function fail(file: string, detail: string, tensor?: string): never {
  throw new CheckpointFormatError(file, 'adapter', detail, tensor);
}

function positiveNumber(file: string, key: string, v: JsonValue | undefined, integer: boolean): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    fail(file, `${key} is ${JSON.stringify(v)}, not a positive ${integer ? 'integer' : 'number'}`);
  }
  return v;
}

function numberMap(file: string, key: string, v: JsonValue | undefined, integer: boolean): Record<string, number> {
  if (v === undefined || v === null) return {};
  if (!isJsonObject(v)) fail(file, `${key} is not an object of module patterns`);
  const out: Record<string, number> = {};
  for (const [k, x] of Object.entries(v)) out[k] = positiveNumber(file, `${key}[${JSON.stringify(k)}]`, x, integer);
  return out;
}

/** Reads and checks `adapter_config.json` of `dir`. */
export async function readAdapterConfig(dir: string): Promise<AdapterConfig> {
  const file = path.join(dir, ADAPTER_CONFIG);
  let text: string;
  let digest: string;
  try {
    const bytes = await readSmallRegularFile(file, 10_000_000);
    digest = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
    text = bytes.toString('utf8');
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    fail(
      file,
      missing
        ? `missing: ${ADAPTER_WEIGHTS} needs its ${ADAPTER_CONFIG} (rank, alpha, target modules) to be read as an update`
        : `cannot read it: ${(e as Error).message}`,
    );
  }
  let json: JsonValue;
  try {
    json = parseStrictJson(text);
  } catch (e) {
    fail(file, `not valid JSON (${(e as Error).message})`);
  }
  if (!isJsonObject(json)) fail(file, 'not a JSON object');
  const peftType = json.peft_type ?? 'LORA';
  if (peftType !== 'LORA') fail(file, `peft_type ${JSON.stringify(peftType)} is not supported yet: only LoRA adapters (dW = scale * B @ A) are read`);
  if (json.use_dora === true)
    fail(file, 'use_dora is true: DoRA rescales each column by a learned magnitude, which is not supported yet (dW is not scale * B @ A)');
  for (const key of ['use_qalora', 'use_bdlora'] as const) if (json[key] === true) fail(file, `${key} is true: not supported yet`);
  const lt = json.lora_bias;
  if (lt === true) fail(file, 'lora_bias is true: a bias update beside B @ A is not supported yet');
  const r = positiveNumber(file, 'r', json.r, true);
  const loraAlpha = json.lora_alpha === undefined ? 8 : positiveNumber(file, 'lora_alpha', json.lora_alpha, false);
  const bool = (key: string): boolean => {
    const v = json[key];
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean') fail(file, `${key} is ${JSON.stringify(v)}, not true or false`);
    return v;
  };
  const tm = json.target_modules;
  let targetModules: string[] | string | null = null;
  if (typeof tm === 'string') targetModules = tm;
  else if (Array.isArray(tm) && tm.every((x) => typeof x === 'string')) targetModules = tm;
  else if (tm !== undefined && tm !== null) fail(file, 'target_modules is not a string or a list of strings');
  const ms = json.modules_to_save;
  if (ms !== undefined && ms !== null && !(Array.isArray(ms) && ms.every((x) => typeof x === 'string'))) fail(file, 'modules_to_save is not a list of strings');
  const init = json.init_lora_weights;
  const base = json.base_model_name_or_path;
  return {
    file,
    digest,
    peftType: 'LORA',
    r,
    loraAlpha,
    useRslora: bool('use_rslora'),
    fanInFanOut: bool('fan_in_fan_out'),
    rankPattern: numberMap(file, 'rank_pattern', json.rank_pattern, true),
    alphaPattern: numberMap(file, 'alpha_pattern', json.alpha_pattern, false),
    targetModules,
    modulesToSave: (ms as string[] | undefined | null) ?? [],
    baseModel: typeof base === 'string' && base.length > 0 ? base : null,
    principalInit: typeof init === 'string' && PRINCIPAL_INIT.test(init) ? init : null,
  };
}

/**
 * PEFT's pattern lookup: the first pattern (in the config's order) that matches the module name as a
 * regular expression at a dot boundary, to its end (`re.match(rf"(.*\.)?{key}$", name)`).
 */
export function patternValue(patterns: Record<string, number>, moduleName: string, fallback: number): number {
  for (const [key, v] of Object.entries(patterns)) {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:.*\\.)?(?:${key})$`);
    } catch {
      if (moduleName === key || moduleName.endsWith(`.${key}`)) return v;
      continue;
    }
    if (re.test(moduleName)) return v;
  }
  return fallback;
}

/** One targeted base weight: its LoRA factors in the adapter file, rank and scale. */
export interface LoraTarget {
  /** The module path under the model, e.g. `model.layers.0.self_attn.q_proj`. */
  module: string;
  a: TensorInfo;
  b: TensorInfo;
  rank: number;
  alpha: number;
  scale: number;
}

/** What the adapter file holds, sorted: LoRA factor pairs and full tensors (modules_to_save), under model names. */
export interface AdapterLayout {
  targets: LoraTarget[];
  /** Full tensors by model name (the `base_model.model.` wrapper removed), compared as any checkpoint tensor. */
  full: { name: string; info: TensorInfo }[];
}

const WRAPPER = 'base_model.model.';
const FACTOR = /^(.*)\.lora_([AB])(?:\.[^.]+)?\.weight$/;

/** Splits the adapter file's tensors into LoRA targets and full tensors, checking ranks against the config. */
export function adapterLayout(weightsFile: string, config: AdapterConfig, tensors: Iterable<TensorInfo>): AdapterLayout {
  const factors = new Map<string, { a?: TensorInfo; b?: TensorInfo }>();
  const full: { name: string; info: TensorInfo }[] = [];
  for (const t of tensors) {
    const name = t.name.startsWith(WRAPPER) ? t.name.slice(WRAPPER.length) : t.name;
    if (/\.lora_(?:embedding_)?magnitude_vector\b|\.lora_magnitude_vector/.test(name))
      fail(weightsFile, 'a DoRA magnitude vector: DoRA is not supported yet (dW is not scale * B @ A)', t.name);
    if (/\.lora_embedding_[AB]\b/.test(name)) fail(weightsFile, 'an embedding LoRA factor: LoRA on embeddings is not supported yet', t.name);
    const m = FACTOR.exec(name);
    if (m) {
      const f = factors.get(m[1]) ?? {};
      if (m[2] === 'A') f.a = t;
      else f.b = t;
      factors.set(m[1], f);
      continue;
    }
    if (/\.lora_[A-Za-z_]+\b/.test(name)) fail(weightsFile, 'a LoRA tensor of a kind Gatescope does not read (not lora_A / lora_B weights)', t.name);
    full.push({ name, info: t });
  }
  const targets: LoraTarget[] = [];
  for (const [module, f] of factors) {
    if (!f.a || !f.b) fail(weightsFile, `lora_${f.a ? 'B' : 'A'} is missing for this module`, `${WRAPPER}${module}.lora_${f.a ? 'A' : 'B'}.weight`);
    const a = f.a;
    const b = f.b;
    if (a.shape.length !== 2 || b.shape.length !== 2)
      fail(weightsFile, `lora_A [${a.shape.join(', ')}] and lora_B [${b.shape.join(', ')}] must be matrices`, a.name);
    const rank = a.shape[0];
    if (b.shape[1] !== rank)
      fail(weightsFile, `lora_A has rank ${rank} (shape [${a.shape.join(', ')}]) but lora_B [${b.shape.join(', ')}] has ${b.shape[1]} columns`, b.name);
    const want = patternValue(config.rankPattern, module, config.r);
    if (rank !== want) fail(weightsFile, `rank ${rank} in the file, but ${path.basename(config.file)} says r = ${want} for this module`, a.name);
    const alpha = patternValue(config.alphaPattern, module, config.loraAlpha);
    const scale = config.useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
    targets.push({ module, a, b, rank, alpha, scale });
  }
  targets.sort((x, y) => x.module.localeCompare(y.module, 'en', { numeric: true }));
  return { targets, full };
}
