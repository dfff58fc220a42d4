/**
 * `--shard I/N` on `diff` and `analyze` (one shard's partial report), and `gatescope merge` (the parts
 * back into the one report a single process would have written).
 */
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { analyzeShard, type AnalyzeOptions } from '../analysis/analyze';
import {
  MergeError,
  ShardSpecError,
  asPartialReport,
  mergeParts,
  parseShardSpec,
  type LoadedPart,
  type PartialReport,
  type ShardSpec,
} from '../analysis/shards';
import { formatCheckpointReport } from '../report/format-text';
import { withCheckpointPathsFrom } from '../report/paths';
import { UsageError, stringFlag, type Parsed } from './args';
import { Outputs, json } from './outputs';
import { terminal, type Terminal } from './terminal';

/** --shard I/N, checked against what else was asked: one checkpoint, the part to --json, no other output. */
export function shardFromFlags(p: Parsed, checkpoints: number, otherOutputs: readonly string[]): ShardSpec | undefined {
  const v = stringFlag(p, '--shard');
  if (v === undefined) return undefined;
  let shard: ShardSpec;
  try {
    shard = parseShardSpec(v);
  } catch (e) {
    if (e instanceof ShardSpecError) throw new UsageError(`--shard: ${e.message}`, p.command);
    throw e;
  }
  if (checkpoints !== 1) throw new UsageError('--shard analyses one checkpoint: give the base and one checkpoint', p.command);
  if (!p.flags.has('--json')) throw new UsageError('--shard writes a partial report: name it with --json FILE', p.command);
  const other = otherOutputs.filter((f) => p.flags.has(f));
  if (other.length) throw new UsageError(`a shard is not a report: ${other.join(', ')} belong to "gatescope merge"`, p.command);
  return shard;
}

export async function writeShard(base: string, ckpt: string, shard: ShardSpec, opts: AnalyzeOptions, outputs: Outputs, term: Terminal): Promise<PartialReport> {
  const part = await analyzeShard(base, ckpt, shard, opts);
  await outputs.write('--json', part, json);
  const r = part.report;
  term.notice(
    `${r.label ?? r.checkpoint}: shard ${shard.index}/${shard.count}: ${r.tensors.length} of ${part.shard.totalTensors} tensors in ${(r.durationMs / 1000).toFixed(1)} s`,
  );
  return part;
}

/** Reads one part; a relative checkpoint path in it is relative to the part's own folder. */
async function readPart(file: string): Promise<LoadedPart> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new MergeError(`${file}: cannot read it (${err.code ?? err.message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new MergeError(`${file}: not valid JSON (${(e as Error).message}); was the shard still writing it?`);
  }
  const part = asPartialReport(file, value);
  withCheckpointPathsFrom(part.report, file);
  return { file, part };
}

/** A folder stands for the .json files directly in it (a Slurm job's parts folder). */
async function partFiles(args: string[], command: string): Promise<string[]> {
  const files: string[] = [];
  for (const a of args) {
    const st = await fsp.stat(a).catch(() => undefined);
    if (!st) throw new UsageError(`no such part: ${a}`, command);
    if (st.isDirectory()) {
      const inside = (await fsp.readdir(a))
        .filter((e) => e.endsWith('.json'))
        .sort()
        .map((e) => path.join(a, e));
      if (!inside.length) throw new UsageError(`no .json parts in the folder ${a}`, command);
      files.push(...inside);
    } else {
      files.push(a);
    }
  }
  const seen = new Set<string>();
  for (const f of files) {
    const r = path.resolve(f);
    if (seen.has(r)) throw new UsageError(`the part ${f} is given twice`, command);
    seen.add(r);
  }
  return files;
}

export async function cmdMerge(p: Parsed): Promise<number> {
  if (p.positionals.length < 1) throw new UsageError('merge takes the partial reports (files, or folders of them)', p.command);
  if (!['--json', '--md', '--html'].some((f) => p.flags.has(f)))
    throw new UsageError('merge writes the report: name it with --json, --md or --html', p.command);
  const files = await partFiles(p.positionals, p.command);
  for (const f of ['--json', '--md', '--html']) {
    const out = stringFlag(p, f);
    if (out && files.some((x) => path.resolve(x) === path.resolve(out))) throw new UsageError(`${f} ${out} is one of the parts`, p.command);
  }
  const parts: LoadedPart[] = [];
  for (const f of files) parts.push(await readPart(f));
  const report = mergeParts(parts);
  // Never inside the checkpoints the parts analysed.
  const outputs = await Outputs.plan(p, ['--json', '--md', '--html'], [report.base, report.checkpoint]);
  const term = terminal(p.flags.has('--quiet'));
  term.out(formatCheckpointReport(report, { layers: !p.flags.has('--no-layers') }));
  await outputs.write('--json', report, json);
  if (outputs.has('--md')) {
    const { reportsToMarkdown } = await import('../report/markdown');
    await outputs.write('--md', [report], reportsToMarkdown);
  }
  if (outputs.has('--html')) {
    const { reportsToHtml } = await import('../report/html');
    await outputs.write('--html', [report], reportsToHtml);
  }
  return 0;
}
