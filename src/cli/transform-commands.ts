/**
 * The `gatescope scramble` and `gatescope mask` commands, loaded lazily by src/cli.ts.
 */
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { UsageError, numberFlag, parseLayers, stringFlag as str } from './args';
import type { Command } from './analysis-commands';
import { Outputs, json } from './outputs';
import { printableName, terminal } from './terminal';
import { checkOutputPath } from '../formats/output-guard';
import { pct, int, table } from '../report/format-text';
import { MODULE_KINDS } from '../report/schema';
import { scrambleCheckpoint, type ScrambleSummary } from '../transform/scramble';
import { exportMasks, MASK_KINDS, type MaskKind, type MaskSummary } from '../transform/mask';

export { parseLayers };

/** The new file or folder of a transform: checked (and its folder's existence with --mkdir) before any work. */
async function checkNewOutput(p: Parsed, out: string, what: string): Promise<void> {
  const input = p.positionals[0];
  if (
    !(await fsp.stat(input).then(
      () => true,
      () => false,
    ))
  )
    throw new UsageError(`no such checkpoint: ${input}`, p.command);
  await checkOutputPath(out, { inputs: [input], mustBeNew: true, mkdir: p.flags.has('--mkdir'), what });
}

type Parsed = Parameters<Command>[0];

export function formatScrambleSummary(s: ScrambleSummary): string {
  const lines = [`wrote the scrambled copy ${shown(s.out)}`];
  const what = [s.rotate ? `rotate (${s.rotation})` : '', s.permute ? 'permute heads' : ''].filter(Boolean).join(' + ');
  lines.push(`  ${what}, seed ${s.seed}; ${s.attention.numHeads} heads, ${s.attention.numKvHeads} KV heads, head_dim ${s.attention.headDim}`);
  for (const l of s.perLayer) {
    lines.push(
      `  layer ${l.layer}: ${l.changed.length} tensors changed${s.permute ? `; KV heads <- [${l.kvPermutation.join(', ')}], query heads <- [${l.queryPermutation.join(', ')}]` : ''}`,
    );
  }
  lines.push(
    `  ${s.tensorsWritten} tensors written (${(s.bytesWritten / 1e6).toFixed(1)} MB), copied ${s.copiedFiles.length ? s.copiedFiles.join(', ') : 'no config or tokenizer files'}; details in SCRAMBLE.json`,
  );
  return lines.join('\n');
}

export const cmdScramble: Command = async (p) => {
  if (p.positionals.length !== 1) throw new UsageError('scramble takes one base checkpoint', p.command);
  const out = str(p, '--out');
  if (!out) throw new UsageError('scramble needs --out DIR (a new folder)');
  const layersSpec = str(p, '--layers');
  if (!layersSpec) throw new UsageError('scramble needs --layers (e.g. --layers 20,25)');
  const hadamard = p.flags.has('--hadamard');
  const rotate = p.flags.has('--rotate') || hadamard;
  const permute = p.flags.has('--permute');
  if (!rotate && !permute) throw new UsageError('scramble needs --rotate, --hadamard and/or --permute');
  const seed = numberFlag(p, '--seed', 0, (x) => Number.isSafeInteger(x), 'an integer');
  const layers = parseLayers(layersSpec, p.command);
  await checkNewOutput(p, out, 'the scrambled checkpoint');
  const summary = await scrambleCheckpoint(p.positionals[0], { layers, rotate, permute, rotation: hadamard ? 'hadamard' : 'haar', seed, out });
  terminal(p.flags.has('--quiet')).out(formatScrambleSummary(summary));
  return 0;
};

export function formatMaskSummary(s: MaskSummary): string {
  const lines = [
    `wrote ${shown(s.out)}: ${s.maskKind} masks (alpha ${s.alpha}${s.maskKind === 'low' ? '' : `, k ${s.k}, SVD on ${s.device}`}), ${s.tensors.length} tensors`,
  ];
  const rows = MODULE_KINDS.filter((m) => s.byModule[m]).map((m) => {
    const g = s.byModule[m]!;
    return [m, String(g.tensors), int(g.numel), int(g.ones), pct(g.density, 2)];
  });
  rows.push(['all', String(s.tensors.length), int(s.numel), int(s.ones), pct(s.density, 2)]);
  lines.push(table(['module', 'tensors', 'entries', 'mask = 1', 'density'], rows, [false, true, true, true, true]).replace(/^/gm, '  '));
  if (s.skipped.length) lines.push(`  ${s.skipped.length} matrices without a mask (${[...new Set(s.skipped.map((x) => x.reason))].join('; ')})`);
  return lines.join('\n');
}

export const cmdMask: Command = async (p) => {
  if (p.positionals.length !== 1) throw new UsageError('mask takes one base checkpoint', p.command);
  const out = str(p, '--out');
  if (!out) throw new UsageError('mask needs --out FILE.safetensors (a new file)');
  const kind = (str(p, '--kind') ?? 'union') as MaskKind;
  if (!MASK_KINDS.includes(kind)) throw new UsageError(`--kind must be one of ${MASK_KINDS.join(', ')}, got ${kind}`);
  const alpha = numberFlag(p, '--alpha', 0.5, (x) => x > 0 && x < 1, 'a number in (0, 1)');
  const k = numberFlag(p, '--k', 64, (x) => Number.isInteger(x) && x >= 1, 'a positive integer');
  const device = str(p, '--device') ?? 'auto';
  if (device !== 'auto' && device !== 'cpu' && device !== 'cuda') throw new UsageError(`--device must be auto, cpu or cuda, got ${device}`);
  await checkNewOutput(p, out, 'the mask file');
  const outputs = await Outputs.plan(p, ['--json'], [p.positionals[0]]);
  const term = terminal(p.flags.has('--quiet'));
  const quiet = term.quiet;
  const started = Date.now();
  const summary = await exportMasks(p.positionals[0], {
    kind,
    alpha,
    k,
    out,
    device,
    allModules: p.flags.has('--all-modules'),
    log: (line) => term.notice(line),
    onProgress: quiet
      ? undefined
      : (x) => {
          if (Date.now() - started > 1000 && process.stderr.isTTY)
            process.stderr.write(`\r\x1b[Kmask ${x.index}/${x.total} ${printableName(x.tensor).slice(0, 60)}`);
        },
  });
  if (!quiet && process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  term.out(formatMaskSummary(summary));
  await outputs.write('--json', summary, json);
  return 0;
};

/** For messages that name the output relative to where the user is. */
export function shown(p: string): string {
  const r = path.relative(process.cwd(), p);
  return r && !r.startsWith('..') ? r : p;
}
