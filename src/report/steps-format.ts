/** The step-to-step report as terminal text, Markdown and CSV (one row per tensor per step). */
import type { StepEntry, StepsReport } from './steps-schema';
import { csvCell } from './csv';

/** Bytes with a binary unit: 1.9 MiB. */
export function formatBytes(n: number | null): string {
  if (n === null) return 'n/a';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}

function pct(x: number | null | undefined, digits = 2): string {
  return x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(digits)}%`;
}

function sci(x: number | null | undefined): string {
  return x === null || x === undefined ? 'n/a' : x.toExponential(2);
}

/** A learning rate as configs write it: 3e-6, not 0.000003. */
export function formatRate(x: number): string {
  return x
    .toExponential()
    .replace(/\.?0+e/, 'e')
    .replace('e+', 'e');
}

function ulps(x: number | null): string {
  return x === null ? 'n/a' : x < 10 ? x.toFixed(2) : x.toFixed(1);
}

export function stepLabel(s: StepEntry): string {
  const f = s.fromBase ? 'base' : s.fromStep === null ? '?' : String(s.fromStep);
  const t = s.toStep === null ? '?' : String(s.toStep);
  return `${f} -> ${t}`;
}

function changedShare(s: StepEntry): number | null {
  return s.unchanged === null ? null : 1 - s.unchanged;
}

function table(rows: string[][]): string[] {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(w[c]) : cell.padStart(w[c]))).join('  '));
}

const HEAD = ['step', 'changed', 'rel. update', 'median ULPs', 'dense', 'bitmap', 'COO', 'XOR+zstd', 'predicted unchanged (10 lr .. lr)', 'observed'];

function row(s: StepEntry): string[] {
  const p = s.prediction;
  return [
    stepLabel(s),
    pct(changedShare(s)),
    sci(s.relUpdateNorm),
    ulps(s.medianUpdateUlps),
    formatBytes(s.payload.dense),
    formatBytes(s.payload.bitmap),
    formatBytes(s.payload.coo),
    formatBytes(s.payload.xorZstd),
    p ? `${pct(p.unchangedAt10Lr)} .. ${pct(p.unchangedAtLr)}` : 'n/a',
    p ? pct(p.observedUnchanged) : pct(s.unchanged),
  ];
}

/** Where each step's learning rate and optimizer steps came from, said once when every step agrees. */
function sources(r: StepsReport): string[] {
  const out: string[] = [];
  const lrs = new Set(
    r.steps.map((s) =>
      s.prediction
        ? `learning rate ${formatRate(s.prediction.learningRate.value)} from ${s.prediction.learningRate.source}`
        : `no prediction: ${s.predictionUnavailable}`,
    ),
  );
  const opt = new Set(r.steps.filter((s) => s.prediction).map((s) => s.prediction!.optimizerStepsSource));
  if (lrs.size === 1) out.push([...lrs][0]);
  if (opt.size === 1) out.push(`optimizer steps: ${[...opt][0]}`);
  return out;
}

export function formatSteps(r: StepsReport): string {
  const lines: string[] = [];
  lines.push(
    `Run ${r.name}: ${r.steps.length} step${r.steps.length === 1 ? '' : 's'} over ${r.checkpoints.length} checkpoints${r.base ? ' (the base first)' : ''}`,
  );
  for (const s of r.skipped) lines.push(`  left out: ${s.path} (${s.state}${s.reason ? `: ${s.reason}` : ''})`);
  lines.push('');
  lines.push(...table([HEAD, ...r.steps.map(row)]));
  lines.push('');
  const shared = sources(r);
  for (const l of shared) lines.push(l);
  for (const s of r.steps) {
    const p = s.prediction;
    const extra =
      shared.length === 2 || !p
        ? ''
        : ` (lr ${formatRate(p.learningRate.value)} from ${p.learningRate.source}; ${p.optimizerSteps} optimizer steps: ${p.optimizerStepsSource})`;
    lines.push(`${stepLabel(s)}: ${p ? `${p.agreement}: ${p.note}` : `no prediction: ${s.predictionUnavailable}`}${extra}`);
  }
  lines.push('');
  lines.push('Payloads: what a sync of each step would move (tensors with no changed bit send nothing). dense = every changed');
  lines.push('tensor whole; bitmap = 1 bit per entry + the changed values; COO = int32 index + value per changed entry;');
  lines.push(`XOR+zstd = the XOR of the bit patterns, zstd level ${r.settings.zstdLevel}, one frame per ${r.settings.frameEntries} entries.`);
  return lines.join('\n');
}

export function stepsToMarkdown(r: StepsReport): string {
  const lines: string[] = [];
  lines.push(`# Step to step: ${r.name}`, '');
  lines.push(
    `${r.steps.length} step${r.steps.length === 1 ? '' : 's'} over ${r.checkpoints.length} checkpoints${r.base ? `, from the base \`${r.base}\`` : ''}.`,
    '',
  );
  if (r.skipped.length) {
    lines.push('Left out:', '');
    for (const s of r.skipped) lines.push(`- \`${s.path}\` (${s.state}${s.reason ? `: ${s.reason}` : ''})`);
    lines.push('');
  }
  const esc = (c: string): string => c.replace(/\|/g, '\\|');
  lines.push(`| ${HEAD.join(' | ')} |`, `|${HEAD.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`);
  for (const s of r.steps) lines.push(`| ${row(s).map(esc).join(' | ')} |`);
  lines.push('', '## Gate III: what bf16 predicts', '');
  for (const s of r.steps) {
    const p = s.prediction;
    if (!p) {
      lines.push(`- **${stepLabel(s)}**: no prediction (${s.predictionUnavailable}).`);
      continue;
    }
    lines.push(
      `- **${stepLabel(s)}** (${p.agreement}): ${p.note} Learning rate ${formatRate(p.learningRate.value)} (${p.learningRate.source}); ${p.optimizerSteps} optimizer steps (${p.optimizerStepsSource}); bound ${sci(p.bound)} per entry.`,
    );
  }
  lines.push('', '## Per module (changed share)', '');
  const modules = [...new Set(r.steps.flatMap((s) => s.modules.map((m) => m.module)))];
  lines.push(`| step | ${modules.join(' | ')} |`, `| --- |${modules.map(() => ' ---: ').join('|')}|`);
  for (const s of r.steps) {
    const cells = modules.map((m) => {
      const g = s.modules.find((x) => x.module === m);
      return g ? pct(g.unchanged === null ? null : 1 - g.unchanged) : '';
    });
    lines.push(`| ${stepLabel(s)} | ${cells.join(' | ')} |`);
  }
  lines.push(
    '',
    `Payloads count what a sync of each step would move; tensors with no changed bit send nothing. XOR+zstd: zstd level ${r.settings.zstdLevel}, one frame per ${r.settings.frameEntries} entries of a tensor.`,
    '',
  );
  return lines.join('\n');
}

const CSV_COLUMNS = [
  'from',
  'to',
  'fromStep',
  'toStep',
  'name',
  'module',
  'layer',
  'shape',
  'dtype',
  'numel',
  'changed',
  'unchanged',
  'bitsChanged',
  'relUpdateNorm',
  'medianUpdateUlps',
  'dense',
  'bitmap',
  'coo',
  'xorZstd',
] as const;

export function stepsToCsv(r: StepsReport): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const s of r.steps) {
    for (const t of s.tensors) {
      const cells = [
        s.from,
        s.to,
        s.fromStep,
        s.toStep,
        t.name,
        t.module,
        t.layer,
        t.shape.join('x'),
        t.dtype,
        t.numel,
        t.changed,
        t.unchanged,
        t.bitsChanged,
        t.relUpdateNorm,
        t.medianUpdateUlps,
        t.payload.dense,
        t.payload.bitmap,
        t.payload.coo,
        t.payload.xorZstd,
      ];
      lines.push(cells.map(csvCell).join(','));
    }
  }
  return lines.join('\n') + '\n';
}
