/** Markdown export of checkpoint reports: shareable, with every tensor name escaped. */
import type { CheckpointReport } from './schema';
import { MODULE_KINDS } from './schema';
import { pct, sci } from './format-text';

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
    out.push(`## ${mdEscape(r.checkpoint)}${r.step !== null ? ` (step ${r.step})` : ''}`, '');
    out.push(`Base: ${mdEscape(r.base)}  `);
    out.push(`Unchanged (M1): **${pct(s.unchanged)}** of all float entries, ${pct(s.unchangedLinear)} of linear weights; relative update norm ${sci(s.relUpdateNorm)}.`, '');
    if (r.verdict) {
      out.push(`Verdict: **${r.verdict.label}**`, '');
      for (const e of r.verdict.evidence) out.push(`- ${mdEscape(e.measure)}: ${sci(e.value, 3)} vs ${sci(e.baseline, 3)}, leans ${e.leans} (${mdEscape(e.note)})`);
      out.push('');
    }
    out.push('| module | tensors | unchanged | rel. update |', '|---|---:|---:|---:|');
    for (const m of MODULE_KINDS) {
      const g = s.byModule[m];
      if (g) out.push(`| ${m} | ${g.tensors} | ${pct(g.unchanged)} | ${sci(g.relUpdateNorm)} |`);
    }
    out.push('');
    out.push('| tensor | unchanged | rel. update | max angle (deg) | NSS | principal overlap (random) | off-principal energy (baseline) | verdict |', '|---|---:|---:|---:|---:|---:|---:|---|');
    for (const t of r.tensors) {
      const sp = t.spectral;
      out.push(`| ${mdEscape(t.name)} | ${pct(t.unchanged)} | ${sci(t.relUpdateNorm)} | ${sp ? sp.principalAngleMaxDeg.toFixed(2) : '-'} | ${sp ? sci(sp.nss) : '-'} | ${sp ? `${pct(sp.overlapPrincipal)} (${pct(sp.overlapPrincipalBaseline)})` : '-'} | ${sp ? `${pct(sp.offPrincipalEnergy, 2)} (${pct(sp.offPrincipalEnergyBaseline, 2)})` : '-'} | ${t.verdict?.label ?? '-'} |`);
    }
    out.push('');
  }
  return out.join('\n');
}
