/**
 * A shareable, self-contained HTML report: one file, no network (no scripts, fonts or images from
 * anywhere; inline CSS; charts drawn here as inline SVG), with a strict Content-Security-Policy.
 * Every string that comes from a checkpoint (tensor names, paths, notes) is escaped: a tensor named
 * `<img src=x onerror=alert(1)>` shows as text. Numbers are formatted exactly as in the terminal and
 * Markdown outputs (`pct`, `sci`), and each numeric cell carries its raw value in `data-v`.
 */
import { MODULE_KINDS, type CheckpointReport, type ConsistencyReport, type ModuleKind, type TensorDiff, type Verdict } from './schema';
import { describeDtypeGroup, describeK, describePairing, groupMismatches, pct, sci, int } from './format-text';
import { VERSION } from '../version';
import { TensorPool } from './summarize';

export interface HtmlOptions {
  /** Page title (default "Gatescope report"). */
  title?: string;
  /** 'full': absolute paths as analysed (default); 'name': only the last path segment, for sharing. */
  paths?: 'full' | 'name';
}

/** The policy of the page: nothing may load, styles only inline, images only as data: URLs. */
export const HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Escapes text for HTML element content and (double- or single-quoted) attribute values. */
export function escapeHtml(s: unknown): string {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** How each kind of number is written (the same helpers as the text and Markdown reports). */
export const fmt = {
  share: (x: number | null | undefined, digits = 1): string => pct(x, digits),
  num: (x: number | null | undefined, digits = 2): string => sci(x, digits),
  deg: (x: number | null | undefined): string => (x === null || x === undefined || Number.isNaN(x) ? '-' : x.toFixed(2)),
  int: (x: number): string => int(x),
};

function baseName(p: string): string {
  const parts = p.split(/[\\/]/).filter(Boolean);
  return parts[parts.length - 1] ?? p;
}

/** The checkpoint as people name it ("rl-kl step 80"); reports written before labels existed fall back to the folder name. */
function reportTitle(r: CheckpointReport): string {
  return r.label ?? `${baseName(r.checkpoint)}${r.step !== null ? ` (step ${r.step})` : ''}`;
}

/** A numeric table cell: formatted text, raw value in data-v, '-' when absent. */
function numCell(value: number | null | undefined, text: string, title?: string): string {
  const t = title ? ` title="${escapeHtml(title)}"` : '';
  if (value === null || value === undefined || Number.isNaN(value)) return `<td class="n na"${t}>-</td>`;
  return `<td class="n" data-v="${escapeHtml(String(value))}"${t}>${escapeHtml(text)}</td>`;
}

function textCell(s: unknown, cls?: string): string {
  return `<td${cls ? ` class="${cls}"` : ''}>${escapeHtml(s)}</td>`;
}

// ---------------------------------------------------------------------------------------------
// Colour: viridis (perceptually uniform, colour-blind safe), interpolated between five stops.

const VIRIDIS: [number, [number, number, number]][] = [
  [0, [68, 1, 84]],
  [0.25, [59, 82, 139]],
  [0.5, [33, 145, 140]],
  [0.75, [94, 201, 98]],
  [1, [253, 231, 37]],
];

export function viridis(t: number): string {
  const x = Math.min(1, Math.max(0, t));
  let i = 0;
  while (i < VIRIDIS.length - 2 && x > VIRIDIS[i + 1][0]) i++;
  const [t0, c0] = VIRIDIS[i];
  const [t1, c1] = VIRIDIS[i + 1];
  const f = (x - t0) / (t1 - t0);
  const c = c0.map((v, k) => Math.round(v + (c1[k] - v) * f));
  return `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

// ---------------------------------------------------------------------------------------------
// Charts.

export interface HeatCell {
  layer: number;
  module: ModuleKind;
  /** Pooled share of unchanged entries, null when no finite entry. */
  unchanged: number | null;
  tensors: number;
  numel: number;
}

/** Layer x module grid of pooled `unchanged` (the reports' one pooling rule, {@link TensorPool}). */
export function layerModuleGrid(r: CheckpointReport): { layers: number[]; modules: ModuleKind[]; cells: Map<string, HeatCell> } {
  const pools = new Map<string, { layer: number; module: ModuleKind; pool: TensorPool }>();
  const layers = new Set<number>();
  const modules = new Set<ModuleKind>();
  for (const t of r.tensors) {
    if (t.layer === null) continue;
    layers.add(t.layer);
    modules.add(t.module);
    const key = `${t.layer}:${t.module}`;
    let g = pools.get(key);
    if (!g) pools.set(key, (g = { layer: t.layer, module: t.module, pool: new TensorPool() }));
    g.pool.add(t);
  }
  const cells = new Map<string, HeatCell>();
  for (const [key, { layer, module, pool }] of pools) {
    cells.set(key, { layer, module, unchanged: pool.unchanged, tensors: pool.tensors, numel: pool.numel });
  }
  return { layers: [...layers].sort((a, b) => a - b), modules: MODULE_KINDS.filter((m) => modules.has(m)), cells };
}

function heatmapSvg(r: CheckpointReport): string {
  const { layers, modules, cells } = layerModuleGrid(r);
  if (layers.length === 0) return '<p class="muted">No tensors inside numbered layers.</p>';
  const cw = 52;
  const ch = layers.length > 48 ? 10 : 18;
  const left = 58;
  const top = 22;
  const legendH = 34;
  const w = left + modules.length * cw + 8;
  const h = top + layers.length * ch + legendH;
  const out: string[] = [
    `<svg xmlns="${SVG_NS}" class="chart heatmap" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="unchanged share by layer and module">`,
  ];
  modules.forEach((m, j) => out.push(`<text class="axis" x="${left + j * cw + cw / 2}" y="${top - 8}" text-anchor="middle">${escapeHtml(m)}</text>`));
  layers.forEach((l, i) => {
    const y = top + i * ch;
    out.push(`<text class="axis" x="${left - 6}" y="${y + ch / 2 + 3.5}" text-anchor="end">layer ${l}</text>`);
    modules.forEach((m, j) => {
      const c = cells.get(`${l}:${m}`);
      const x = left + j * cw;
      if (!c || c.unchanged === null) {
        out.push(
          `<rect class="empty" x="${x + 1}" y="${y + 1}" width="${cw - 2}" height="${ch - 2}"><title>layer ${l}, ${escapeHtml(m)}: no data</title></rect>`,
        );
        return;
      }
      const v = c.unchanged;
      out.push(
        `<g><rect x="${x + 1}" y="${y + 1}" width="${cw - 2}" height="${ch - 2}" fill="${viridis(v)}" data-v="${v}"/>` +
          (ch >= 14
            ? `<text class="cell ${v < 0.6 ? 'light' : 'dark'}" x="${x + cw / 2}" y="${y + ch / 2 + 3.5}" text-anchor="middle">${escapeHtml(fmt.share(v))}</text>`
            : '') +
          `<title>layer ${l}, ${escapeHtml(m)}: ${escapeHtml(fmt.share(v))} unchanged (${c.tensors} tensor${c.tensors === 1 ? '' : 's'}, ${escapeHtml(fmt.int(c.numel))} entries)</title></g>`,
      );
    });
  });
  // Legend: 0% .. 100% in 20 steps (no gradient ids needed).
  const ly = top + layers.length * ch + 10;
  const lw = Math.max(100, Math.min(200, modules.length * cw));
  for (let s = 0; s < 20; s++) out.push(`<rect x="${left + (s * lw) / 20}" y="${ly}" width="${lw / 20 + 0.5}" height="8" fill="${viridis((s + 0.5) / 20)}"/>`);
  out.push(`<text class="axis" x="${left}" y="${ly + 20}">0%</text><text class="axis" x="${left + lw}" y="${ly + 20}" text-anchor="end">100% unchanged</text>`);
  out.push('</svg>');
  return out.join('');
}

function moduleBarsSvg(r: CheckpointReport): string {
  const mods = MODULE_KINDS.filter((m) => r.summary.byModule[m]);
  if (mods.length === 0) return '';
  const left = 56;
  const bw = 260;
  const bh = 16;
  const gap = 5;
  const w = left + bw + 70;
  const h = mods.length * (bh + gap) + 6;
  const out: string[] = [
    `<svg xmlns="${SVG_NS}" class="chart bars" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="unchanged share by module">`,
  ];
  mods.forEach((m, i) => {
    const g = r.summary.byModule[m]!;
    const y = 3 + i * (bh + gap);
    out.push(`<text class="axis" x="${left - 6}" y="${y + bh / 2 + 4}" text-anchor="end">${escapeHtml(m)}</text>`);
    out.push(`<rect class="track" x="${left}" y="${y}" width="${bw}" height="${bh}"/>`);
    out.push(
      `<rect x="${left}" y="${y}" width="${(Math.min(1, Math.max(0, g.unchanged)) * bw).toFixed(2)}" height="${bh}" fill="${viridis(g.unchanged)}" data-v="${g.unchanged}"><title>${escapeHtml(m)}: ${escapeHtml(fmt.share(g.unchanged))} unchanged over ${g.tensors} tensors</title></rect>`,
    );
    out.push(`<text class="value" x="${left + bw + 6}" y="${y + bh / 2 + 4}">${escapeHtml(fmt.share(g.unchanged))}</text>`);
  });
  out.push('</svg>');
  return out.join('');
}

// ---------------------------------------------------------------------------------------------
// Sections.

function verdictHtml(v: Verdict, heading: string): string {
  const rows = v.evidence.map(
    (e) =>
      `<tr>${textCell(e.measure)}${numCell(e.value, fmt.num(e.value, 3))}${numCell(e.baseline, fmt.num(e.baseline, 3))}${e.baselineGradient !== undefined ? numCell(e.baselineGradient, fmt.num(e.baselineGradient, 3)) : textCell('-')}${textCell(e.leans, `leans ${e.leans}`)}${textCell(e.note)}</tr>`,
  );
  return (
    `<div class="verdict ${escapeHtml(v.label)}"><h3>${escapeHtml(heading)}: <span class="label">${escapeHtml(v.label)}</span></h3>` +
    (v.reason ? `<p class="reason">${escapeHtml(v.reason)}</p>` : '') +
    `<table><thead><tr><th>evidence</th><th>value</th><th>direction-blind null / precision alone</th><th>gradient-like null</th><th>leans</th><th>note</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`
  );
}

function spectralSummaryHtml(r: CheckpointReport): string {
  const q = r.spectralSummary;
  if (!q) return '';
  const items = [
    ['principal angle, max over tensors (M5)', `${fmt.deg(q.principalAngleMaxDeg)} deg (median ${fmt.deg(q.principalAngleMedianDeg)} deg)`],
    ['spectral drift NSS, median (M6)', fmt.num(q.nssMedian)],
    ['share of the update that moved the spectrum, median', fmt.num(q.spectralShareOfUpdateMedian)],
    [
      'off-principal energy, median (M8)',
      `${fmt.share(q.offPrincipalEnergyMedian, 2)} (isotropic baseline ${fmt.share(q.offPrincipalEnergyBaselineMedian, 2)})`,
    ],
    [
      'overlap with principal weights (M7)',
      `${fmt.share(q.overlapPrincipal)} (random ${fmt.share(q.overlapPrincipalBaseline)}, precision alone ${fmt.share(q.overlapPrincipalExpectedPrecision)})`,
    ],
    [
      'overlap with low-magnitude weights (M7)',
      `${fmt.share(q.overlapLowMagnitude)} (random ${fmt.share(q.overlapLowMagnitudeBaseline)}, precision alone ${fmt.share(q.overlapLowMagnitudeExpectedPrecision)})`,
    ],
  ];
  return (
    `<h3>Gate II, spectral (${escapeHtml(describeK(r))}, ${q.tensors} linear weights, device ${escapeHtml(r.device ?? '?')})</h3>` +
    `<table class="kv"><tbody>${items.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</tbody></table>`
  );
}

function moduleTable(r: CheckpointReport): string {
  const rows = MODULE_KINDS.filter((m) => r.summary.byModule[m]).map((m) => {
    const g = r.summary.byModule[m]!;
    return `<tr>${textCell(m)}${numCell(g.tensors, String(g.tensors))}${numCell(g.numel, fmt.int(g.numel))}${numCell(g.unchanged, fmt.share(g.unchanged))}${numCell(g.changed, fmt.int(g.changed))}${numCell(g.relUpdateNorm, fmt.num(g.relUpdateNorm))}${numCell(g.nonFinite || null, g.nonFinite ? fmt.int(g.nonFinite) : '')}</tr>`;
  });
  return `<table class="modules"><thead><tr><th>module</th><th>tensors</th><th>entries</th><th>unchanged</th><th>changed</th><th>||dW||/||W0||</th><th>NaN/Inf</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function tensorRow(t: TensorDiff, full: boolean, hidden: boolean): string {
  const cells = [
    `<td class="name">${escapeHtml(t.name)}</td>`,
    textCell(t.module),
    textCell(t.layer ?? '-'),
    textCell(t.shape.join('x')),
    textCell(t.dtype),
    numCell(t.unchanged, fmt.share(t.unchanged)),
    numCell(t.relUpdateNorm, fmt.num(t.relUpdateNorm)),
    numCell(t.maxAbsUpdate, fmt.num(t.maxAbsUpdate)),
    numCell(t.medianUpdateUlps, fmt.num(t.medianUpdateUlps)),
  ];
  if (hidden) cells.push(numCell(t.hiddenByPrecision, fmt.share(t.hiddenByPrecision)));
  if (full) {
    const sp = t.spectral;
    const why = sp ? undefined : t.spectralSkipped;
    cells.push(
      numCell(sp?.principalAngleMaxDeg, fmt.deg(sp?.principalAngleMaxDeg), why),
      numCell(sp?.nss, fmt.num(sp?.nss), why),
      numCell(sp?.overlapPrincipal, fmt.share(sp?.overlapPrincipal), why),
      numCell(sp?.overlapPrincipalBaseline, fmt.share(sp?.overlapPrincipalBaseline), why),
      numCell(sp?.overlapPrincipalExpectedPrecision, fmt.share(sp?.overlapPrincipalExpectedPrecision), why),
      numCell(sp?.overlapLowMagnitude, fmt.share(sp?.overlapLowMagnitude), why),
      numCell(sp?.overlapLowMagnitudeBaseline, fmt.share(sp?.overlapLowMagnitudeBaseline), why),
      numCell(sp?.overlapLowMagnitudeExpectedPrecision, fmt.share(sp?.overlapLowMagnitudeExpectedPrecision), why),
      numCell(sp?.offPrincipalEnergy, fmt.share(sp?.offPrincipalEnergy, 2), why),
      numCell(sp?.offPrincipalEnergyBaseline, fmt.share(sp?.offPrincipalEnergyBaseline, 2), why),
      t.verdict ? textCell(t.verdict.label, `v ${t.verdict.label}`) : textCell('-'),
    );
  }
  return `<tr>${cells.join('')}</tr>`;
}

function tensorTable(r: CheckpointReport): string {
  const full = r.passes === 'full';
  const hidden = r.tensors.some((t) => t.hiddenByPrecision !== undefined);
  const head = ['tensor', 'module', 'layer', 'shape', 'dtype', 'unchanged', '||dW||/||W0||', 'max |dw|', 'median ULPs'];
  if (hidden) head.push('hidden by bf16');
  const groups = full
    ? '<tr><th colspan="' +
      head.length +
      '"></th><th colspan="2">Gate II drift</th><th colspan="3">principal overlap (M7)</th><th colspan="3">low-magnitude overlap (M7)</th><th colspan="2">off-principal energy (M8)</th><th></th></tr>'
    : '';
  if (full)
    head.push('max angle (deg)', 'NSS', 'observed', 'random', 'precision alone', 'observed', 'random', 'precision alone', 'observed', 'baseline', 'verdict');
  return `<div class="scroll"><table class="tensors"><thead>${groups}<tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${r.tensors.map((t) => tensorRow(t, full, hidden)).join('')}</tbody></table></div>`;
}

function reportSection(r: CheckpointReport, i: number, opts: HtmlOptions): string {
  const s = r.summary;
  const shownPath = (p: string): string => (opts.paths === 'name' ? baseName(p) : p);
  const title = reportTitle(r);
  const out: string[] = [`<section class="report" id="report-${i}">`, `<h2>${escapeHtml(title)}</h2>`];
  const meta: [string, string][] = [
    ['checkpoint', shownPath(r.checkpoint)],
    ['base', shownPath(r.base)],
    ['passes', r.passes === 'full' ? 'full (diff + spectral M5-M8 + verdict)' : 'diff (M1, M4, Gate I/III probes)'],
    ['settings', `eta ${r.settings.eta}, k ${r.settings.k}, alpha ${r.settings.alpha}, kSpectrum ${r.settings.kSpectrum}, seed ${r.settings.seed}`],
    ['created', `${r.createdAt} by gatescope ${r.tool.version} in ${(r.durationMs / 1000).toFixed(1)} s${r.device ? ` on ${r.device}` : ''}`],
  ];
  const pairingNote = describePairing(r);
  if (pairingNote) meta.push(['pairing', pairingNote]);
  out.push(`<table class="kv meta"><tbody>${meta.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</tbody></table>`);
  const kpis: [string, number | null, string][] = [
    ['unchanged, all float entries (M1)', s.unchanged, fmt.share(s.unchanged)],
    ['unchanged, linear weights', s.unchangedLinear, fmt.share(s.unchangedLinear)],
    ['unchanged, without embeddings and norms', s.unchangedNoEmbedNorm, fmt.share(s.unchangedNoEmbedNorm)],
    ['relative update norm ||dW||/||W0||', s.relUpdateNorm, fmt.num(s.relUpdateNorm)],
    ['legacy |dw| <= 1e-5 rule (comparison only)', s.unchangedLegacyAbs, fmt.share(s.unchangedLegacyAbs)],
  ];
  out.push(
    `<div class="kpis">${kpis.map(([k, v, t]) => `<div class="kpi"><div class="kv-value"${v === null ? '' : ` data-v="${escapeHtml(String(v))}"`}>${escapeHtml(t)}</div><div class="kv-label">${escapeHtml(k)}</div></div>`).join('')}</div>`,
  );
  if (s.nonFinite > 0)
    out.push(`<p class="warn">${escapeHtml(fmt.int(s.nonFinite))} NaN/Inf entries in base or checkpoint: a defect of the checkpoint, counted apart.</p>`);
  const noShare = r.tensors.filter((t) => t.unchanged === null).length;
  if (noShare > 0) out.push(`<p class="warn">${noShare} tensor${noShare === 1 ? '' : 's'} with no finite entry: left out of every unchanged share.</p>`);
  if (r.verdict) out.push(verdictHtml(r.verdict, 'Regime verdict'));
  out.push(spectralSummaryHtml(r));
  out.push('<div class="charts">');
  out.push(`<figure><figcaption>Unchanged (M1) by layer and module</figcaption>${heatmapSvg(r)}</figure>`);
  out.push(`<figure><figcaption>Unchanged (M1) by module</figcaption>${moduleBarsSvg(r)}</figure>`);
  out.push('</div>');
  out.push('<h3>Per module</h3>', moduleTable(r));
  out.push(`<h3>Per tensor (${r.tensors.length})</h3>`, tensorTable(r));
  if (r.mismatches.length) {
    out.push(`<h3>Not compared or compared with a caveat (${r.mismatches.length})</h3><ul class="mismatches">`);
    const { dtypes, others } = groupMismatches(r);
    for (const d of dtypes) out.push(`<li>${escapeHtml(describeDtypeGroup(d))}</li>`);
    for (const m of others) out.push(`<li><code>${escapeHtml(m.name)}</code>: ${escapeHtml(m.problem)}: ${escapeHtml(m.detail)}</li>`);
    out.push('</ul>');
  }
  out.push('</section>');
  return out.join('\n');
}

function overview(reports: CheckpointReport[]): string {
  const rows = reports.map(
    (r, i) =>
      `<tr><td><a href="#report-${i}">${escapeHtml(reportTitle(r))}</a></td>${textCell(r.step ?? '-')}${textCell(r.passes)}` +
      `${numCell(r.summary.unchanged, fmt.share(r.summary.unchanged))}${numCell(r.summary.unchangedLinear, fmt.share(r.summary.unchangedLinear))}${numCell(r.summary.relUpdateNorm, fmt.num(r.summary.relUpdateNorm))}` +
      `${textCell(r.verdict?.label ?? '-', r.verdict ? `v ${r.verdict.label}` : undefined)}</tr>`,
  );
  return `<table class="overview"><thead><tr><th>checkpoint</th><th>step</th><th>passes</th><th>unchanged</th><th>unchanged, linear</th><th>||dW||/||W0||</th><th>verdict</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

const CSS = `
:root{color-scheme:light dark;--fg:#1f2328;--muted:#59636e;--bg:#fff;--line:#d1d9e0;--track:#eef1f4;--warn:#9a6700}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--line:#3d444d;--track:#21262d;--warn:#d29922}}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);margin:24px;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:15px;margin:20px 0 6px}
.muted,header p{color:var(--muted)}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}th,td{border-bottom:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
td.n{text-align:right;white-space:nowrap}td.na{color:var(--muted)}td.name{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;word-break:break-all}
table.kv th{font-weight:normal;color:var(--muted);white-space:nowrap}
.scroll{overflow-x:auto}table.tensors{font-size:12.5px}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}.kpi{border:1px solid var(--line);border-radius:6px;padding:8px 12px;min-width:150px}
.kv-value{font-size:20px;font-weight:600}.kv-label{color:var(--muted);font-size:12px}
.verdict{border:1px solid var(--line);border-left-width:6px;border-radius:6px;padding:4px 12px 10px;margin:12px 0}
.verdict.off-principal{border-left-color:#1a7f37}.verdict.principal-targeting{border-left-color:#cf222e}.verdict.inconclusive{border-left-color:#9a6700}
.leans.off-principal,.v.off-principal{color:#1a7f37}.leans.principal-targeting,.v.principal-targeting{color:#cf222e}
.charts{display:flex;flex-wrap:wrap;gap:32px;align-items:flex-start}figure{margin:8px 0}figcaption{font-weight:600;margin-bottom:6px}
svg.chart text{font-size:11px;fill:var(--fg)}svg.chart text.cell{font-size:10px}svg.chart text.cell.light{fill:#fff}svg.chart text.cell.dark{fill:#000}svg.chart rect.track{fill:var(--track)}svg.chart rect.empty{fill:none;stroke:var(--line)}
.warn{color:var(--warn)}code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
footer{margin-top:40px;color:var(--muted);font-size:12px}
`;

/** One self-contained HTML page for one or more checkpoint reports. */
function pageHead(title: string): string[] {
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    // A constant without double quotes: written as is, so it reads plainly in the file.
    `<meta http-equiv="Content-Security-Policy" content="${HTML_CSP}">`,
    '<meta name="referrer" content="no-referrer">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
  ];
}

/** The comparison of runs from one base as one static page: the comparative verdict, the runs per layer, M2. */
export function consistencyToHtml(r: ConsistencyReport, opts: HtmlOptions = {}): string {
  const title = opts.title ?? 'Gatescope comparison';
  const parts = pageHead(title);
  parts.push(
    `<header><h1>${escapeHtml(title)}</h1><p>Runs from the base ${escapeHtml(r.base)}, written by gatescope ${escapeHtml(VERSION)}. Static page: no scripts, nothing loaded from the network.</p></header>`,
  );
  const g = r.regime;
  if (g) {
    parts.push('<h2>Comparative regime verdict</h2>');
    parts.push(
      `<table class="overview"><thead><tr><th>run</th><th>step</th><th>unchanged, linear</th><th>||dW||/||W0||</th><th>single-run verdict</th></tr></thead><tbody>${g.runs.map((x) => `<tr>${textCell(x.label)}${numCell(x.step, x.step === null ? '-' : String(x.step))}${numCell(x.unchangedLinear, fmt.share(x.unchangedLinear))}${numCell(x.relUpdateNorm, fmt.num(x.relUpdateNorm, 3))}${textCell(x.verdict ? `${x.verdict.label}${x.verdict.reason ? `: ${x.verdict.reason}` : ''}` : '-')}</tr>`).join('')}</tbody></table>`,
    );
    for (const pr of g.pairs) {
      const rows = pr.evidence.map(
        (e) =>
          `<tr>${textCell(e.measure)}${numCell(e.ratio, fmt.num(e.ratio, 3))}${textCell(`${fmt.num(e.ciLow, 3)} - ${fmt.num(e.ciHigh, 3)}`)}${textCell(`${e.leans ?? 'neither'}${e.votes ? '' : ' (shown, not counted)'}`)}</tr>`,
      );
      parts.push(
        `<div class="verdict ${pr.moreOffPrincipal ? 'off-principal' : 'inconclusive'}"><h3>${escapeHtml(pr.a)} vs ${escapeHtml(pr.b)}</h3><p class="reason">${escapeHtml(pr.summary)}</p>` +
          `<p>Update size ratio (median ||dW_a|| / ||dW_b||): ${escapeHtml(fmt.num(pr.updateSizeRatio, 3))}, over ${pr.tensors} shared linear weights.</p>` +
          `<table><thead><tr><th>measure (per unit of update)</th><th>ratio a/b</th><th>95% interval</th><th>more off-principal</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`,
      );
    }
    parts.push(`<p class="muted">${escapeHtml(g.method)}.</p>`);
    const layers = [...new Set(g.runs.flatMap((x) => x.layers.map((l) => l.layer)))].sort((a, b) => a - b);
    const head = g.runs.map((x) => `<th>${escapeHtml(x.label)}</th>`).join('');
    for (const [key, what] of [
      ['principalAngleMaxDeg', 'max principal angle (deg)'],
      ['nssPrincipal', 'principal-part NSS (first order)'],
      ['offPrincipalEnergy', 'off-principal energy (gradient-like null in brackets)'],
      ['overlapPrincipalRatio', 'principal overlap / precision alone'],
    ] as const) {
      const body = layers.map(
        (l) =>
          `<tr>${textCell(String(l))}${g.runs
            .map((x) => {
              const v = x.layers.find((y) => y.layer === l);
              const val = v ? v[key] : null;
              const extra = v && key === 'offPrincipalEnergy' ? ` (${fmt.num(v.offPrincipalEnergyNull, 3)})` : '';
              return numCell(val, `${fmt.num(val, 3)}${extra}`);
            })
            .join('')}</tr>`,
      );
      parts.push(`<h3>Per layer: ${escapeHtml(what)}</h3><table><thead><tr><th>layer</th>${head}</tr></thead><tbody>${body.join('')}</tbody></table>`);
    }
  }
  parts.push('<h2>Cross-run consistency (M2)</h2>');
  parts.push(
    `<table><thead><tr><th></th>${r.runs.map((x) => `<th>${escapeHtml(x.label)}</th>`).join('')}</tr></thead><tbody>${r.jaccard.map((row, i) => `<tr>${textCell(r.runs[i].label)}${row.map((v, j) => (i === j ? textCell('-') : numCell(v, `${v.toFixed(3)} [${r.jaccardBaseline[i][j].toFixed(3)}]`))).join('')}</tr>`).join('')}</tbody></table>`,
  );
  parts.push(
    `<p>Mean off-diagonal Jaccard ${escapeHtml(r.meanOffDiagonal.toFixed(3))} against an independent-mask baseline of ${escapeHtml(r.meanOffDiagonalBaseline.toFixed(3))}.</p>`,
  );
  parts.push('</body>', '</html>', '');
  return parts.join('\n');
}

export function reportsToHtml(reports: CheckpointReport[], opts: HtmlOptions = {}): string {
  const title = opts.title ?? 'Gatescope report';
  const parts: string[] = [
    ...pageHead(title),
    `<header><h1>${escapeHtml(title)}</h1><p>${reports.length} checkpoint report${reports.length === 1 ? '' : 's'}, written by gatescope ${escapeHtml(VERSION)}. Static page: no scripts, nothing loaded from the network.</p></header>`,
  ];
  if (reports.length === 0) parts.push('<p class="muted">No reports.</p>');
  if (reports.length > 1) parts.push('<h2>Overview</h2>', overview(reports));
  reports.forEach((r, i) => parts.push(reportSection(r, i, opts)));
  parts.push(
    '<footer><p><b>unchanged</b> (M1): share of entries left bit-identical (bf16, +0 = -0) or within eta (other floats). ' +
      '<b>NSS</b>: ||sigma(W1) - sigma(W0)|| / ||sigma(W0)||. <b>Overlaps</b> (M7): |X and M| / |M| for the principal (P) and low-magnitude (L) masks, ' +
      'beside their random baseline (density of X) and the precision-alone expectation. <b>Off-principal energy</b> (M8): share of ||dW||_F^2 outside the top-k ' +
      'singular subspaces of W0, beside the isotropic baseline 1 - k^2/(mn). After Zhu et al., "The Path Not Taken: RLVR Provably Learns Off the Principals" (arXiv 2511.08567).</p></footer>',
    '</body>',
    '</html>',
    '',
  );
  return parts.join('\n');
}
