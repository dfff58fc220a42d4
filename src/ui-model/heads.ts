/**
 * Attention-head geometry from a model's config.json (M4: head boundaries on row/column update ratios).
 * Pure: the host reads the file and passes the parsed object.
 */
import type { ModuleKind } from '../report/schema';

export interface HeadInfo {
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
}

function posInt(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : null;
}

export function headInfoFromConfig(config: unknown): HeadInfo | null {
  if (!config || typeof config !== 'object') return null;
  // Multimodal configs keep the language model under text_config.
  const c =
    (config as Record<string, unknown>).text_config && typeof (config as Record<string, unknown>).text_config === 'object'
      ? ((config as Record<string, unknown>).text_config as Record<string, unknown>)
      : (config as Record<string, unknown>);
  const heads = posInt(c.num_attention_heads);
  if (heads === null) return null;
  const kv = posInt(c.num_key_value_heads) ?? heads;
  const hidden = posInt(c.hidden_size);
  const headDim = posInt(c.head_dim) ?? (hidden !== null && hidden % heads === 0 ? hidden / heads : null);
  if (headDim === null) return null;
  return { numAttentionHeads: heads, numKeyValueHeads: kv, headDim };
}

/**
 * Where heads start along the rows (`axis: 'row'`) or columns of a module's weight, in HF layout
 * (out x in): q/k/v rows are split into heads, o columns are. Empty when the module has no head axis
 * on that side or the sizes do not match the config.
 */
export function headBoundaries(module: ModuleKind, axis: 'row' | 'col', length: number, h: HeadInfo | null): number[] {
  if (!h) return [];
  let heads: number;
  if (axis === 'row' && module === 'q') heads = h.numAttentionHeads;
  else if (axis === 'row' && (module === 'k' || module === 'v')) heads = h.numKeyValueHeads;
  else if (axis === 'col' && module === 'o') heads = h.numAttentionHeads;
  else return [];
  if (heads * h.headDim !== length || heads < 2) return [];
  const out: number[] = [];
  for (let i = 1; i < heads; i++) out.push(i * h.headDim);
  return out;
}
