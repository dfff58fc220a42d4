/** CSV export: one row per tensor per checkpoint, the columns a spreadsheet user filters on. */
import type { CheckpointReport } from './schema';

const COLUMNS = [
  'checkpoint',
  'step',
  'name',
  'module',
  'layer',
  'shape',
  'dtype',
  'numel',
  'unchanged',
  'changed',
  'nonFinite',
  'unchangedLegacyAbs',
  'relUpdateNorm',
  'maxAbsUpdate',
  'medianUpdateUlps',
  'hiddenByPrecision',
  'principalAngleMaxDeg',
  'nss',
  'overlapPrincipal',
  'overlapPrincipalBaseline',
  'overlapLowMagnitude',
  'overlapLowMagnitudeBaseline',
  'offPrincipalEnergy',
  'offPrincipalEnergyBaseline',
  'verdict',
] as const;

export function csvCell(v: string | number | boolean | null | undefined): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : String(v);
  // Quote anything with separators or quotes; neutralise leading formula characters for spreadsheets.
  const safe = /^[=+\-@\t\r]/.test(s) && typeof v !== 'number' ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

export function reportsToCsv(reports: CheckpointReport[]): string {
  const lines = [COLUMNS.join(',')];
  for (const r of reports) {
    for (const t of r.tensors) {
      const sp = t.spectral;
      const row = [
        r.checkpoint,
        r.step,
        t.name,
        t.module,
        t.layer,
        t.shape.join('x'),
        t.dtype,
        t.numel,
        t.unchanged,
        t.changed,
        t.nonFinite,
        t.unchangedLegacyAbs,
        t.relUpdateNorm,
        t.maxAbsUpdate,
        t.medianUpdateUlps,
        t.hiddenByPrecision,
        sp?.principalAngleMaxDeg,
        sp?.nss,
        sp?.overlapPrincipal,
        sp?.overlapPrincipalBaseline,
        sp?.overlapLowMagnitude,
        sp?.overlapLowMagnitudeBaseline,
        sp?.offPrincipalEnergy,
        sp?.offPrincipalEnergyBaseline,
        t.verdict?.label,
      ];
      lines.push(row.map(csvCell).join(','));
    }
  }
  return lines.join('\n') + '\n';
}
