/** Markdown export of checkpoint reports: shareable, with every tensor name escaped. */
import type { CheckpointReport, ConsistencyReport } from './schema';
import { MODULE_KINDS } from './schema';
import { evidenceReferences, pct, sci } from './format-text';

/** Escapes text for a Markdown table cell: HTML, Markdown syntax and pipes become inert. */
export function mdEscape(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/([\\`*_{}[\]()#+!|~])/g, '\\$1')
    .replace(/\r?\n/g, ' ');
}

export function reportsToMarkdown(reports: CheckpointReport[]): string {
  const out: string[] = ['# Gatescope report', ''];
  for (const r of reports) {
    const s = r.summary;
    out.push(`## ${mdEscape(r.label ?? `${r.checkpoint}${r.step !== null ? ` (step ${r.step})` : ''}`)}`, '');
    out.push(`Checkpoint: ${mdEscape(r.checkpoint)}  `);
    out.push(`Base: ${mdEscape(r.base)}  `);
    out.push(
      `Unchanged (M1): **${pct(s.unchanged)}** of all float entries, ${pct(s.unchangedLinear)} of linear weights; relative update norm ${sci(s.relUpdateNorm)}.`,
      '',
    );
    const unsettled = r.tensors.filter((t) => t.spectral?.subspace && !t.spectral.subspace.converged).length;
    if (r.baseBases || unsettled) {
      const parts = [
        r.baseBases ? `base subspaces: ${r.baseBases.fromCache} from the cache, ${r.baseBases.computed} computed` : '',
        unsettled ? `${unsettled} weight(s) whose top-k subspace did not settle within the iteration cap (their angles are estimates)` : '',
        r.timings
          ? `diff pass ${(r.timings.diffMs / 1000).toFixed(1)} s${r.timings.spectralMs !== undefined ? `, spectral pass ${(r.timings.spectralMs / 1000).toFixed(1)} s` : ''}`
          : '',
      ].filter(Boolean);
      out.push(`Spectral pass: ${parts.join('; ')}.`, '');
    }
    if (r.verdict) {
      out.push(`Verdict: **${r.verdict.label}**${r.verdict.reason ? `: ${mdEscape(r.verdict.reason)}` : ''}`, '');
      for (const e of r.verdict.evidence)
        out.push(`- ${mdEscape(e.measure)}: ${sci(e.value, 3)} (${evidenceReferences(e)}), leans ${e.leans} (${mdEscape(e.note)})`);
      out.push('');
    }
    out.push('| module | tensors | unchanged | rel. update |', '|---|---:|---:|---:|');
    for (const m of MODULE_KINDS) {
      const g = s.byModule[m];
      if (g) out.push(`| ${m} | ${g.tensors} | ${pct(g.unchanged)} | ${sci(g.relUpdateNorm)} |`);
    }
    out.push('');
    out.push(
      '| tensor | unchanged | rel. update | max angle (deg) | NSS | principal overlap (random) | off-principal energy (baseline) | verdict |',
      '|---|---:|---:|---:|---:|---:|---:|---|',
    );
    for (const t of r.tensors) {
      const sp = t.spectral;
      out.push(
        `| ${mdEscape(t.name)} | ${pct(t.unchanged)} | ${sci(t.relUpdateNorm)} | ${sp ? sp.principalAngleMaxDeg.toFixed(2) : '-'} | ${sp ? sci(sp.nss) : '-'} | ${sp ? `${pct(sp.overlapPrincipal)} (${pct(sp.overlapPrincipalBaseline)})` : '-'} | ${sp ? `${pct(sp.offPrincipalEnergy, 2)} (${pct(sp.offPrincipalEnergyBaseline, 2)})` : '-'} | ${t.verdict?.label ?? '-'} |`,
      );
    }
    out.push('');
  }
  return out.join('\n');
}

/** The comparison of runs from one base: the comparative verdict of each pair, the runs, and M2. */
export function consistencyToMarkdown(r: ConsistencyReport): string {
  const out: string[] = ['# Gatescope comparison', '', `Base: ${mdEscape(r.base)}`, ''];
  const g = r.regime;
  if (g) {
    out.push('## Comparative regime verdict', '');
    out.push('| run | checkpoint | step | unchanged, linear | rel. update | single-run verdict |', '|---|---|---:|---:|---:|---|');
    for (const x of g.runs)
      out.push(
        `| ${mdEscape(x.label)} | ${mdEscape(x.checkpoint)} | ${x.step ?? '-'} | ${pct(x.unchangedLinear)} | ${sci(x.relUpdateNorm)} | ${x.verdict ? `${x.verdict.label}${x.verdict.reason ? `: ${mdEscape(x.verdict.reason)}` : ''}` : '-'} |`,
      );
    out.push('');
    for (const pr of g.pairs) {
      out.push(`### ${mdEscape(pr.a)} vs ${mdEscape(pr.b)}`, '', `**${mdEscape(pr.summary)}**`, '');
      out.push(
        `Update size ratio (median ||dW_a|| / ||dW_b||): ${pr.updateSizeRatio === null ? '-' : pr.updateSizeRatio.toPrecision(3)}; ${pr.tensors} shared linear weights.`,
        '',
      );
      out.push('| measure | ratio a/b | 95% interval | more off-principal |', '|---|---:|---:|---|');
      for (const e of pr.evidence)
        out.push(
          `| ${mdEscape(e.measure)} | ${e.ratio.toPrecision(3)} | ${e.ciLow.toPrecision(3)}-${e.ciHigh.toPrecision(3)} | ${e.leans ? mdEscape(e.leans) : 'neither'}${e.votes ? '' : ' (shown, not counted)'} |`,
        );
      out.push('');
    }
    out.push(mdEscape(g.method) + '.', '');
  }
  out.push('## Cross-run consistency (M2)', '', 'Jaccard of changed masks [independent-mask baseline].', '');
  const labels = r.runs.map((x) => mdEscape(x.label));
  out.push(`| | ${labels.join(' | ')} |`, `|---|${labels.map(() => '---:').join('|')}|`);
  r.jaccard.forEach((row, i) =>
    out.push(`| ${labels[i]} | ${row.map((v, j) => (i === j ? '-' : `${v.toFixed(3)} [${r.jaccardBaseline[i][j].toFixed(3)}]`)).join(' | ')} |`),
  );
  out.push('', `Mean off-diagonal ${r.meanOffDiagonal.toFixed(3)} against a random baseline of ${r.meanOffDiagonalBaseline.toFixed(3)}.`, '');
  return out.join('\n');
}
