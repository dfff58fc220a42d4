/**
 * The one parser of layer lists ("20,25", "0-3,7"), for the CLI's --layers and the extension's input box:
 * strict (an empty or reversed range is an error, never silently dropped) and bounded before anything is
 * allocated.
 */

/** No model has more layers; a range past it is a typo, refused before it allocates. */
export const MAX_LAYER_INDEX = 100_000;

export class LayerListError extends Error {
  override readonly name = 'LayerListError';
}

/** Sorted, distinct layer indices; throws LayerListError naming the bad part. */
export function parseLayerList(spec: string): number[] {
  const out = new Set<number>();
  for (const part of spec.split(',').map((s) => s.trim())) {
    if (part === '') throw new LayerListError(`empty entry in ${JSON.stringify(spec)}`);
    const m = /^(\d+)(?:\s*-\s*(\d+))?$/.exec(part);
    if (!m) throw new LayerListError(`${JSON.stringify(part)} is not a layer index or a range a-b`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new LayerListError(`empty range ${part}`);
    if (b > MAX_LAYER_INDEX) throw new LayerListError(`${part} goes past layer ${MAX_LAYER_INDEX}; no model has that many layers`);
    for (let l = a; l <= b; l++) out.add(l);
  }
  if (out.size === 0) throw new LayerListError('at least one layer index is needed');
  return [...out].sort((x, y) => x - y);
}
