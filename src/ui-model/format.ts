/**
 * Number formatting shared by the tree, the CodeLens and the webviews. Browser-safe: no Node imports
 * (the webview bundle includes it), no vscode.
 */

export function pct(x: number | null | undefined, digits = 1): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '-' : `${(x * 100).toFixed(digits)}%`;
}

export function sci(x: number | null | undefined, digits = 2): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  if (x === 0) return '0';
  return Math.abs(x) >= 0.01 && Math.abs(x) < 1000 ? x.toFixed(digits + 1).replace(/\.?0+$/, '') : x.toExponential(digits);
}

export function deg(x: number | null | undefined, digits = 2): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '-' : `${x.toFixed(digits)}°`;
}

/** The last path segment, for either separator (the webview has no `path`). */
export function baseName(p: string): string {
  const parts = p.split(/[\\/]+/).filter((s) => s.length > 0);
  return parts.length ? parts[parts.length - 1] : p;
}

/** `model.layers.12.self_attn.q_proj.weight` -> `self_attn.q_proj.weight` (the layer is shown by the parent). */
export function shortTensorName(name: string): string {
  const m = /(?:^|\.)(?:layers|h|blocks|layer)\.\d+\.(.+)$/.exec(name);
  return m ? m[1] : name;
}
