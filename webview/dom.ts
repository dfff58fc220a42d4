/**
 * Tiny DOM helpers. Text always goes in through textContent (tensor and run names come from checkpoints:
 * they are data, never markup); styles are set through the CSSOM, which the CSP allows.
 */
export type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  append(e, ...children);
  return e;
}

/** A custom element (the vscode-elements controls). */
export function ce(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  append(e, ...children);
  return e;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  }
}

export function clear(e: Element): void {
  while (e.firstChild) e.removeChild(e.firstChild);
}

/** A vscode-single-select with plain-text options. */
export function select(
  label: string,
  options: { value: string; text: string; description?: string }[],
  value: string,
  onChange: (v: string) => void,
): HTMLElement {
  const sel = ce('vscode-single-select', { 'aria-label': label });
  for (const o of options) {
    const opt = ce('vscode-option', { value: o.value });
    if (o.description) opt.setAttribute('description', o.description);
    opt.textContent = o.text;
    if (o.value === value) opt.setAttribute('selected', '');
    sel.appendChild(opt);
  }
  sel.addEventListener('change', () => onChange((sel as HTMLElement & { value: string }).value));
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), sel);
}

export function button(text: string, onClick: () => void, secondary = false): HTMLElement {
  const b = ce('vscode-button', secondary ? { secondary: '' } : {});
  b.textContent = text;
  b.addEventListener('click', onClick);
  return b;
}

export function section(title: string, ...children: Child[]): HTMLElement {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

/** A CSS custom property of the current VS Code theme. */
export function themeColor(name: string, fallback: string): string {
  const v = getComputedStyle(document.body).getPropertyValue(name).trim();
  return v || fallback;
}
