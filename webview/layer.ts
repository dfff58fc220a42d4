/** The layer detail: spectra, drift, principal angles, overlaps, row/column ratios with head boundaries, consensus map. */
import type { ConsensusMap, LayerData, TensorHistory } from '../src/protocol/messages';
import type { LineRatios, TensorDiff } from '../src/report/schema';
import { deg, pct, sci, shortTensorName } from '../src/ui-model/format';
import { headBoundaries } from '../src/ui-model/heads';
import { post, saveState } from './api';
import { chart, destroyCharts, palette, verticalLines } from './charts';
import { stat, verdictView } from './common';
import { button, clear, h, section, select, themeColor } from './dom';

let data: LayerData | null = null;
let selected: string | null = null;

export function showLayer(app: HTMLElement, d: LayerData, wanted: string | null): void {
  data = d;
  const names = d.tensors.map((t) => t.name);
  selected = wanted && names.includes(wanted) ? wanted : selected && names.includes(selected) ? selected : defaultTensor(d.tensors);
  persist();
  render(app);
}

function persist(): void {
  if (data) saveState({ panel: 'layer', runId: data.runId, checkpoint: data.checkpoint, layer: data.layer, tensor: selected });
}

function defaultTensor(ts: TensorDiff[]): string | null {
  return (ts.find((t) => t.spectral) ?? ts.find((t) => t.shape.length === 2) ?? ts[0])?.name ?? null;
}

function render(app: HTMLElement): void {
  const d = data;
  if (!d) return;
  destroyCharts();
  clear(app);
  const idx = d.layers.indexOf(d.layer);
  const prev = idx > 0 ? d.layers[idx - 1] : null;
  const next = idx >= 0 && idx < d.layers.length - 1 ? d.layers[idx + 1] : null;
  app.append(
    h(
      'header',
      { class: 'header' },
      h('h1', {}, `Layer ${d.layer}`),
      h('p', { class: 'muted' }, `${d.runName}${d.step !== null ? `, step ${d.step}` : ''}: ${d.checkpoint}`),
    ),
  );
  const tensorOptions = [...d.tensors]
    .sort((a, b) => b.shape.length - a.shape.length || a.name.localeCompare(b.name))
    .map((t) => ({ value: t.name, text: shortTensorName(t.name), description: `${t.shape.join('x')} ${pct(t.unchanged)} unchanged` }));
  app.append(
    h(
      'div',
      { class: 'toolbar' },
      select('Tensor', tensorOptions, selected ?? '', (v) => {
        selected = v;
        persist();
        render(app);
      }),
      h('span', { class: 'spacer' }),
      prev !== null
        ? button(`◀ layer ${prev}`, () => post({ type: 'openLayer', checkpoint: d.checkpoint, layer: prev, tensor: sameModule(prev) }), true)
        : null,
      next !== null
        ? button(`layer ${next} ▶`, () => post({ type: 'openLayer', checkpoint: d.checkpoint, layer: next, tensor: sameModule(next) }), true)
        : null,
      button('Run dashboard', () => post({ type: 'openDashboard', runId: d.runId }), true),
    ),
  );
  const t = d.tensors.find((x) => x.name === selected);
  if (!t) {
    app.append(h('p', { class: 'muted' }, 'No tensor in this layer.'));
    return;
  }
  app.append(numbers(t));
  if (t.spectral) app.append(spectralCharts(t));
  else
    app.append(
      section(
        'Spectral measurements',
        h(
          'p',
          { class: 'muted' },
          t.spectralSkipped ? `Skipped: ${t.spectralSkipped}` : 'No spectral pass for this tensor (1-D tensors and diff-only reports have none).',
        ),
      ),
    );
  const hist = d.history.find((x) => x.tensor === t.name);
  const ratios = hist ? ratioCharts(t, hist, d) : null;
  if (ratios) app.append(ratios);
  const cons = d.consensus.find((c) => c.tensor === t.name);
  app.append(
    section(
      'Consensus map (M3)',
      cons ? consensusView(cons) : h('p', { class: 'muted' }, 'No comparison of runs covers this tensor yet: use "Compare runs" on runs that share this base.'),
    ),
  );
}

function sameModule(layer: number): string | null {
  if (!selected) return null;
  return selected.replace(/(^|\.)(layers|h|blocks|layer)\.\d+\./, `$1$2.${layer}.`);
}

function numbers(t: TensorDiff): HTMLElement {
  const sp = t.spectral;
  return section(
    shortTensorName(t.name),
    h('p', { class: 'muted' }, `${t.name}: ${t.shape.join(' x ')} ${t.dtype}`),
    h(
      'div',
      { class: 'stats' },
      stat('unchanged', pct(t.unchanged, 2), `legacy |dw|<=1e-5 rule: ${pct(t.unchangedLegacyAbs)}`),
      stat('relative update norm', sci(t.relUpdateNorm)),
      stat('median update', t.medianUpdateUlps !== null ? `${sci(t.medianUpdateUlps)} ULP` : '-', 'in bf16 ULPs of w0 (Gate III)'),
      t.hiddenByPrecision !== undefined ? stat('hidden by bf16', pct(t.hiddenByPrecision), 'changed in fp32, same bf16 value') : null,
      sp ? stat('max principal angle', deg(sp.principalAngleMaxDeg), `k = ${sp.k}, ${sp.svdMethod} SVD`) : null,
      sp ? stat('NSS', sci(sp.nss), `${sp.nssCount} values (${sp.nssSpectrum})`) : null,
      sp ? stat('off-principal energy', pct(sp.offPrincipalEnergy, 2), `isotropic ${pct(sp.offPrincipalEnergyBaseline, 2)}`) : null,
      sp ? stat('stable rank', `${sci(sp.stableRankBase)} → ${sci(sp.stableRankCheckpoint)}`) : null,
    ),
    verdictView(t.verdict, t.spectral ? 'full' : 'diff'),
  );
}

function spectralCharts(t: TensorDiff): HTMLElement {
  const sp = t.spectral!;
  const [c0, c1, c2, c3] = palette();
  const n = Math.min(sp.sigmaBase.length, sp.sigmaCheckpoint.length);
  const idx = Array.from({ length: n }, (_, i) => String(i + 1));
  const drift = Array.from({ length: n }, (_, i) => (sp.sigmaBase[i] > 0 ? (sp.sigmaCheckpoint[i] - sp.sigmaBase[i]) / sp.sigmaBase[i] : null));
  const kAng = Math.max(sp.principalAnglesLeftDeg.length, sp.principalAnglesRightDeg.length);
  const overlapBars = [
    { name: 'principal P', obs: sp.overlapPrincipal, rnd: sp.overlapPrincipalBaseline, prec: sp.overlapPrincipalExpectedPrecision },
    { name: 'low-magnitude L', obs: sp.overlapLowMagnitude, rnd: sp.overlapLowMagnitudeBaseline, prec: sp.overlapLowMagnitudeExpectedPrecision },
    { name: 'P and not L', obs: sp.overlapPrincipalNotLow, rnd: sp.overlapPrincipalNotLowBaseline, prec: sp.overlapPrincipalNotLowExpectedPrecision },
  ];
  const pctOrNull = (x: number | null): number | null => (x === null ? null : x * 100);
  return section(
    'Spectrum and principal subspaces',
    h(
      'div',
      { class: 'charts' },
      chart('Singular values of base and checkpoint', {
        type: 'line',
        data: {
          labels: idx,
          datasets: [
            { label: 'σ base', data: sp.sigmaBase.slice(0, n), borderColor: c0, backgroundColor: c0, pointRadius: 0 },
            { label: 'σ checkpoint', data: sp.sigmaCheckpoint.slice(0, n), borderColor: c1, backgroundColor: c1, pointRadius: 0, borderDash: [5, 3] },
          ],
        },
        options: { scales: { x: { title: { display: true, text: 'index i' } }, y: { type: 'logarithmic', title: { display: true, text: 'σ_i (log)' } } } },
      }),
      chart('Per-index relative spectral drift', {
        type: 'line',
        data: { labels: idx, datasets: [{ label: '(σ1 − σ0) / σ0', data: drift, borderColor: c2, backgroundColor: c2, pointRadius: 0 }] },
        options: { scales: { x: { title: { display: true, text: 'index i' } }, y: { title: { display: true, text: 'relative change (M6)' } } } },
      }),
      chart('Principal angles of the top-k subspaces', {
        type: 'line',
        data: {
          labels: Array.from({ length: kAng }, (_, i) => String(i + 1)),
          datasets: [
            { label: 'left (U)', data: sp.principalAnglesLeftDeg, borderColor: c0, backgroundColor: c0, pointRadius: 1 },
            { label: 'right (V)', data: sp.principalAnglesRightDeg, borderColor: c3, backgroundColor: c3, pointRadius: 1 },
          ],
        },
        options: { scales: { x: { title: { display: true, text: 'i' } }, y: { beginAtZero: true, title: { display: true, text: 'angle (deg, M5)' } } } },
      }),
      chart('Overlap of changed weights with principal and low-magnitude masks', {
        type: 'bar',
        data: {
          labels: overlapBars.map((b) => b.name),
          datasets: [
            { label: 'observed', data: overlapBars.map((b) => pctOrNull(b.obs)), backgroundColor: c0 },
            { label: 'random baseline', data: overlapBars.map((b) => pctOrNull(b.rnd)), backgroundColor: c2 },
            { label: 'precision alone', data: overlapBars.map((b) => pctOrNull(b.prec)), backgroundColor: c1 },
          ],
        },
        options: { scales: { y: { beginAtZero: true, max: 100, title: { display: true, text: '% of changed weights (M7)' } } } },
      }),
    ),
  );
}

function ratioSeries(points: TensorHistory['points'], side: 'row' | 'col'): { step: string; r: LineRatios }[] {
  const out: { step: string; r: LineRatios }[] = [];
  for (const p of points) {
    const r = side === 'row' ? p.row : p.col;
    if (r) out.push({ step: p.step !== null ? `step ${p.step}` : 'checkpoint', r });
  }
  return out;
}

function ratioCharts(t: TensorDiff, hist: TensorHistory, d: LayerData): HTMLElement | null {
  if (t.shape.length !== 2) return null;
  const colors = palette();
  const boundaryColor = themeColor('--vscode-editorWarning-foreground', '#cca700');
  const make = (side: 'row' | 'col'): HTMLElement | null => {
    const series = ratioSeries(hist.points, side);
    if (series.length === 0) return null;
    const last = series[series.length - 1].r;
    const labels = last.values.map((_, i) => String(i * last.bin));
    // Head boundaries are in rows/columns; the x axis is in bins.
    const bounds = headBoundaries(t.module, side, last.length, d.heads).map((b) => b / last.bin);
    const title = side === 'row' ? 'Changed share per output row (ρ_i, M4)' : 'Changed share per input column (κ_j, M4)';
    return chart(title, {
      type: 'line',
      data: {
        labels,
        datasets: series.map((s, i) => ({
          label: s.step,
          data: s.r.values.map((v) => v * 100),
          borderColor: colors[i % colors.length],
          backgroundColor: colors[i % colors.length],
          pointRadius: 0,
          borderWidth: 1,
        })),
      },
      options: {
        scales: {
          x: {
            title: {
              display: true,
              text: side === 'row' ? `row${last.bin > 1 ? ` (bins of ${last.bin})` : ''}` : `column${last.bin > 1 ? ` (bins of ${last.bin})` : ''}`,
            },
          },
          y: { beginAtZero: true, title: { display: true, text: 'changed %' } },
        },
      },
      plugins: [verticalLines(bounds, boundaryColor)],
    });
  };
  const heads = d.heads
    ? `Dashed lines: attention-head boundaries (${d.heads.numAttentionHeads} query heads, ${d.heads.numKeyValueHeads} key/value heads, head_dim ${d.heads.headDim}).`
    : 'No config.json with head counts next to the checkpoint: head boundaries are not drawn.';
  return section(
    'Row and column update ratios over steps',
    h('p', { class: 'muted' }, `Persistent peaks while overall density grows are the stripes of M4. ${heads}`),
    h('div', { class: 'charts' }, make('row'), make('col')),
  );
}

function consensusView(c: ConsensusMap): HTMLElement {
  const canvas = h('canvas', { class: 'consensus', role: 'img', 'aria-label': `Consensus map of ${c.runs.length} runs` });
  canvas.width = c.cols;
  canvas.height = c.rows;
  const ctx = canvas.getContext('2d');
  if (ctx) {
    const img = ctx.createImageData(c.cols, c.rows);
    for (let i = 0; i < c.rows * c.cols; i++) {
      const v = Math.max(0, Math.min(1, c.values[i] ?? 0));
      // Dark (no run changed it) to bright (every run changed it), a perceptually even grey ramp.
      const g = Math.round(255 * Math.sqrt(v));
      img.data[i * 4] = g;
      img.data[i * 4 + 1] = Math.round(g * 0.85);
      img.data[i * 4 + 2] = Math.round(255 * v * 0.4);
      img.data[i * 4 + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  const scale = Math.max(1, Math.floor(480 / Math.max(c.cols, c.rows)));
  canvas.style.width = `${c.cols * scale}px`;
  canvas.style.height = `${c.rows * scale}px`;
  return h(
    'div',
    {},
    h(
      'p',
      { class: 'muted' },
      `C = mean over ${c.runs.length} runs (${c.runs.join(', ')}) of the changed masks, ${c.rows} x ${c.cols}${c.blockRows > 1 || c.blockCols > 1 ? ` (blocks of ${c.blockRows} x ${c.blockCols})` : ''}. Bright = changed in every run; contiguous stripes rather than salt-and-pepper noise are the RL signature.`,
    ),
    canvas,
  );
}
