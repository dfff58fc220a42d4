/** The runs comparison: the R x R Jaccard matrix of changed masks with its independent-mask baselines (M2). */
import type { CompareData } from '../src/protocol/messages';
import { MODULE_KINDS, type ModuleKind } from '../src/report/schema';
import { pct, sci } from '../src/ui-model/format';
import { post, saveState } from './api';
import { heatColor } from './common';
import { button, clear, h, section, select } from './dom';

let data: CompareData | null = null;
let module: ModuleKind | 'all' = 'all';

export function initCompare(m: ModuleKind | 'all'): void {
  module = m;
}

export function showCompare(app: HTMLElement, d: CompareData): void {
  data = d;
  saveState({ panel: 'compare', base: d.base, module });
  render(app);
}

function render(app: HTMLElement): void {
  const d = data;
  if (!d) return;
  clear(app);
  const r = d.report;
  const mods = MODULE_KINDS.filter((m) => r.byModule[m]);
  if (module !== 'all' && !r.byModule[module]) module = 'all';
  const m = module === 'all' ? { jaccard: r.jaccard, jaccardBaseline: r.jaccardBaseline } : r.byModule[module]!;
  app.append(h('header', { class: 'header' },
    h('h1', {}, 'Runs comparison'),
    h('p', { class: 'muted' }, `base: ${r.base}`)));
  app.append(h('div', { class: 'toolbar' },
    select('Module', [{ value: 'all', text: 'all compared tensors' }, ...mods.map((x) => ({ value: x, text: x }))], module, (v) => {
      module = v as ModuleKind | 'all';
      saveState({ panel: 'compare', base: d.base, module });
      render(app);
    }),
    h('span', { class: 'spacer' }),
    button('Compare again...', () => post({ type: 'compareRuns' }), true)));

  const R = r.runs.length;
  const grid = h('div', { class: 'heatmap jaccard', role: 'grid', 'aria-label': 'Jaccard of changed masks' });
  grid.style.gridTemplateColumns = `auto repeat(${R}, minmax(6em, 1fr))`;
  grid.append(h('div', { class: 'hm-corner' }, ''));
  for (const run of r.runs) grid.append(h('div', { class: 'hm-col', role: 'columnheader', title: run.checkpoint }, run.label));
  for (let i = 0; i < R; i++) {
    grid.append(h('div', { class: 'hm-row', role: 'rowheader', title: r.runs[i].checkpoint }, r.runs[i].label));
    for (let j = 0; j < R; j++) {
      const jv = m.jaccard[i]?.[j];
      const bv = m.jaccardBaseline[i]?.[j];
      const cell = h('div', { class: 'hm-cell', role: 'gridcell', title: `J = ${sci(jv, 3)}, independent masks would give ${sci(bv, 3)}` },
        h('div', {}, i === j ? '1' : sci(jv, 3)),
        i === j ? null : h('div', { class: 'small muted' }, `random ${sci(bv, 3)}`));
      if (i !== j && typeof jv === 'number' && typeof bv === 'number') cell.style.backgroundColor = heatColor(bv < 1 ? Math.max(0, (jv - bv) / (1 - bv)) * 2 : 0, '--vscode-charts-green');
      grid.append(cell);
    }
  }
  app.append(section('Jaccard of changed masks (M2)',
    h('p', {}, `Mean off-diagonal ${sci(r.meanOffDiagonal, 3)} against ${sci(r.meanOffDiagonalBaseline, 3)} for independent masks of the same densities. Well above the baseline means the runs change the same weights: the update is steered by the model's geometry, not by the data or the seed.`),
    grid));
  app.append(section('Runs',
    h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', {}, 'label'), h('th', {}, 'changed share'), h('th', {}, 'checkpoint'))),
      h('tbody', {}, ...r.runs.map((x) => h('tr', {}, h('td', {}, x.label), h('td', { class: 'num' }, pct(x.density)), h('td', { class: 'path' }, x.checkpoint)))))));
}
