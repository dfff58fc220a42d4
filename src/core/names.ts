/**
 * Classifies tensors by module type and layer from their names, for Llama / Qwen / Mistral (and their
 * MoE variants) and GPT-2 style checkpoints. Unknown names are 'other', never dropped.
 */
import type { ModuleKind } from '../report/schema';

const LAYER_RE = /(?:^|\.)(?:layers|h|blocks|layer|decoder\.layers|encoder\.layers)\.(\d+)\./;

const RULES: [RegExp, ModuleKind][] = [
  [/(?:^|\.)(?:q_proj|query|wq)\.(?:weight|bias)$/, 'q'],
  [/(?:^|\.)(?:k_proj|key|wk)\.(?:weight|bias)$/, 'k'],
  [/(?:^|\.)(?:v_proj|value|wv)\.(?:weight|bias)$/, 'v'],
  [/(?:^|\.)(?:o_proj|out_proj|wo|attn\.c_proj|attention\.dense)\.(?:weight|bias)$/, 'o'],
  [/(?:^|\.)(?:gate_proj|w1)\.(?:weight|bias)$/, 'gate'],
  [/(?:^|\.)(?:up_proj|w3|mlp\.c_fc|fc1|dense_h_to_4h)\.(?:weight|bias)$/, 'up'],
  [/(?:^|\.)(?:down_proj|w2|mlp\.c_proj|fc2|dense_4h_to_h)\.(?:weight|bias)$/, 'down'],
  [/(?:^|\.)(?:embed_tokens|wte|wpe|word_embeddings|embed_positions|embeddings?)(?:\.weight)?$/, 'embed'],
  [/(?:^|\.)(?:lm_head|output|embed_out)\.weight$/, 'head'],
  [/(?:norm|layernorm|ln_\d|ln_f|ln|rms_norm)[^.]*\.(?:weight|bias)$/i, 'norm'],
];

export function classifyModule(name: string): ModuleKind {
  for (const [re, kind] of RULES) if (re.test(name)) return kind;
  return 'other';
}

export function layerIndex(name: string): number | null {
  const m = LAYER_RE.exec(name);
  return m ? Number(m[1]) : null;
}

/** A 2-D weight of a linear layer: what `summary.unchangedLinear` and the spectral pass cover. */
export function isLinearWeight(name: string, shape: readonly number[], module: ModuleKind): boolean {
  return shape.length === 2 && module !== 'embed' && module !== 'head' && module !== 'norm' && name.endsWith('weight');
}
