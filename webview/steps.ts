/**
 * The Step to Step panel: how much of the model each step between consecutive checkpoints changed, set
 * against Gate III's bf16 band at the run's learning rate; the bytes each sync encoding would move; the
 * changed share per module (or layer) and step as one heatmap; the table of every number.
 */
import type { StepsData } from '../src/protocol/messages';
import { pct } from '../src/ui-model/format';
import { scalePosition } from '../src/ui-model/heatmap';
import { PAYLOAD_ENCODINGS, PAYLOAD_LABELS, type StepGrid, type StepsView } from '../src/ui-model/steps';
import { post, saveState } from './api';
import { chart, destroyCharts, palette, withAlpha } from './charts';
import { heatColor, stat } from './common';
import { button, clear, h, section, select } from './dom';

let data: StepsData | null = null;
let grid: 'module' | 'layer' = 'module';

export function initSteps(initialGrid: 'module' | 'layer'): void {
  grid = initialGrid;
}

export function showSteps(app: HTMLElement, d: StepsData): void {
  data = d;
  saveState({ panel: 'steps', runId: d.runId, grid });
  render(app);
}

function render(app: HTMLElement): void {
  const d = data;
  if (!d) return;
  destroyCharts();
  clear(app);
  const r = d.report;
  const v = d.view;
  app.append(
    h(
      'header',
      { class: 'header' },
      h('h1', {}, `${d.runName}: step to step`),
      h('p', { class: 'muted' }, d.base ? `from the base: ${d.base}` : 'no base model: the first step starts at the first checkpoint'),
      h('p', { id: 'busy', class: 'busy', 'aria-live': 'polite' }, d.busy ?? ''),
    ),
  );
  app.append(
    h(
      'div',
      { class: 'toolbar' },
      button(
        d.state === 'running' ? 'Walking...' : d.state === 'done' ? 'Walk again' : 'Walk the run',
        () => post({ type: 'runSteps', askLearningRate: false }),
        true,
      ),
      button('Set learning rate...', () => post({ type: 'runSteps', askLearningRate: true }), true),
      button('Open dashboard', () => post({ type: 'openDashboard', runId: d.runId }), true),
      h('span', { class: 'spacer' }),
      r ? button('Export Markdown', () => post({ type: 'export', format: 'md' }), true) : null,
      r ? button('CSV', () => post({ type: 'export', format: 'csv' }), true) : null,
      r ? button('JSON', () => post({ type: 'export', format: 'json' }), true) : null,
    ),
  );

  if (d.error) app.append(section('The walk failed', h('p', { class: 'steps-error' }, d.error)));
  if (d.newCheckpoints > 0 && d.state === 'done') {
    app.append(
      h(
        'p',
        { class: 'steps-stale', role: 'status' },
        `${d.newCheckpoints} new checkpoint${d.newCheckpoints === 1 ? '' : 's'} since this walk. `,
        button('Walk again', () => post({ type: 'runSteps', askLearningRate: false })),
      ),
    );
  }
  if (!r || !v) {
    if (!d.error)
      app.append(
        section(
          'Step to step',
          h(
            'p',
            { class: 'muted' },
            d.state === 'running' ? 'Reading each checkpoint once, in step order...' : d.state === 'cancelled' ? 'The walk was cancelled.' : 'Not walked yet.',
          ),
        ),
      );
    return;
  }
  app.append(summarySection(d, v));
  app.append(h('div', { class: 'charts' }, changedChart(v), payloadChart(v)));
  app.append(gridSection(d, v));
  app.append(tableSection(v));
  if (r.skipped.length) {
    app.append(section('Left out', h('ul', {}, ...r.skipped.map((s) => h('li', {}, `${s.path}: ${s.state}${s.reason ? ` (${s.reason})` : ''}`)))));
  }
}

function summarySection(d: StepsData, v: StepsView): HTMLElement {
  const last = v.rows[v.rows.length - 1];
  const lr = v.learningRate ?? (d.learningRate !== null ? `${d.learningRate} (given here)` : null);
  return section(
    'Summary',
    h('p', { class: 'steps-headline' }, v.headline),
    h(
      'div',
      { class: 'stats' },
      stat('steps', String(v.rows.length)),
      last ? stat(`changed in ${last.label}`, last.text.changed, 'M1: bit-identical bf16 / eta-equal') : null,
      last ? stat(`XOR+zstd of ${last.label}`, last.text.xorZstd, `dense ${last.text.dense}`) : null,
      last && last.bandLow !== null ? stat('bf16 allows to change', last.text.band, 'lr .. 10 lr (Gate III)') : null,
    ),
    v.noPrediction
      ? h(
          'p',
          { class: 'muted' },
          `No bf16 prediction: ${v.noPrediction.replace(/ \(give one with --lr\)/, '')}.${/learning rate/.test(v.noPrediction) ? ' "Set learning rate..." gives one.' : ''}`,
        )
      : h('p', { class: 'muted small' }, lr ? `Learning rate ${lr}.` : "Learning rates differ between steps: each step's note says where its own came from."),
    h(
      'p',
      { class: 'muted small' },
      "The band: an entry can change only when the optimizer moves it past half a bf16 ULP of its value (|w|/512 to |w|/256). Adam moves an entry by about lr per optimizer step at most (10 lr conservatively), so at most the band's share can change. Far fewer changed entries than the band allows mean the net movement between checkpoints is much smaller than the step count times lr (updates cancel, the schedule is low, or clipping is at work); more than the band means steps larger than 10 lr.",
    ),
  );
}

function changedChart(v: StepsView): HTMLElement {
  const [c0, c1] = palette();
  const labels = v.rows.map((r) => r.label);
  const toPct = (x: number | null): number | null => (x === null ? null : x * 100);
  const hasBand = v.rows.some((r) => r.bandLow !== null);
  return chart('Changed share per step, with the bf16 band', {
    type: 'line',
    data: {
      labels,
      datasets: [
        { label: 'changed (observed)', data: v.rows.map((r) => toPct(r.changed)), borderColor: c0, backgroundColor: c0 },
        ...(hasBand
          ? [
              {
                label: 'bf16 allows at lr',
                data: v.rows.map((r) => toPct(r.bandLow)),
                borderColor: c1,
                backgroundColor: 'transparent',
                borderDash: [4, 3],
                pointRadius: 0,
              },
              {
                label: 'bf16 allows at 10 lr',
                data: v.rows.map((r) => toPct(r.bandHigh)),
                borderColor: c1,
                backgroundColor: withAlpha(c1, 0.18),
                borderDash: [4, 3],
                pointRadius: 0,
                fill: '-1',
              },
            ]
          : []),
      ],
    },
    options: { scales: { x: { title: { display: true, text: 'step' } }, y: { min: 0, max: 100, title: { display: true, text: 'changed %' } } } },
  });
}

function payloadChart(v: StepsView): HTMLElement {
  const colors = palette();
  return chart('Payload of each sync encoding per step', {
    type: 'bar',
    data: {
      labels: v.rows.map((r) => r.label),
      datasets: PAYLOAD_ENCODINGS.map((e, i) => ({
        label: PAYLOAD_LABELS[e],
        data: v.rows.map((r) => {
          const b = r.payload[e];
          return b === null || b <= 0 ? null : b / 2 ** 20;
        }),
        backgroundColor: colors[i % colors.length],
      })),
    },
    options: { scales: { x: { title: { display: true, text: 'step' } }, y: { type: 'logarithmic', title: { display: true, text: 'MiB per step' } } } },
  });
}

function gridSection(d: StepsData, v: StepsView): HTMLElement {
  const g: StepGrid = grid === 'layer' ? v.byLayer : v.byModule;
  const picker = select(
    'Rows',
    [
      { value: 'module', text: 'module type' },
      { value: 'layer', text: 'layer' },
    ],
    grid,
    (x) => {
      grid = x === 'layer' ? 'layer' : 'module';
      saveState({ panel: 'steps', runId: d.runId, grid });
      const app = document.getElementById('app');
      if (app) render(app);
    },
  );
  if (g.rows.length === 0) return section('Changed share per step', picker, h('p', { class: 'muted' }, 'No tensor to group.'));
  const el = h('div', { class: 'heatmap', role: 'grid', 'aria-label': `changed share per ${grid} and step` });
  el.style.gridTemplateColumns = `auto repeat(${g.cols.length}, minmax(4.5em, 1fr))`;
  el.append(h('div', { class: 'hm-corner' }, grid));
  for (const c of g.cols) el.append(h('div', { class: 'hm-col', role: 'columnheader' }, c));
  g.rows.forEach((row, ri) => {
    el.append(h('div', { class: 'hm-row', role: 'rowheader' }, row));
    g.cols.forEach((col, ci) => {
      const value = g.cells[ri * g.cols.length + ci];
      if (value === null) {
        el.append(h('div', { class: 'hm-cell empty', role: 'gridcell' }, ''));
        return;
      }
      const cell = h('div', { class: 'hm-cell', role: 'gridcell', title: `${grid} ${row}, step ${col}: ${pct(value, 2)} changed` }, pct(value, 1));
      cell.style.backgroundColor = heatColor(scalePosition(value, g.min!, g.max!));
      el.append(cell);
    });
  });
  return section('Changed share per step', picker, el);
}

function tableSection(v: StepsView): HTMLElement {
  const head = ['step', 'changed', 'rel. update', 'median ULPs', 'dense', 'bitmap', 'COO', 'XOR+zstd', 'bf16 allows (lr .. 10 lr)', 'agreement'];
  const body = v.rows.map((r) =>
    h(
      'tr',
      {},
      h('td', {}, r.label),
      h('td', { class: 'num' }, r.text.changed),
      h('td', { class: 'num' }, r.text.relUpdateNorm),
      h('td', { class: 'num' }, r.text.medianUlps),
      h('td', { class: 'num' }, r.text.dense),
      h('td', { class: 'num' }, r.text.bitmap),
      h('td', { class: 'num' }, r.text.coo),
      h('td', { class: 'num' }, r.text.xorZstd),
      h('td', { class: 'num' }, r.text.band),
      h('td', { class: `agreement agreement-${r.agreement ?? 'none'}` }, r.text.agreement),
    ),
  );
  return section(
    'Every step',
    h('table', { class: 'grid steps-table' }, h('thead', {}, h('tr', {}, ...head.map((x) => h('th', {}, x)))), h('tbody', {}, ...body)),
    h('ul', { class: 'steps-notes small' }, ...v.rows.map((r) => h('li', {}, h('strong', {}, `${r.label}: `), r.note))),
  );
}
