/**
 * The `gatescope scramble` and `gatescope mask` commands. Registered in src/cli.ts, loaded lazily.
 */
import * as path from 'node:path';
import { UsageError, assertOutsideCheckpoints, numberFlag, type Command } from '../cli';
import { pct, int, table } from '../report/format-text';
import { writeFileAtomic } from '../report/write';
import { MODULE_KINDS } from '../report/schema';
import { TransformInputError } from './guard';
import { scrambleCheckpoint, type ScrambleSummary } from './scramble';
import { exportMasks, MASK_KINDS, type MaskKind, type MaskSummary } from './mask';

type Parsed = Parameters<Command>[0];

function str(p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

/** "20,25" or "20-23,30" -> sorted unique layer indices. */
export function parseLayers(spec: string): number[] {
  const out = new Set<number>();
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new UsageError(`--layers: ${JSON.stringify(part)} is not a layer index or a range a-b`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new UsageError(`--layers: empty range ${part}`);
    for (let l = a; l <= b; l++) out.add(l);
  }
  if (out.size === 0) throw new UsageError('--layers needs at least one layer index');
  return [...out].sort((x, y) => x - y);
}

async function asUsage<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof TransformInputError) throw new UsageError(e.message);
    throw e;
  }
}

export function formatScrambleSummary(s: ScrambleSummary): string {
  const lines = [`wrote the scrambled copy ${shown(s.out)}`];
  const what = [s.rotate ? `rotate (${s.rotation})` : '', s.permute ? 'permute heads' : ''].filter(Boolean).join(' + ');
  lines.push(`  ${what}, seed ${s.seed}; ${s.attention.numHeads} heads, ${s.attention.numKvHeads} KV heads, head_dim ${s.attention.headDim}`);
  for (const l of s.perLayer) {
    lines.push(`  layer ${l.layer}: ${l.changed.length} tensors changed${s.permute ? `; KV heads <- [${l.kvPermutation.join(', ')}], query heads <- [${l.queryPermutation.join(', ')}]` : ''}`);
  }
  lines.push(`  ${s.tensorsWritten} tensors written (${(s.bytesWritten / 1e6).toFixed(1)} MB), copied ${s.copiedFiles.length ? s.copiedFiles.join(', ') : 'no config or tokenizer files'}; details in SCRAMBLE.json`);
  return lines.join('\n');
}

export const cmdScramble: Command = async (p) => {
  if (p.positionals.length !== 1) throw new UsageError('scramble takes one base checkpoint');
  const out = str(p, '--out');
  if (!out) throw new UsageError('scramble needs --out DIR (a new folder)');
  const layersSpec = str(p, '--layers');
  if (!layersSpec) throw new UsageError('scramble needs --layers (e.g. --layers 20,25)');
  const hadamard = p.flags.has('--hadamard');
  const rotate = p.flags.has('--rotate') || hadamard;
  const permute = p.flags.has('--permute');
  if (!rotate && !permute) throw new UsageError('scramble needs --rotate, --hadamard and/or --permute');
  const seed = numberFlag(p, '--seed', 0, (x) => Number.isSafeInteger(x), 'an integer');
  const summary = await asUsage(() => scrambleCheckpoint(p.positionals[0], { layers: parseLayers(layersSpec), rotate, permute, rotation: hadamard ? 'hadamard' : 'haar', seed, out }));
  console.log(formatScrambleSummary(summary));
  return 0;
};

export function formatMaskSummary(s: MaskSummary): string {
  const lines = [`wrote ${shown(s.out)}: ${s.maskKind} masks (alpha ${s.alpha}${s.maskKind === 'low' ? '' : `, k ${s.k}, SVD on ${s.device}`}), ${s.tensors.length} tensors`];
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
  if (p.positionals.length !== 1) throw new UsageError('mask takes one base checkpoint');
  const out = str(p, '--out');
  if (!out) throw new UsageError('mask needs --out FILE.safetensors (a new file)');
  const kind = (str(p, '--kind') ?? 'union') as MaskKind;
  if (!MASK_KINDS.includes(kind)) throw new UsageError(`--kind must be one of ${MASK_KINDS.join(', ')}, got ${kind}`);
  const alpha = numberFlag(p, '--alpha', 0.5, (x) => x > 0 && x < 1, 'a number in (0, 1)');
  const k = numberFlag(p, '--k', 64, (x) => Number.isInteger(x) && x >= 1, 'a positive integer');
  const device = str(p, '--device') ?? 'auto';
  if (device !== 'auto' && device !== 'cpu' && device !== 'cuda') throw new UsageError(`--device must be auto, cpu or cuda, got ${device}`);
  const json = str(p, '--json');
  if (json) assertOutsideCheckpoints(json, p.positionals);
  const quiet = p.flags.has('--quiet');
  const started = Date.now();
  const summary = await asUsage(() => exportMasks(p.positionals[0], {
    kind, alpha, k, out, device, allModules: p.flags.has('--all-modules'),
    log: (line) => console.error(`gatescope: ${line}`),
    onProgress: quiet ? undefined : (x) => {
      if (Date.now() - started > 1000 && process.stderr.isTTY) process.stderr.write(`\r\x1b[Kmask ${x.index}/${x.total} ${x.tensor.slice(0, 60)}`);
    },
  }));
  if (!quiet && process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  console.log(formatMaskSummary(summary));
  if (json) await writeFileAtomic(json, JSON.stringify(summary, null, 2));
  return 0;
};

/** For messages that name the output relative to where the user is. */
export function shown(p: string): string {
  const r = path.relative(process.cwd(), p);
  return r && !r.startsWith('..') ? r : p;
}
