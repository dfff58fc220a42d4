/**
 * The CodeLens rules on training configs (verl YAML / Hydra shell, TRL / HF TrainingArguments JSON and
 * Python kwargs, OpenRLHF shell flags, PEFT LoraConfig). Pure: the host turns each LensSpec into a
 * vscode.CodeLens and adds the run state to the output-directory lens.
 */
import { readConfigKeys, syntaxOf, type ConfigKey, type ConfigSyntax } from '../discovery/config-keys';
import { sci } from './format';

export type LensKind = 'output' | 'gate1' | 'gate3-lr' | 'gate3-dtype' | 'lora-init';

export type ConfigFlavour = 'verl' | 'trl' | 'hf-trainer' | 'openrlhf' | 'peft';

export interface LensSpec {
  kind: LensKind;
  /** 0-based position of the key. */
  line: number;
  column: number;
  key: string;
  path: string;
  value: string;
  /** The lens text (short). */
  title: string;
  /** Two sentences that explain it, shown by the lens's command. */
  detail: string;
  severity: 'info' | 'warning';
}

/** Half a bf16 ULP relative to the value: a stored bf16 weight changes only above it (Gate III). */
export const BF16_HALF_ULP_REL = { low: 2 ** -9, high: 2 ** -8 } as const;
/** Typical magnitude of an LLM weight entry, used to turn the relative floor into an absolute one. */
export const TYPICAL_WEIGHT = 0.02;

const MARKERS: { flavour: ConfigFlavour; re: RegExp }[] = [
  { flavour: 'verl', re: /actor_rollout_ref|default_local_dir|\bverl\b|kl_ctrl|kl_loss_coef/ },
  { flavour: 'openrlhf', re: /openrlhf|--init_kl_coef|--save_path|--pretrain\b|--actor_learning_rate/ },
  { flavour: 'peft', re: /LoraConfig|init_lora_weights|\blora_alpha\b|\btarget_modules\b/ },
  { flavour: 'trl', re: /\btrl\b|GRPOConfig|SFTConfig|DPOConfig|PPOConfig|RLOOConfig|num_generations/ },
  { flavour: 'hf-trainer', re: /TrainingArguments|per_device_train_batch_size|gradient_accumulation_steps|"?output_dir"?\s*[:=]|--output_dir/ },
];

/** Which trainer's config this looks like (several at once is common: TRL + PEFT). Empty: not a training config. */
export function detectFlavours(text: string): ConfigFlavour[] {
  const head = text.length > 400_000 ? text.slice(0, 400_000) : text;
  return MARKERS.filter((m) => m.re.test(head)).map((m) => m.flavour);
}

/** `--key value` and `--key=value` flags (OpenRLHF, accelerate/torchrun launchers) in shell scripts. */
export function readShellFlags(text: string): ConfigKey[] {
  const out: ConfigKey[] = [];
  const lines = text.split(/\r?\n/);
  for (let ln = 0; ln < lines.length; ln++) {
    const line = lines[ln];
    if (line.trimStart().startsWith('#')) continue;
    const re = /(?:^|\s)--([A-Za-z_][\w.-]*)(?:(?:=|[ \t]+)(?!--)("[^"]*"|'[^']*'|[^\s\\]+))?/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(line))) {
      const key = m[1].replace(/-/g, '_');
      const raw = m[2] ?? 'true';
      const value = raw.length >= 2 && (raw[0] === '"' || raw[0] === "'") ? raw.slice(1, -1) : raw;
      out.push({ path: key, key, value, line: ln, column: m.index + m[0].indexOf('--') });
    }
  }
  return out;
}

const OUTPUT_KEYS = new Set(['output_dir', 'default_local_dir', 'save_path', 'ckpt_path']);
const KL_KEYS = new Set(['kl_coef', 'kl_loss_coef', 'init_kl_coef', 'beta', 'kl_target', 'target_kl']);
const CLIP_KEYS = new Set(['clip_ratio', 'clip_ratio_low', 'clip_ratio_high', 'epsilon', 'epsilon_high', 'cliprange', 'eps_clip']);
const LR_KEYS = new Set(['learning_rate', 'lr', 'actor_learning_rate']);
const DTYPE_KEYS = new Set(['bf16', 'fp16', 'torch_dtype', 'param_dtype', 'model_dtype', 'mixed_precision', 'bf16_full_eval']);
/** LoRA inits along the base matrix's principal directions. */
const PRINCIPAL_INIT = /^(?:pissa|olora|corda)/i;

function num(v: string): number | null {
  const t = v.trim();
  if (!/^[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?$/i.test(t)) return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
}

function isTruthy(v: string): boolean {
  return /^(?:true|1|yes)$/i.test(v.trim());
}

function isBf16(v: string): boolean {
  return /^(?:bf16|bfloat16|torch\.bfloat16)$/i.test(v.trim());
}

function isFp32(v: string): boolean {
  return /^(?:fp32|float32|torch\.float32|float|32)$/i.test(v.trim());
}

/** Ratio of one Adam step (about lr per entry) to the bf16 floor of a typical weight: [at the high floor, at the low floor]. */
export function lrToFloorRatio(lr: number, typicalWeight = TYPICAL_WEIGHT): { low: number; high: number; floorLow: number; floorHigh: number } {
  const floorLow = BF16_HALF_ULP_REL.low * typicalWeight;
  const floorHigh = BF16_HALF_ULP_REL.high * typicalWeight;
  return { low: lr / floorHigh, high: lr / floorLow, floorLow, floorHigh };
}

function pct3(x: number): string {
  return `${(x * 100).toFixed(3)}%`;
}

function ruleFor(k: ConfigKey): Omit<LensSpec, 'line' | 'column' | 'key' | 'path' | 'value'> | null {
  const key = k.key;
  const lowerPath = k.path.toLowerCase();
  if (OUTPUT_KEYS.has(key) && k.value !== '') {
    return {
      kind: 'output',
      severity: 'info',
      title: 'Gatescope: run not found yet',
      detail:
        'Checkpoints saved here are found by Gatescope and analysed against their base model as they appear. Open the run dashboard to see, per layer and module, what the training did to the weights.',
    };
  }
  if (KL_KEYS.has(key)) {
    // `beta` is TRL's KL coefficient; Adam's betas live under optim / are a pair.
    if (key === 'beta' && (num(k.value) === null || /optim/.test(lowerPath))) return null;
    const v = num(k.value);
    if (v === null && k.value !== '') return null;
    const off = v === 0;
    return {
      kind: 'gate1',
      severity: 'info',
      title: off ? 'Gate I: no KL penalty, the clip ratio anchors the step' : `Gate I: KL anchor ${sci(v)}, the step norm grows like sqrt(KL)`,
      detail: off
        ? 'Without a KL penalty, PPO/GRPO ratio clipping still keeps each policy step inside a small KL ball, which bounds the weight update (Gate I of the paper). Watch the relative update norm over steps in the dashboard: under the anchor it stays small and grows smoothly.'
        : 'The KL penalty keeps each policy step inside a small KL ball, and through the Fisher metric that bounds the weight step: ||dW||_F <= sqrt(2K/mu) (Gate I of the paper). The dashboard tracks the relative update norm per layer over steps, the weight-level trace of this anchor.',
    };
  }
  if (key === 'use_kl_loss' || key === 'use_kl_in_reward') {
    return {
      kind: 'gate1',
      severity: 'info',
      title: `Gate I: KL ${isTruthy(k.value) ? 'on' : 'off'} (${key})`,
      detail:
        'With or without an explicit KL term, RLVR with ratio clipping keeps each step inside a small KL ball, which bounds the weight update (Gate I). The dashboard shows the relative update norm per layer, the weight-level trace of this anchor.',
    };
  }
  if (CLIP_KEYS.has(key)) {
    const v = num(k.value);
    if (v === null) return null;
    return {
      kind: 'gate1',
      severity: 'info',
      title: `Gate I: ratio clip ${sci(v)} bounds each policy step`,
      detail:
        'PPO/GRPO ratio clipping keeps each policy step inside a small KL ball even without a KL penalty, and that bounds the weight step (Gate I). The dashboard tracks the relative update norm per layer over steps.',
    };
  }
  if (LR_KEYS.has(key)) {
    const lr = num(k.value);
    if (lr === null || lr <= 0 || lr > 1) return null;
    const r = lrToFloorRatio(lr);
    return {
      kind: 'gate3-lr',
      severity: 'info',
      title: `Gate III: one Adam step ≈ ${sci(lr)} is ${sci(r.low)}–${sci(r.high)}x the bf16 floor of a |w| ≈ ${TYPICAL_WEIGHT} weight`,
      detail: `A weight stored in bf16 changes only when its update exceeds half a bf16 ULP, ${pct3(BF16_HALF_ULP_REL.low)}–${pct3(BF16_HALF_ULP_REL.high)} of its value, i.e. ${sci(r.floorLow)}–${sci(r.floorHigh)} for |w| ≈ ${TYPICAL_WEIGHT}, and an Adam step moves each entry by about the learning rate (${sci(lr)}). Smaller steps are rounded away unless fp32 master weights accumulate them, so sparse RL updates are partly a precision symptom (Gate III), not the mechanism.`,
    };
  }
  if (DTYPE_KEYS.has(key)) {
    const v = k.value;
    const bf16 = key === 'bf16' || key === 'bf16_full_eval' ? isTruthy(v) : isBf16(v);
    if (bf16) {
      return {
        kind: 'gate3-dtype',
        severity: 'info',
        title: `Gate III: bf16 hides updates below ${pct3(BF16_HALF_ULP_REL.low)}–${pct3(BF16_HALF_ULP_REL.high)} of a weight`,
        detail: `A bf16-stored weight only changes when its update exceeds about half a bf16 ULP, a relative change of ${pct3(BF16_HALF_ULP_REL.low)} to ${pct3(BF16_HALF_ULP_REL.high)}, so micro-updates are rounded away. The sparsity the dashboard shows is therefore partly precision (Gate III): compare the overlaps against their precision-only baselines.`,
      };
    }
    if (key !== 'bf16' && key !== 'fp16' && key !== 'bf16_full_eval' && isFp32(v)) {
      return {
        kind: 'gate3-dtype',
        severity: 'info',
        title: 'Gate III: fp32 weights, Gatescope can measure what bf16 would hide',
        detail:
          'With fp32 checkpoints Gatescope reports, per tensor, the share of changed entries whose bf16 rounding equals the base ("hidden by precision"). That share is the part of the update a bf16 store would round away (Gate III).',
      };
    }
    return null;
  }
  if (key === 'init_lora_weights' && PRINCIPAL_INIT.test(k.value.trim())) {
    return {
      kind: 'lora-init',
      severity: 'warning',
      title: `⚠ ${k.value.trim()}: principal-direction LoRA init, no gain for RLVR in the paper`,
      detail:
        'RLVR learns off the principal directions of the pretrained weights, so a LoRA initialised on them (PiSSA and kin) showed no clear gain over plain LoRA and collapsed early at higher learning rates in the paper. Prefer the default LoRA init for RL, or keep the learning rate low. ' +
        "Gatescope analyses such checkpoints saved converted to plain LoRA against the base (PEFT's path_initial_model_for_weight_conversion), or against the residual base saved with them (--residual-base).",
    };
  }
  return null;
}

/** The keys of a config file in any supported syntax, plus `--flag value` options in shell scripts. */
export function configKeysOf(fileName: string, text: string): ConfigKey[] {
  const syntax: ConfigSyntax | undefined = syntaxOf(fileName);
  if (!syntax) return [];
  const keys = readConfigKeys(text, syntax);
  if (syntax === 'shell') keys.push(...readShellFlags(text));
  if (syntax === 'python') keys.push(...callKwargs(keys, text));
  return keys;
}

/**
 * `cfg = GRPOConfig(output_dir="x", ...)`: the Python reader takes the first keyword argument as part of the
 * assignment's value; read the keywords inside such a call value again.
 */
function callKwargs(keys: ConfigKey[], text: string): ConfigKey[] {
  const lines = text.split(/\r?\n/);
  const out: ConfigKey[] = [];
  for (const k of keys) {
    const m = /^[A-Za-z_][\w.]*\(\s*/.exec(k.value);
    if (!m) continue;
    const inner = k.value.slice(m[0].length);
    const line = lines[k.line] ?? '';
    const at = line.indexOf(inner, k.column);
    if (at < 0) continue;
    for (const sub of readConfigKeys(inner, 'python')) out.push({ ...sub, line: k.line, column: at + sub.column });
  }
  return out;
}

/** All lenses of one file; none when the file does not look like a training config. */
export function trainingConfigLenses(fileName: string, text: string): LensSpec[] {
  if (detectFlavours(text).length === 0) return [];
  const out: LensSpec[] = [];
  const seen = new Set<string>();
  for (const k of configKeysOf(fileName, text)) {
    const rule = ruleFor(k);
    if (!rule) continue;
    const id = `${k.line}|${k.column}|${k.key}`;
    if (seen.has(id)) continue;
    seen.add(id);
    out.push({ ...rule, line: k.line, column: k.column, key: k.key, path: k.path, value: k.value });
  }
  return out.sort((a, b) => a.line - b.line || a.column - b.column);
}

/**
 * Where an output-directory value points, relative to the config file's folder (or the workspace for
 * verl's Hydra defaults). Values with unresolved interpolation (`${...}`, `$VAR`) give null.
 */
export function outputDirCandidates(
  value: string,
  configDir: string,
  workspaceDirs: string[],
  join: (a: string, b: string) => string,
  isAbsolute: (p: string) => boolean,
): string[] {
  const v = value.trim();
  if (v === '' || /\$\{|\$[A-Za-z_]/.test(v)) return [];
  if (isAbsolute(v)) return [v];
  return [join(configDir, v), ...workspaceDirs.map((w) => join(w, v))];
}
