/**
 * Plain-text rendering of reports for the terminal: readable per-module and per-layer tables.
 */
import {
  MODULE_KINDS,
  type CheckpointReport,
  type GroupSummary,
  type ConsistencyReport,
  type RegimeComparison,
  type TensorMismatch,
  type VerdictEvidence,
} from './schema';
import type { ScanResult } from '../discovery/scan';
import * as path from 'node:path';
import { median } from '../core/stats';

export { median };

export function pct(x: number | null | undefined, digits = 1): string {
  return x === null || x === undefined || Number.isNaN(x) ? '-' : `${(x * 100).toFixed(digits)}%`;
}

export function sci(x: number | null | undefined, digits = 2): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '-';
  if (x === 0) return '0';
  return Math.abs(x) >= 0.01 && Math.abs(x) < 1000 ? x.toFixed(digits + 1).replace(/\.?0+$/, '') : x.toExponential(digits);
}

export function int(x: number): string {
  return x.toLocaleString('en-US');
}

export function table(headers: string[], rows: string[][], rightAlign: boolean[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: string[]): string =>
    cells
      .map((c, i) => (rightAlign[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [fmt(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

function rel(p: string): string {
  const r = path.relative(process.cwd(), p);
  return r === '' ? '.' : r.startsWith('..') ? p : r;
}

/**
 * The top-k the spectral pass used: k is capped at min(m, n) per weight, so a large --k is shown with
 * what each weight actually got ("k=100000 requested, 16-64 used").
 */
export function describeK(r: CheckpointReport): string {
  const used = r.tensors.flatMap((t) => (t.spectral ? [t.spectral.k] : []));
  if (used.length === 0) return `k=${r.settings.k}`;
  const lo = Math.min(...used);
  const hi = Math.max(...used);
  if (lo === r.settings.k && hi === r.settings.k) return `k=${r.settings.k}`;
  return `k=${r.settings.k} requested, ${lo === hi ? lo : `${lo}-${hi}`} used (capped at min(m, n) per weight)`;
}

function groupRow(label: string, g: GroupSummary): string[] {
  return [label, String(g.tensors), int(g.numel), pct(g.unchanged), int(g.changed), sci(g.relUpdateNorm), g.nonFinite ? int(g.nonFinite) : ''];
}

const GROUP_HEADERS = ['', 'tensors', 'entries', 'unchanged', 'changed', '||dW||/||W0||', 'NaN/Inf'];
const GROUP_ALIGN = [false, true, true, true, true, true, true];

export function formatCheckpointReport(r: CheckpointReport, opts: { layers?: boolean } = {}): string {
  const s = r.summary;
  const lines: string[] = [];
  lines.push(
    `${r.label ? `${r.label}: ` : ''}checkpoint ${rel(r.checkpoint)}${r.step !== null && !r.label ? ` (step ${r.step})` : ''}   vs base ${rel(r.base)}`,
  );
  lines.push(
    `  unchanged (M1, bf16 bit-exact / eta ${r.settings.eta}): ${pct(s.unchanged)} of all float entries, ${pct(s.unchangedLinear)} of linear weights, ${pct(s.unchangedNoEmbedNorm)} without embeddings and norms`,
  );
  lines.push(`  legacy |dw| <= 1e-5 rule (for comparison only): ${pct(s.unchangedLegacyAbs)} unchanged`);
  lines.push(`  relative update norm ||dW||_F / ||W0||_F: ${sci(s.relUpdateNorm)}`);
  for (const n of r.notes ?? []) lines.push(`  note: ${n}`);
  if (s.nonFinite > 0) lines.push(`  WARNING: ${int(s.nonFinite)} NaN/Inf entries in base or checkpoint (a defect of the checkpoint; counted apart)`);
  const noShare = r.tensors.filter((t) => t.unchanged === null);
  if (noShare.length)
    lines.push(`  ${noShare.length} tensor(s) with no finite entry, left out of every unchanged share: ${listNames(noShare.map((t) => t.name))}`);
  const pairingNote = describePairing(r);
  if (pairingNote) lines.push(`  ${pairingNote}`);
  const hidden = r.tensors.filter((t) => t.hiddenByPrecision !== undefined);
  if (hidden.length) {
    const med = median(hidden.map((t) => t.hiddenByPrecision!));
    lines.push(`  Gate III: fp32 checkpoint, median share of fp32 changes that bf16 storage would hide: ${pct(med)}`);
  }
  lines.push('');
  lines.push(
    table(
      ['module', ...GROUP_HEADERS.slice(1)],
      MODULE_KINDS.filter((m) => s.byModule[m]).map((m) => groupRow(m, s.byModule[m]!)),
      GROUP_ALIGN,
    ).replace(/^/gm, '  '),
  );
  if (opts.layers !== false && Object.keys(s.byLayer).length) {
    lines.push('');
    lines.push(
      table(
        ['layer', ...GROUP_HEADERS.slice(1)],
        Object.entries(s.byLayer).map(([l, g]) => groupRow(l, g)),
        GROUP_ALIGN,
      ).replace(/^/gm, '  '),
    );
  }
  if (r.spectralSummary) {
    const q = r.spectralSummary;
    lines.push('');
    lines.push(`  Gate II (spectral, ${describeK(r)}, ${q.tensors} linear weights, device ${r.device ?? '?'}):`);
    lines.push(`    principal angle max ${q.principalAngleMaxDeg.toFixed(2)} deg (median over tensors ${q.principalAngleMedianDeg.toFixed(2)})`);
    lines.push(
      `    NSS median ${sci(q.nssMedian)} (${r.tensors.some((t) => t.spectral?.nssSpectrum === 'top-k') ? `top ${r.settings.kSpectrum} values where a side exceeds 256` : 'full spectrum'}); share of the update that moved the spectrum, median ${sci(q.spectralShareOfUpdateMedian)}`,
    );
    lines.push(
      `    principal-part NSS (top-k values) median ${sci(q.nssPrincipalMedian)}, first order ${sci(q.nssPrincipalFirstOrderMedian)}; principal spectral share median ${sci(q.spectralSharePrincipalMedian)}`,
    );
    lines.push(`    off-principal energy median ${pct(q.offPrincipalEnergyMedian, 2)} (isotropic baseline ${pct(q.offPrincipalEnergyBaselineMedian, 2)})`);
    lines.push(
      `    overlap with principal weights ${pct(q.overlapPrincipal)} (random ${pct(q.overlapPrincipalBaseline)}, precision alone ${pct(q.overlapPrincipalExpectedPrecision)})`,
    );
    lines.push(
      `    overlap with low-magnitude weights ${pct(q.overlapLowMagnitude)} (random ${pct(q.overlapLowMagnitudeBaseline)}, precision alone ${pct(q.overlapLowMagnitudeExpectedPrecision)})`,
    );
    const iterated = r.tensors.filter((t) => t.spectral?.subspace);
    const unsettled = iterated.filter((t) => !t.spectral!.subspace!.converged);
    if (unsettled.length) {
      const worst = Math.max(...unsettled.map((t) => t.spectral!.subspace!.errorEstimate));
      lines.push(
        `    ${unsettled.length} of ${iterated.length} randomized weights: the top-k subspace did not settle to ${sci(unsettled[0].spectral!.subspace!.tolerance)} within the iteration cap (estimated error up to ${sci(worst)}; a flat spectrum has no well-defined top-k subspace); their angles are estimates`,
      );
    }
    if (r.baseBases)
      lines.push(`    base subspaces: ${r.baseBases.fromCache} from the cache, ${r.baseBases.computed} computed${r.baseBases.cached ? ' and stored' : ''}`);
  }
  if (r.verdict) {
    lines.push('');
    const counts = r.verdict.tensorLabels;
    lines.push(`  verdict: ${r.verdict.label}${r.verdict.reason ? `: ${r.verdict.reason}` : ''}`);
    if (counts)
      lines.push(
        `    per weight: ${counts['off-principal']} off-principal, ${counts['principal-targeting']} principal-targeting, ${counts.inconclusive} inconclusive`,
      );
    for (const e of r.verdict.evidence) lines.push(`    - ${e.measure}: ${sci(e.value, 3)} (${evidenceReferences(e)}) -> ${e.leans}: ${e.note}`);
  }
  if (r.mismatches.length) {
    lines.push('');
    lines.push(`  ${r.mismatches.length} tensor(s) not compared or compared with a caveat:`);
    const { dtypes, others } = groupMismatches(r);
    for (const d of dtypes) lines.push(`    ${describeDtypeGroup(d)}`);
    for (const m of others.slice(0, 20)) lines.push(`    ${m.name}: ${m.problem}: ${m.detail}`);
    if (others.length > 20) lines.push(`    ... and ${others.length - 20} more (see --json)`);
  }
  return lines.join('\n');
}

/** Up to `max` names, then how many more. */
function listNames(names: readonly string[], max = 3): string {
  return names.length > max ? `${names.slice(0, max).join(', ')} and ${names.length - max} more` : names.join(', ');
}

/** How tensors were paired, when there is something to say: wrapper prefixes stripped, or base tensors left out. */
export function describePairing(r: CheckpointReport): string | undefined {
  const p = r.pairing;
  if (!p) return undefined;
  const stripped = [p.checkpointPrefix && `"${p.checkpointPrefix}" from the checkpoint's names`, p.basePrefix && `"${p.basePrefix}" from the base's names`]
    .filter(Boolean)
    .join(' and ');
  if (!stripped && p.paired === p.baseFloatTensors) return undefined;
  return `${p.paired} of the base's ${p.baseFloatTensors} float tensors compared${stripped ? `, names paired after stripping ${stripped}` : ''}`;
}

/** The tensors whose dtype differs between base and checkpoint, one group per dtype pair. */
export interface DtypeMismatchGroup {
  base: string;
  checkpoint: string;
  count: number;
  /** The checkpoint side is fp32/f64: the Gate III probe (hidden by precision) was reported for these tensors. */
  gate3: boolean;
}

/** Dtype mismatches grouped by dtype pair (one line each instead of one per tensor); every other mismatch as is. */
export function groupMismatches(r: CheckpointReport): { dtypes: DtypeMismatchGroup[]; others: TensorMismatch[] } {
  const byName = new Map(r.tensors.map((t) => [t.name, t]));
  const groups = new Map<string, DtypeMismatchGroup>();
  const others: TensorMismatch[] = [];
  for (const m of r.mismatches) {
    const pair = m.problem === 'dtype-mismatch' ? dtypePair(m, byName.get(m.name)?.dtype) : undefined;
    if (!pair) {
      others.push(m);
      continue;
    }
    const key = `${pair[0]}->${pair[1]}`;
    const g = groups.get(key) ?? { base: pair[0], checkpoint: pair[1], count: 0, gate3: false };
    g.count++;
    if (byName.get(m.name)?.hiddenByPrecision !== undefined) g.gate3 = true;
    groups.set(key, g);
  }
  return { dtypes: [...groups.values()], others };
}

function dtypePair(m: TensorMismatch, tensorDtype: string | undefined): [string, string] | undefined {
  const fromTensor = tensorDtype?.split('->');
  if (fromTensor?.length === 2) return [fromTensor[0], fromTensor[1]];
  const fromDetail = /^base (\S+) vs checkpoint (\S+?):/.exec(m.detail);
  return fromDetail ? [fromDetail[1], fromDetail[2]] : undefined;
}

/** "dtype differs in 39 tensors: BF16 in base, F32 in checkpoint (compared as floats with the relative rule; Gate III probe reported)". */
export function describeDtypeGroup(d: DtypeMismatchGroup): string {
  return `dtype differs in ${d.count} tensor${d.count === 1 ? '' : 's'}: ${d.base} in base, ${d.checkpoint} in checkpoint (compared as floats with the relative rule${d.gate3 ? '; Gate III probe reported' : ''})`;
}

/** "direction-blind 0.01, gradient-like 0.3" for a bracketed measure, "expected 0.4" for an overlap. */
export function evidenceReferences(e: VerdictEvidence): string {
  return e.baselineGradient !== undefined
    ? `direction-blind ${sci(e.baseline, 3)}, gradient-like ${sci(e.baselineGradient, 3)}`
    : `expected ${sci(e.baseline, 3)}`;
}

export function formatScan(s: ScanResult): string {
  const lines: string[] = [];
  if (s.runs.length === 0) return `No checkpoints found under ${rel(s.root)}.`;
  for (const run of s.runs) {
    if (run.baseOf.length && run.checkpoints.length === 1) {
      lines.push(`model ${run.name}   base model of: ${run.baseOf.map(rel).join(', ')}`);
      lines.push('');
      continue;
    }
    const base = run.base.resolved ? rel(run.base.resolved) : `unknown (${run.base.problem ?? 'not set'})`;
    lines.push(`run ${run.name}   base: ${base}${run.base.source && run.base.resolved ? `   [from ${rel(run.base.source)}]` : ''}`);
    lines.push(
      table(
        ['step', 'state', 'layout', 'size', 'path'],
        run.checkpoints.map((c) => [c.step === null ? '-' : String(c.step), c.state, c.layout, c.bytes ? `${(c.bytes / 1e6).toFixed(1)} MB` : '', rel(c.path)]),
        [true],
      ).replace(/^/gm, '  '),
    );
    for (const c of run.checkpoints) {
      if (c.reason) lines.push(`  ${c.state === 'complete' ? 'note' : '!'} ${rel(c.path)}: ${c.reason}`);
      if (c.mergeCommand) lines.push(`    merge with: ${c.mergeCommand}`);
    }
    lines.push('');
  }
  for (const w of s.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n').trimEnd();
}

export function formatConsistency(r: ConsistencyReport): string {
  const labels = r.runs.map((x) => x.label);
  const lines = [`Cross-run consistency (M2) from base ${rel(r.base)}: Jaccard of changed masks [random baseline]`];
  lines.push(
    table(
      ['', ...labels],
      r.jaccard.map((row, i) => [labels[i], ...row.map((v, j) => (i === j ? '-' : `${v.toFixed(3)} [${r.jaccardBaseline[i][j].toFixed(3)}]`))]),
    ).replace(/^/gm, '  '),
  );
  lines.push(`  mean off-diagonal ${r.meanOffDiagonal.toFixed(3)} against a random baseline of ${r.meanOffDiagonalBaseline.toFixed(3)}`);
  lines.push(`  changed density per run: ${r.runs.map((x) => `${x.label} ${pct(x.density)}`).join(', ')}`);
  if (r.regime) lines.push('', formatRegime(r.regime));
  return lines.join('\n');
}

/** The comparative verdict: per pair, which run is more off-principal per unit of update, and the size ratio. */
export function formatRegime(g: RegimeComparison): string {
  const lines = ['Comparative regime verdict (per unit of update, over shared linear weights; ratio a/b [95% interval])'];
  lines.push(
    table(
      ['run', 'checkpoint step', 'unchanged, linear', '||dW||/||W0||', 'single-run verdict'],
      g.runs.map((x) => [x.label, x.step === null ? '-' : String(x.step), pct(x.unchangedLinear), sci(x.relUpdateNorm), x.verdict ? x.verdict.label : '-']),
      [false, true, true, true],
    ).replace(/^/gm, '  '),
  );
  for (const pr of g.pairs) {
    lines.push('');
    lines.push(`  ${pr.a} vs ${pr.b}: ${pr.summary}`);
    lines.push(
      table(
        ['measure', 'ratio a/b', '95% interval', 'more off-principal'],
        pr.evidence.map((e) => [
          e.measure,
          e.ratio.toPrecision(3),
          `${e.ciLow.toPrecision(3)}-${e.ciHigh.toPrecision(3)}`,
          `${e.leans ?? 'neither'}${e.votes ? '' : ' (shown, not counted)'}`,
        ]),
        [false, true, true],
      ).replace(/^/gm, '    '),
    );
  }
  lines.push('', `  ${g.method}. Sizes differ between runs; every measure is per unit of update, so a smaller update alone is no evidence (the size trap).`);
  return lines.join('\n');
}
