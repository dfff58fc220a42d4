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
    return h(
      'p',
      { class: 'muted' },
      passes === 'diff'
        ? 'No verdict: this report ran the diff pass only (set gatescope.passes to "full" for the spectral pass and the verdict).'
        : 'No verdict in this report.',
    );
  }
  const badge = h(
    'span',
    { class: `verdict verdict-${v.label}` },
    v.label === 'off-principal' ? 'off-principal (RL-like)' : v.label === 'principal-targeting' ? 'principal-targeting (SFT-like)' : 'inconclusive',
  );
  const rows = v.evidence.map((e) =>
    h(
      'tr',
      {},
      h('td', {}, e.measure),
      h('td', { class: 'num' }, sci(e.value, 3)),
      h('td', { class: 'num' }, sci(e.baseline, 3)),
      h('td', { class: 'num' }, e.baselineGradient === undefined ? '-' : sci(e.baselineGradient, 3)),
      h('td', { class: `leans leans-${e.leans}` }, e.leans),
      h('td', { class: 'note' }, e.note),
    ),
  );
  const table = h(
    'table',
    { class: 'evidence' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', {}, 'measure'),
        h('th', {}, 'value'),
        h(
          'th',
          { title: 'direction-blind update of the same size and storage, or for overlaps what bf16 precision alone explains' },
          'direction-blind / precision',
        ),
        h('th', { title: "an update that follows the matrix's own spectrum, as a gradient does, at the same size and storage" }, 'gradient-like'),
        h('th', {}, 'leans'),
        h('th', {}, 'why'),
      ),
    ),
    h('tbody', {}, ...rows),
  );
  const counts = v.tensorLabels;
  return h(
    'div',
    { class: 'verdict-box' },
    h('p', {}, 'Verdict: ', badge, v.reason ? h('span', { class: 'verdict-reason' }, ` ${v.reason}`) : null),
    counts
      ? h(
          'p',
          { class: 'muted small' },
          `Per weight: ${counts['off-principal']} off-principal, ${counts['principal-targeting']} principal-targeting, ${counts.inconclusive} inconclusive.`,
        )
      : null,
    table,
    h(
      'p',
      { class: 'muted small' },
      "Sparsity alone never decides the verdict. Each measure is set between two nulls at the update's own size and bf16 storage: a direction-blind update (below it: off-principal) and a gradient-like one (above it: principal-targeting). Real gradient updates, RL and SFT alike, usually fall between them: compare runs from one base to tell them apart.",
    ),
  );
}

export function stat(label: string, value: string, hint?: string): HTMLElement {
  return h(
    'div',
    { class: 'stat' },
    h('div', { class: 'stat-value' }, value),
    h('div', { class: 'stat-label' }, label),
    hint ? h('div', { class: 'stat-hint' }, hint) : null,
  );
}
