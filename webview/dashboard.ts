/** The run dashboard: layer x module heatmap for a chosen metric, the run over steps, the verdict. */
import type { DashboardData } from '../src/protocol/messages';
import { MODULE_KINDS } from '../src/report/schema';
import { deg, pct, sci } from '../src/ui-model/format';
import { HEATMAP_METRICS, heatmapData, metricInfo, scalePosition, type HeatmapMetric } from '../src/ui-model/heatmap';
import { adapterSummaryView } from '../src/ui-model/adapter';
import { post, saveState } from './api';
import { chart, destroyCharts, palette } from './charts';
import { heatColor, stat, verdictView } from './common';
import { button, clear, h, section, select } from './dom';

let data: DashboardData | null = null;
let metric: HeatmapMetric = 'unchanged';

export function initDashboard(initialMetric: HeatmapMetric): void {
  metric = initialMetric;
}

export function showDashboard(app: HTMLElement, d: DashboardData): void {
  data = d;
  saveState({ panel: 'dashboard', runId: d.runId, checkpoint: d.selected, metric });
  render(app);
}

export function showBusy(text: string | null): void {
  const el = document.getElementById('busy');
  if (el) el.textContent = text ?? '';
}

function format(v: number | null, unit: 'share' | 'number' | 'degrees'): string {
  if (v === null) return '-';
  return unit === 'share' ? pct(v) : unit === 'degrees' ? deg(v, 1) : sci(v);
}

function render(app: HTMLElement): void {
  const d = data;
  if (!d) return;
  destroyCharts();
  clear(app);
  const r = d.report;
  const header = h(
    'header',
    { class: 'header' },
    h('h1', {}, d.runName),
    h('p', { class: 'muted' }, d.base ? `base: ${d.base}` : `no base model: ${d.baseProblem ?? ''}`),
    h('p', { id: 'busy', class: 'busy', 'aria-live': 'polite' }, d.busy ?? ''),
  );
  const ckptOptions = d.checkpoints.map((c) => ({ value: c.path, text: c.label, description: c.description }));
  const toolbar = h(
    'div',
    { class: 'toolbar' },
    ckptOptions.length ? select('Checkpoint', ckptOptions, d.selected ?? '', (v) => post({ type: 'selectCheckpoint', checkpoint: v })) : null,
    select(
      'Heatmap metric',
      HEATMAP_METRICS.map((m) => ({ value: m.id, text: m.label })),
      metric,
      (v) => {
        metric = v as HeatmapMetric;
        saveState({ panel: 'dashboard', runId: d.runId, checkpoint: d.selected, metric });
        render(app);
      },
    ),
    h('span', { class: 'spacer' }),
    r ? button('Export Markdown', () => post({ type: 'export', format: 'md' }), true) : null,
    r ? button('Export HTML', () => post({ type: 'export', format: 'html' }), true) : null,
    r ? button('CSV', () => post({ type: 'export', format: 'csv' }), true) : null,
    r ? button('JSON', () => post({ type: 'export', format: 'json' }), true) : null,
    button('Step to step', () => post({ type: 'openSteps', runId: d.runId }), true),
    button('Compare runs...', () => post({ type: 'compareRuns' }), true),
  );
  app.append(header, toolbar);

  if (!r) {
    const sel = d.checkpoints.find((c) => c.path === d.selected);
    app.append(
      section(
        'Not analysed yet',
        h('p', {}, sel ? `${sel.label}: ${sel.description}` : 'No checkpoint selected.'),
        sel && !sel.analysed && d.base && (sel.state === 'none' || sel.state === 'error' || sel.state === 'cancelled')
          ? button('Analyse against the base', () => post({ type: 'analyze', checkpoint: sel.path }))
          : null,
      ),
    );
    if (d.series.length > 0) app.append(seriesSection(d));
    return;
  }

  const s = r.summary;
  const ss = r.spectralSummary;
  const adapter = adapterSummaryView(r);
  app.append(
    section(
      `${r.step !== null ? `Step ${r.step}` : 'Checkpoint'}: verdict and headline numbers`,
      h(
        'div',
        { class: 'stats' },
        stat('unchanged (all floats)', pct(s.unchanged), 'M1: bit-identical bf16 / eta-equal'),
        stat('unchanged (linear weights)', pct(s.unchangedLinear)),
        stat('relative update norm', sci(s.relUpdateNorm), adapter ? '||dW||_F / ||W0||_F of the merge, all tensors' : '||dW||_F / ||W0||_F'),
        adapter ? stat('adapter update norm', sci(adapter.relUpdateNormMedian), 'median ||scale B A||_F / ||W0||_F, exact') : null,
        ss ? stat('max principal angle', deg(ss.principalAngleMaxDeg), `median ${deg(ss.principalAngleMedianDeg)} (M5)`) : null,
        ss ? stat('off-principal energy', pct(ss.offPrincipalEnergyMedian, 2), `isotropic baseline ${pct(ss.offPrincipalEnergyBaselineMedian, 2)} (M8)`) : null,
        ss
          ? stat(
              'overlap with principal weights',
              pct(ss.overlapPrincipal),
              `random ${pct(ss.overlapPrincipalBaseline)}, precision alone ${pct(ss.overlapPrincipalExpectedPrecision)}`,
            )
          : null,
        s.nonFinite > 0 ? stat('NaN / Inf entries', s.nonFinite.toLocaleString('en-US'), 'a defect of the checkpoint') : null,
      ),
      adapter ? h('p', { class: 'muted adapter-note' }, h('strong', {}, `${adapter.title}. `), adapter.note) : null,
      verdictView(r.verdict, r.passes),
    ),
  );

  app.append(heatmapSection(d));
  if (d.series.length > 0) app.append(seriesSection(d));
  app.append(moduleSection(d));
}

function heatmapSection(d: DashboardData): HTMLElement {
  const r = d.report!;
  const info = metricInfo(metric);
  const hm = heatmapData(r, metric);
  if (hm.layers.length === 0) return section('Layers x modules', h('p', { class: 'muted' }, 'No layered tensors in this checkpoint.'));
  if (info.spectral && hm.min === null) {
    return section(
      'Layers x modules',
      h('p', { class: 'muted' }, `${info.label} needs the spectral pass: this report ran "${r.passes}". Set gatescope.passes to "full".`),
    );
  }
  const grid = h('div', { class: 'heatmap', role: 'grid', 'aria-label': `${info.label} per layer and module` });
  grid.style.gridTemplateColumns = `auto repeat(${hm.modules.length}, minmax(3.2em, 1fr))`;
  grid.append(h('div', { class: 'hm-corner' }, 'layer'));
  for (const m of hm.modules) grid.append(h('div', { class: 'hm-col', role: 'columnheader' }, m));
  hm.layers.forEach((layer, li) => {
    grid.append(h('div', { class: 'hm-row', role: 'rowheader' }, String(layer)));
    hm.modules.forEach((m, mi) => {
      const cell = hm.cells[li * hm.modules.length + mi];
      if (cell.value === null) {
        grid.append(h('div', { class: 'hm-cell empty', role: 'gridcell' }, ''));
        return;
      }
      const b = h(
        'button',
        {
          class: 'hm-cell',
          role: 'gridcell',
          title: `layer ${layer} ${m}: ${format(cell.value, info.unit)}\n${cell.tensors.join('\n')}\nClick for the layer detail`,
        },
        format(cell.value, info.unit),
      );
      b.style.backgroundColor = heatColor(scalePosition(cell.value, hm.min!, hm.max!));
      b.addEventListener('click', () =>
        post({ type: 'openLayer', checkpoint: r.checkpoint, layer, tensor: cell.tensors.find((t) => t.endsWith('weight')) ?? cell.tensors[0] ?? null }),
      );
      grid.append(b);
    });
  });
  const legend = h(
    'div',
    { class: 'legend' },
    h('span', {}, format(hm.min, info.unit)),
    (() => {
      const bar = h('span', { class: 'legend-bar' });
      bar.style.backgroundImage = `linear-gradient(to right, ${heatColor(0)}, ${heatColor(1)})`;
      return bar;
    })(),
    h('span', {}, format(hm.max, info.unit)),
  );
  return section('Layers x modules', h('p', { class: 'muted' }, info.help), legend, grid);
}

function seriesSection(d: DashboardData): HTMLElement {
  const pts = d.series;
  const labels = pts.map((p) => (p.step !== null ? String(p.step) : '?'));
  const [c0, c1, c2] = palette();
  const hasAngles = pts.some((p) => p.principalAngleMaxDeg !== null);
  return section(
    'Over steps',
    h(
      'div',
      { class: 'charts' },
      chart('Unchanged share over steps', {
        type: 'line',
        data: {
          labels,
          datasets: [
            { label: 'unchanged (all)', data: pts.map((p) => p.unchanged * 100), borderColor: c0, backgroundColor: c0 },
            { label: 'unchanged (linear)', data: pts.map((p) => p.unchangedLinear * 100), borderColor: c1, backgroundColor: c1 },
          ],
        },
        options: { scales: { x: { title: { display: true, text: 'step' } }, y: { title: { display: true, text: 'unchanged %' } } } },
      }),
      chart('Relative update norm over steps', {
        type: 'line',
        data: { labels, datasets: [{ label: '||dW|| / ||W0||', data: pts.map((p) => p.relUpdateNorm), borderColor: c2, backgroundColor: c2 }] },
        options: {
          scales: {
            x: { title: { display: true, text: 'step' } },
            y: { type: 'logarithmic', title: { display: true, text: 'relative update norm (Gate I)' } },
          },
        },
      }),
      hasAngles
        ? chart('Max principal angle over steps', {
            type: 'line',
            data: {
              labels,
              datasets: [{ label: 'max principal angle (deg)', data: pts.map((p) => p.principalAngleMaxDeg), borderColor: c1, backgroundColor: c1 }],
            },
            options: { scales: { x: { title: { display: true, text: 'step' } }, y: { beginAtZero: true, title: { display: true, text: 'degrees (M5)' } } } },
          })
        : null,
    ),
  );
}

function moduleSection(d: DashboardData): HTMLElement {
  const s = d.report!.summary;
  const rows = MODULE_KINDS.filter((m) => s.byModule[m]).map((m) => {
    const g = s.byModule[m]!;
    return h(
      'tr',
      {},
      h('td', {}, m),
      h('td', { class: 'num' }, String(g.tensors)),
      h('td', { class: 'num' }, g.numel.toLocaleString('en-US')),
      h('td', { class: 'num' }, pct(g.unchanged)),
      h('td', { class: 'num' }, sci(g.relUpdateNorm)),
    );
  });
  return section(
    'Per module type',
    h(
      'table',
      { class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', {}, 'module'), h('th', {}, 'tensors'), h('th', {}, 'entries'), h('th', {}, 'unchanged'), h('th', {}, 'rel. update'))),
      h('tbody', {}, ...rows),
    ),
  );
}
