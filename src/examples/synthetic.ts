/**
 * A deterministic synthetic run: a small Qwen-style bf16 base and an RL-like run of a few checkpoints
 * (fp32 master weights with small Gaussian steps, stored in bf16, so Gate III rounding is real), the
 * last one sharded. Used by tests and as a fallback example; the real trained runs live in examples/.
 */
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { writeSafetensors, float32ToBf16Bytes, type TensorSpec } from '../formats/writer';
import { bytesPerElement } from '../formats/dtype';

export interface SyntheticShape {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
}

export const SMALL_SHAPE: SyntheticShape = { hidden: 64, intermediate: 176, layers: 2, heads: 4, kvHeads: 2, vocab: 128 };

/** mulberry32: small, fast, deterministic. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(rand: () => number): () => number {
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = rand();
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

export function qwenTensorSpecs(s: SyntheticShape): TensorSpec[] {
  const headDim = s.hidden / s.heads;
  const kv = s.kvHeads * headDim;
  const specs: TensorSpec[] = [
    { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [s.vocab, s.hidden] },
    { name: 'model.norm.weight', dtype: 'BF16', shape: [s.hidden] },
    { name: 'lm_head.weight', dtype: 'BF16', shape: [s.vocab, s.hidden] },
  ];
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    specs.push(
      { name: `${p}self_attn.q_proj.weight`, dtype: 'BF16', shape: [s.hidden, s.hidden] },
      { name: `${p}self_attn.q_proj.bias`, dtype: 'BF16', shape: [s.hidden] },
      { name: `${p}self_attn.k_proj.weight`, dtype: 'BF16', shape: [kv, s.hidden] },
      { name: `${p}self_attn.k_proj.bias`, dtype: 'BF16', shape: [kv] },
      { name: `${p}self_attn.v_proj.weight`, dtype: 'BF16', shape: [kv, s.hidden] },
      { name: `${p}self_attn.v_proj.bias`, dtype: 'BF16', shape: [kv] },
      { name: `${p}self_attn.o_proj.weight`, dtype: 'BF16', shape: [s.hidden, s.hidden] },
      { name: `${p}mlp.gate_proj.weight`, dtype: 'BF16', shape: [s.intermediate, s.hidden] },
      { name: `${p}mlp.up_proj.weight`, dtype: 'BF16', shape: [s.intermediate, s.hidden] },
      { name: `${p}mlp.down_proj.weight`, dtype: 'BF16', shape: [s.hidden, s.intermediate] },
      { name: `${p}input_layernorm.weight`, dtype: 'BF16', shape: [s.hidden] },
      { name: `${p}post_attention_layernorm.weight`, dtype: 'BF16', shape: [s.hidden] },
    );
  }
  return specs;
}

export function qwenConfig(s: SyntheticShape, nameOrPath?: string): Record<string, unknown> {
  return {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.hidden / s.heads,
    vocab_size: s.vocab,
    torch_dtype: 'bfloat16',
    ...(nameOrPath ? { _name_or_path: nameOrPath } : {}),
  };
}

function numelOf(spec: TensorSpec): number {
  return spec.shape.reduce((a, b) => a * b, 1);
}

/**
 * Writes `out/base`, and `out/run/checkpoint-{100,200,300}` (the last sharded in two files).
 * Updates follow fp32 master weights: w += lr * N(0,1) * (1 + |row bias|) each "step block"; RL-like:
 * small steps, so most bf16 entries stay bit-identical.
 */
export async function writeSyntheticRun(out: string, opts: { seed?: number; shape?: SyntheticShape; steps?: number[]; lr?: number } = {}): Promise<{ base: string; checkpoints: string[] }> {
  const shape = opts.shape ?? SMALL_SHAPE;
  const steps = opts.steps ?? [100, 200, 300];
  const lr = opts.lr ?? 3e-6;
  const specs = qwenTensorSpecs(shape);
  const g = gaussian(rng(opts.seed ?? 7));
  const master = new Map<string, Float32Array>();
  for (const s of specs) {
    const v = new Float32Array(numelOf(s));
    const isNorm = s.shape.length === 1 && !s.name.endsWith('bias');
    for (let i = 0; i < v.length; i++) v[i] = isNorm ? 1 + 0.05 * g() : 0.02 * g() * (s.name.endsWith('bias') ? 0.5 : 1);
    master.set(s.name, v);
  }
  const base = path.join(out, 'base');
  await fsp.rm(out, { recursive: true, force: true });
  await fsp.mkdir(base, { recursive: true });
  const bytesOf = (spec: TensorSpec): Uint8Array => float32ToBf16Bytes(master.get(spec.name)!);
  await writeSafetensors(path.join(base, 'model.safetensors'), specs, bytesOf, { metadata: { format: 'pt' } });
  await fsp.writeFile(path.join(base, 'config.json'), JSON.stringify(qwenConfig(shape), null, 2));
  const checkpoints: string[] = [];
  let prev = 0;
  for (let si = 0; si < steps.length; si++) {
    const step = steps[si];
    // Advance the master weights by (step - prev) small steps, folded into one Gaussian of the summed variance.
    const scale = lr * Math.sqrt(step - prev);
    prev = step;
    for (const s of specs) {
      const v = master.get(s.name)!;
      const rows = s.shape.length === 2 ? s.shape[0] : 1;
      const cols = v.length / rows;
      for (let r = 0; r < rows; r++) {
        // Some rows move more than others (RL's row-wise stripes in q/k/v).
        const rowGain = (r % 7) === 0 ? 4 : 1;
        for (let c = 0; c < cols; c++) v[r * cols + c] += scale * rowGain * g();
      }
    }
    const dir = path.join(out, 'run', `checkpoint-${step}`);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(qwenConfig(shape, '../../base'), null, 2));
    await fsp.writeFile(path.join(dir, 'trainer_state.json'), JSON.stringify({ global_step: step }, null, 2));
    if (si === steps.length - 1) {
      // Sharded: layers in the first shard, the rest in the second, with an HF index.
      const first = specs.filter((s) => s.name.startsWith('model.layers.'));
      const second = specs.filter((s) => !s.name.startsWith('model.layers.'));
      const files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
      await writeSafetensors(path.join(dir, files[0]), first, bytesOf, { metadata: { format: 'pt' } });
      await writeSafetensors(path.join(dir, files[1]), second, bytesOf, { metadata: { format: 'pt' } });
      const weightMap: Record<string, string> = {};
      for (const s of first) weightMap[s.name] = files[0];
      for (const s of second) weightMap[s.name] = files[1];
      const total = specs.reduce((a, s) => a + numelOf(s) * bytesPerElement(s.dtype), 0);
      await fsp.writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
    } else {
      await writeSafetensors(path.join(dir, 'model.safetensors'), specs, bytesOf, { metadata: { format: 'pt' } });
    }
    checkpoints.push(dir);
  }
  return { base, checkpoints };
}
