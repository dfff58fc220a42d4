/**
 * The runs comparison: the comparative regime verdict of every pair (per unit of update, with 95%
 * intervals), the runs side by side per layer (the paper's figures, one colour per run), and the R x R
 * Jaccard matrix of changed masks with its independent-mask baselines (M2).
 */
import type { CompareData } from '../src/protocol/messages';
import { MODULE_KINDS, type ModuleKind } from '../src/report/schema';
import { pct, sci } from '../src/ui-model/format';
import { post, saveState } from './api';
import { heatColor } from './common';
import { button, clear, h, section, select } from './dom';
import { chart, destroyCharts, palette } from './charts';
import type { RegimeComparison, RegimeRunLayer } from '../src/report/schema';

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
  destroyCharts();
  clear(app);
  const r = d.report;
  const mods = MODULE_KINDS.filter((m) => r.byModule[m]);
  if (module !== 'all' && !r.byModule[module]) module = 'all';
  const m = module === 'all' ? { jaccard: r.jaccard, jaccardBaseline: r.jaccardBaseline } : r.byModule[module]!;
  app.append(h('header', { class: 'header' }, h('h1', {}, 'Runs comparison'), h('p', { class: 'muted' }, `base: ${r.base}`)));
  app.append(
    h(
      'div',
      { class: 'toolbar' },
      select('Module', [{ value: 'all', text: 'all compared tensors' }, ...mods.map((x) => ({ value: x, text: x }))], module, (v) => {
        module = v as ModuleKind | 'all';
        saveState({ panel: 'compare', base: d.base, module });
        render(app);
      }),
      h('span', { class: 'spacer' }),
      button('Compare again...', () => post({ type: 'compareRuns' }), true),
    ),
  );

  if (r.regime) app.append(regimeSection(r.regime));
  else
    app.append(
      section(
        'Comparative regime verdict',
        h('p', { class: 'muted' }, 'This comparison ran without the spectral pass (gatescope.passes is "diff"): only the changed masks are compared.'),
      ),
    );

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
      const cell = h(
        'div',
        { class: 'hm-cell', role: 'gridcell', title: `J = ${sci(jv, 3)}, independent masks would give ${sci(bv, 3)}` },
        h('div', {}, i === j ? '1' : sci(jv, 3)),
        i === j ? null : h('div', { class: 'small muted' }, `random ${sci(bv, 3)}`),
      );
      if (i !== j && typeof jv === 'number' && typeof bv === 'number')
        cell.style.backgroundColor = heatColor(bv < 1 ? Math.max(0, (jv - bv) / (1 - bv)) * 2 : 0, '--vscode-charts-green');
      grid.append(cell);
    }
  }
  app.append(
    section(
      'Jaccard of changed masks (M2)',
      h(
        'p',
        {},
        `Mean off-diagonal ${sci(r.meanOffDiagonal, 3)} against ${sci(r.meanOffDiagonalBaseline, 3)} for independent masks of the same densities. Well above the baseline means the runs change the same weights: the update is steered by the model's geometry, not by the data or the seed.`,
      ),
      grid,
    ),
  );
  app.append(
    section(
      'Runs',
      h(
        'table',
        { class: 'grid' },
        h('thead', {}, h('tr', {}, h('th', {}, 'label'), h('th', {}, 'changed share'), h('th', {}, 'checkpoint'))),
        h(
          'tbody',
          {},
          ...r.runs.map((x) => h('tr', {}, h('td', {}, x.label), h('td', { class: 'num' }, pct(x.density)), h('td', { class: 'path' }, x.checkpoint))),
        ),
      ),
    ),
  );
}

function regimeSection(g: RegimeComparison): HTMLElement {
  const colours = palette();
  const colourOf = (label: string): string => colours[g.runs.findIndex((x) => x.label === label) % colours.length];
  const pairs = g.pairs.map((pr) =>
    h(
      'div',
      { class: 'verdict-box' },
      h(
        'p',
        {},
        h('b', {}, `${pr.a} vs ${pr.b}: `),
        pr.moreOffPrincipal
          ? h('span', { class: 'verdict verdict-off-principal' }, `${pr.moreOffPrincipal} more off-principal`)
          : h('span', { class: 'verdict verdict-inconclusive' }, 'neither'),
        ` ${pr.summary}`,
      ),
      h(
        'table',
        { class: 'evidence' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', {}, 'measure, per unit of update'),
            h('th', {}, `ratio ${pr.a} / ${pr.b}`),
            h('th', {}, '95% interval'),
            h('th', {}, 'more off-principal'),
          ),
        ),
        h(
          'tbody',
          {},
          ...pr.evidence.map((e) =>
            h(
              'tr',
              {},
              h('td', {}, e.measure),
              h('td', { class: 'num' }, sci(e.ratio, 3)),
              h('td', { class: 'num' }, `${sci(e.ciLow, 3)} - ${sci(e.ciHigh, 3)}`),
              h('td', {}, `${e.leans ?? 'neither'}${e.votes ? '' : ' (shown, not counted)'}`),
            ),
          ),
        ),
      ),
      h(
        'p',
        { class: 'muted small' },
        `Update size ratio (median ||dW|| ${pr.a} / ${pr.b}): ${sci(pr.updateSizeRatio, 3)} over ${pr.tensors} shared linear weights.`,
      ),
    ),
  );
  const runs = h(
    'table',
    { class: 'grid' },
    h(
      'thead',
      {},
      h('tr', {}, h('th', {}, 'run'), h('th', {}, 'step'), h('th', {}, 'unchanged, linear'), h('th', {}, '||dW|| / ||W0||'), h('th', {}, 'single-run verdict')),
    ),
    h(
      'tbody',
      {},
      ...g.runs.map((x) =>
        h(
          'tr',
          {},
          h('td', {}, swatch(colourOf(x.label)), ` ${x.label}`),
          h('td', { class: 'num' }, x.step === null ? '-' : String(x.step)),
          h('td', { class: 'num' }, pct(x.unchangedLinear)),
          h('td', { class: 'num' }, sci(x.relUpdateNorm)),
          h('td', { title: x.verdict?.reason ?? '' }, x.verdict ? `${x.verdict.label}${x.verdict.reason ? `: ${x.verdict.reason}` : ''}` : '-'),
        ),
      ),
    ),
  );
  const layers = [...new Set(g.runs.flatMap((x) => x.layers.map((l) => l.layer)))].sort((a, b) => a - b);
  const perLayer = (title: string, axis: string, pick: (l: RegimeRunLayer) => number | null, nullPick?: (l: RegimeRunLayer) => number | null): HTMLElement =>
    chart(title, {
      type: 'line',
      data: {
        labels: layers.map(String),
        datasets: g.runs.flatMap((x) => {
          const at = (f: (l: RegimeRunLayer) => number | null): (number | null)[] =>
            layers.map((l) => {
              const v = x.layers.find((y) => y.layer === l);
              return v ? f(v) : null;
            });
          const c = colourOf(x.label);
          const main = { label: x.label, data: at(pick), borderColor: c, backgroundColor: c };
          return nullPick
            ? [main, { label: `${x.label}: gradient-like null`, data: at(nullPick), borderColor: c, backgroundColor: c, borderDash: [4, 4], pointRadius: 0 }]
            : [main];
        }),
      },
      options: { scales: { x: { title: { display: true, text: 'layer' } }, y: { title: { display: true, text: axis } } } },
    });
  return section(
    'Comparative regime verdict',
    h(
      'p',
      {},
      'Which run learns more off the principal directions, per unit of update, paired tensor by tensor over the linear weights the runs share. A smaller update alone is no evidence (the size trap): "neither" with a size ratio is a result.',
    ),
    ...pairs,
    h('p', { class: 'muted small' }, g.method),
    runs,
    h('h3', {}, 'Per layer, one colour per run'),
    h(
      'div',
      { class: 'charts' },
      perLayer('Max principal angle per layer', 'max principal angle (deg, M5)', (l) => l.principalAngleMaxDeg),
      perLayer('Principal-part NSS per layer', 'principal-part NSS (first order, M6)', (l) => l.nssPrincipal),
      perLayer(
        'Off-principal energy per layer',
        'off-principal energy (M8; dashed: gradient-like null)',
        (l) => l.offPrincipalEnergy,
        (l) => l.offPrincipalEnergyNull,
      ),
      perLayer('Principal overlap against precision per layer', 'overlap with P / precision alone (M7)', (l) => l.overlapPrincipalRatio),
    ),
  );
}

/** A colour chip; set through the CSSOM, which the webview's style-src policy allows (style attributes it does not). */
function swatch(colour: string): HTMLElement {
  const e = h('span', { class: 'swatch', 'aria-hidden': 'true' });
  e.style.backgroundColor = colour;
  return e;
}
