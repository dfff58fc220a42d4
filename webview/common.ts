/** Pieces shared by the panels: verdict card, heat colour, number formatting. */
import type { Verdict } from '../src/report/schema';
import { sci } from '../src/ui-model/format';
import { h } from './dom';

/** A theme-aware colour for a position in [0, 1] (CSS color-mix over the editor background). */
export function heatColor(t: number, variable = '--vscode-charts-blue'): string {
  const p = Math.round(8 + 72 * Math.max(0, Math.min(1, t)));
  return `color-mix(in srgb, var(${variable}) ${p}%, var(--vscode-editor-background))`;
}

export function verdictView(v: Verdict | undefined, passes: string): HTMLElement {
  if (!v) {
    return h('p', { class: 'muted' }, passes === 'diff' ? 'No verdict: this report ran the diff pass only (set gatescope.passes to "full" for the spectral pass and the verdict).' : 'No verdict in this report.');
  }
  const badge = h('span', { class: `verdict verdict-${v.label}` }, v.label === 'off-principal' ? 'off-principal (RL-like)' : v.label === 'principal-targeting' ? 'principal-targeting (SFT-like)' : 'inconclusive');
  const rows = v.evidence.map((e) =>
    h('tr', {},
      h('td', {}, e.measure),
      h('td', { class: 'num' }, sci(e.value, 3)),
      h('td', { class: 'num' }, sci(e.baseline, 3)),
      h('td', { class: `leans leans-${e.leans}` }, e.leans),
      h('td', { class: 'note' }, e.note)));
  const table = h('table', { class: 'evidence' },
    h('thead', {}, h('tr', {}, h('th', {}, 'measure'), h('th', {}, 'value'), h('th', {}, 'baseline'), h('th', {}, 'leans'), h('th', {}, 'why'))),
    h('tbody', {}, ...rows));
  return h('div', { class: 'verdict-box' }, h('p', {}, 'Verdict: ', badge), table,
    h('p', { class: 'muted small' }, 'Sparsity alone never decides the verdict: measures are normalised by the update size and compared with their random and precision-only baselines.'));
}

export function stat(label: string, value: string, hint?: string): HTMLElement {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-value' }, value), h('div', { class: 'stat-label' }, label), hint ? h('div', { class: 'stat-hint' }, hint) : null);
}
