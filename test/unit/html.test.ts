import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { main } from '../../src/cli';
import { writeSyntheticRun } from '../../src/examples/synthetic';
import { reportsToHtml, escapeHtml, viridis } from '../../src/report/html';
import { pct, sci } from '../../src/report/format-text';
import type { CheckpointReport } from '../../src/report/schema';
import { tempDir } from '../support/st';

let dir: string;
let full: CheckpointReport;
let diffOnly: CheckpointReport[];
let cliHtml: string;
let cliDiffHtml: string;

async function quiet(args: string[]): Promise<number> {
  const [log, error] = [console.log, console.error];
  const err: string[] = [];
  console.log = () => undefined;
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  try {
    const code = await main(args);
    assert.equal(code, 0, err.join('\n'));
    return code;
  } finally {
    console.log = log;
    console.error = error;
  }
}

before(async () => {
  process.env.ORT_DISABLE_TELEMETRY = '1';
  dir = await tempDir('gatescope-html-');
  const { base, checkpoints } = await writeSyntheticRun(path.join(dir, 'ex'));
  const out = path.join(dir, 'out');
  await quiet([
    'analyze',
    base,
    checkpoints[2],
    '--device',
    'cpu',
    '--k',
    '16',
    '--quiet',
    '--mkdir',
    '--json',
    path.join(out, 'full.json'),
    '--html',
    path.join(out, 'full.html'),
  ]);
  await quiet(['diff', base, checkpoints[0], checkpoints[1], '--quiet', '--json', path.join(out, 'diff.json'), '--html', path.join(out, 'diff.html')]);
  full = JSON.parse(await fsp.readFile(path.join(out, 'full.json'), 'utf8')) as CheckpointReport;
  diffOnly = (JSON.parse(await fsp.readFile(path.join(out, 'diff.json'), 'utf8')) as { reports: CheckpointReport[] }).reports;
  cliHtml = await fsp.readFile(path.join(out, 'full.html'), 'utf8');
  cliDiffHtml = await fsp.readFile(path.join(out, 'diff.html'), 'utf8');
});
after(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/** A numeric cell as the page writes it. */
function cell(v: number | null, text: string): string {
  return `<td class="n" data-v="${v}">${escapeHtml(text)}</td>`;
}

function rowOf(html: string, name: string): string {
  const start = html.indexOf(`<tr><td class="name">${escapeHtml(name)}</td>`);
  assert.ok(start >= 0, `row of ${name}`);
  return html.slice(start, html.indexOf('</tr>', start));
}

function assertSelfContained(html: string): void {
  assert.ok(html.startsWith('<!DOCTYPE html>'));
  assert.doesNotMatch(html, /<script/i);
  // Escaped text holds no '<', so every '<' opens a real tag: no tag has an event handler or loads anything.
  assert.doesNotMatch(html, /<[a-z][^<>]*\son[a-z]+\s*=/i, 'no inline event handlers');
  assert.doesNotMatch(html, /<[a-z][^<>]*\s(?:src|xlink:href|action|background)\s*=/i, 'nothing to load');
  assert.deepEqual(html.match(/<[a-z][^<>]*\shref\s*=\s*"(?!#)[^"]*"/gi) ?? [], [], 'links only within the page');
  assert.doesNotMatch(html, /<(img|link|iframe|object|embed|base|form|meta http-equiv="refresh")/i);
  const urls = html.match(/https?:[^\s"'<>)]*/gi) ?? [];
  assert.deepEqual(
    [...new Set(urls)].filter((u) => u !== 'http://www.w3.org/2000/svg'),
    [],
    'no URL except the SVG namespace',
  );
  assert.ok(html.includes(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:;`), 'strict CSP');
  assert.ok(html.indexOf('Content-Security-Policy') < html.indexOf('<style>'), 'the policy comes before any content');
  for (const tag of ['table', 'tr', 'svg', 'section', 'figure']) {
    assert.equal((html.match(new RegExp(`<${tag}[\\s>]`, 'g')) ?? []).length, (html.match(new RegExp(`</${tag}>`, 'g')) ?? []).length, `balanced <${tag}>`);
  }
}

test('the full report page carries the report numbers, formatted like the text report', () => {
  const html = reportsToHtml([full]);
  assert.equal(html.replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, ''), cliHtml.replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, ''), 'the CLI writes the same page');
  assertSelfContained(html);
  const s = full.summary;
  for (const v of [s.unchanged, s.unchangedLinear, s.unchangedNoEmbedNorm]) assert.ok(html.includes(`data-v="${v}">${pct(v)}</div>`));
  assert.ok(html.includes(`data-v="${s.relUpdateNorm}">${sci(s.relUpdateNorm)}</div>`));
  // Verdict and its evidence.
  assert.ok(full.verdict);
  assert.ok(html.includes(`Regime verdict: <span class="label">${full.verdict.label}</span>`));
  for (const e of full.verdict.evidence) {
    assert.ok(html.includes(`<td>${escapeHtml(e.measure)}</td>${cell(e.value, sci(e.value, 3))}${cell(e.baseline, sci(e.baseline, 3))}`), e.measure);
  }
  // Per tensor: M1, M5, M6, M7 and M8 against their baselines.
  let spectral = 0;
  for (const t of full.tensors) {
    const row = rowOf(html, t.name);
    assert.ok(row.includes(cell(t.unchanged, pct(t.unchanged))), `${t.name} unchanged`);
    if (t.relUpdateNorm !== null) assert.ok(row.includes(cell(t.relUpdateNorm, sci(t.relUpdateNorm))));
    const sp = t.spectral;
    if (!sp) {
      assert.ok(row.includes(`<td class="n na" title="${escapeHtml(t.spectralSkipped!)}">-</td>`), `${t.name}: skipped, with why`);
      continue;
    }
    spectral++;
    assert.ok(row.includes(cell(sp.principalAngleMaxDeg, sp.principalAngleMaxDeg.toFixed(2))));
    assert.ok(row.includes(cell(sp.nss, sci(sp.nss))));
    assert.ok(row.includes(cell(sp.overlapPrincipal, pct(sp.overlapPrincipal)) + cell(sp.overlapPrincipalBaseline, pct(sp.overlapPrincipalBaseline))));
    assert.ok(
      row.includes(cell(sp.overlapLowMagnitude, pct(sp.overlapLowMagnitude)) + cell(sp.overlapLowMagnitudeBaseline, pct(sp.overlapLowMagnitudeBaseline))),
    );
    assert.ok(
      row.includes(cell(sp.offPrincipalEnergy, pct(sp.offPrincipalEnergy, 2)) + cell(sp.offPrincipalEnergyBaseline, pct(sp.offPrincipalEnergyBaseline, 2))),
    );
    assert.ok(row.includes(`>${t.verdict!.label}</td>`));
  }
  assert.ok(spectral >= 14, 'every linear weight has its spectral columns');
  // Heatmap: one cell per (layer, module), the pooled share computed independently here.
  const pooled = new Map<string, { finite: number; changed: number }>();
  for (const t of full.tensors) {
    if (t.layer === null) continue;
    const k = `${t.layer}:${t.module}`;
    const a = pooled.get(k) ?? { finite: 0, changed: 0 };
    a.finite += t.numel - t.nonFinite;
    a.changed += t.changed;
    pooled.set(k, a);
  }
  const heat = html.slice(html.indexOf('<svg', html.indexOf('by layer and module')), html.indexOf('</svg>', html.indexOf('by layer and module')));
  assert.equal((heat.match(/<g><rect [^>]*data-v=/g) ?? []).length, pooled.size);
  for (const [k, a] of pooled) {
    const v = (a.finite - a.changed) / a.finite;
    const [layer, module] = k.split(':');
    assert.ok(heat.includes(`fill="${viridis(v)}" data-v="${v}"/>`), k);
    assert.ok(heat.includes(`<title>layer ${layer}, ${module}: ${pct(v)} unchanged`), k);
  }
  // Bars: per module, the summary's value.
  for (const [m, g] of Object.entries(full.summary.byModule)) {
    assert.ok(html.includes(`data-v="${g.unchanged}"><title>${m}: ${pct(g.unchanged)} unchanged`), m);
  }
});

test('every name is escaped: a hostile tensor name, path or note renders as text', () => {
  const evil = '<img src=x onerror=alert(1)>';
  const r = structuredClone(full);
  r.tensors[0].name = evil;
  r.tensors[1].name = '"><script>alert(2)</script>';
  r.checkpoint = `/tmp/'"><svg onload=alert(3)>/checkpoint-9`;
  r.mismatches.push({ name: '<b>x</b>', problem: 'only-in-base', detail: '<iframe src=//evil.example>' });
  r.verdict!.evidence[0].note = '</td></tr></table><script>alert(4)</script>';
  const html = reportsToHtml([r], { title: '<title>x' });
  assertSelfContained(html);
  assert.ok(html.includes('<td class="name">&lt;img src=x onerror=alert(1)&gt;</td>'));
  assert.ok(html.includes('&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;'));
  assert.ok(html.includes('&lt;iframe src=//evil.example&gt;'));
  assert.ok(!html.includes('<b>x</b>'));
  assert.ok(html.includes('<title>&lt;title&gt;x</title>'));
  assert.equal(escapeHtml(`<&>"'`), '&lt;&amp;&gt;&quot;&#39;');
});

test('diff-only reports: overview of several checkpoints, no spectral columns; paths can be reduced to names', () => {
  const html = reportsToHtml(diffOnly, { paths: 'name' });
  assert.ok(!html.includes(dir), 'no absolute path with paths: name');
  assert.ok(cliDiffHtml.includes(diffOnly[0].checkpoint), 'the CLI page names each checkpoint by its path');
  assert.ok(!cliDiffHtml.includes(dir) && !diffOnly[0].checkpoint.startsWith('/'), 'relative to the page, not absolute');
  assertSelfContained(html);
  assert.ok(html.includes('<h2>Overview</h2>'));
  assert.equal((html.match(/<section class="report"/g) ?? []).length, 2);
  assert.ok(!html.includes('max angle (deg)'));
  assert.ok(!html.includes('Regime verdict'));
  for (const r of diffOnly) {
    assert.ok(
      html.includes(cell(r.summary.unchanged, pct(r.summary.unchanged)) + cell(r.summary.unchangedLinear, pct(r.summary.unchangedLinear))),
      'overview row',
    );
    for (const t of r.tensors) assert.ok(html.includes(cell(t.unchanged, pct(t.unchanged))));
  }
});
