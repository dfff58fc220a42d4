/**
 * What each command takes and says about itself: the source of `gatescope help`, `gatescope help CMD`
 * and `gatescope CMD --help`, and of the rule that a flag a command does not read is a usage error.
 */
import { FLAGS, COMMON_FLAGS } from './args';
import { VERSION } from '../version';

export interface CommandSpec {
  name: string;
  usage: string;
  summary: string;
  details: string[];
  flags: readonly string[];
}

const OUTPUT_FLAGS = ['--mkdir', '--absolute-paths'];
const SVD_FLAGS = [
  '--k',
  '--alpha',
  '--k-spectrum',
  '--power-iterations',
  '--oversample',
  '--device',
  '--cache-dir',
  '--no-cache',
  '--cache-size',
  '--verbose',
];

export const COMMAND_SPECS: CommandSpec[] = [
  {
    name: 'scan',
    usage: 'gatescope scan DIR [--json FILE] [--base DIR]',
    summary: 'List the runs and checkpoints under DIR, their state and their base model.',
    details: ['--base sets the base of runs whose files name none (shown in the listing and the JSON).'],
    flags: ['--json', '--base', ...OUTPUT_FLAGS],
  },
  {
    name: 'diff',
    usage: 'gatescope diff BASE CKPT... [--json F] [--csv F] [--html F] [--eta 1e-3] [--no-layers]',
    summary: 'M1 update sparsity (bf16-exact), M4 row/column ratios and Gate I/III probes of each checkpoint against BASE.',
    details: [
      'BASE and CKPT are checkpoint folders (plain or sharded) or .safetensors files.',
      'A CKPT folder with adapter_model.safetensors and adapter_config.json is a LoRA adapter: it is read as its merge into BASE.',
    ],
    flags: ['--json', '--csv', '--html', '--eta', '--no-layers', '--shard', '--residual-base', ...OUTPUT_FLAGS],
  },
  {
    name: 'analyze',
    usage: 'gatescope analyze BASE CKPT... [--k 64] [--alpha 0.5] [--device auto|cpu|cuda] [--json F] [--md F] [--html F]',
    summary: 'The whole Three-Gate report: the diff pass, the spectral pass (M5-M8) and the regime verdict per tensor and per checkpoint.',
    details: [
      'The spectral pass: M5 principal angles, M6 spectral drift, M7 principal/low-magnitude overlaps, M8 off-principal energy.',
      "The verdict brackets each measure between simulated nulls at the checkpoint's own update size and storage (docs/verdict.md).",
      '--shard I/N analyses one shard of the tensors and writes its partial report to --json; "gatescope merge" joins the parts.',
      'A LoRA adapter folder (adapter_model.safetensors, adapter_config.json) is analysed as its merge into BASE; each targeted weight is reported under its base name.',
    ],
    flags: ['--json', '--md', '--html', '--eta', '--no-layers', '--shard', '--residual-base', ...SVD_FLAGS, ...OUTPUT_FLAGS],
  },
  {
    name: 'merge',
    usage: 'gatescope merge PART... [--json F] [--md F] [--html F]',
    summary: 'Join the partial reports of "analyze --shard I/N" (or "diff --shard") into the report one process would have written.',
    details: ['PART is a partial report, or a folder of them. Every shard of one analysis must be there once, of the same inputs and settings.'],
    flags: ['--json', '--md', '--html', '--no-layers', ...OUTPUT_FLAGS],
  },
  {
    name: 'compare',
    usage: 'gatescope compare BASE RUN_A RUN_B... [--json F] [--md F] [--html F] [--k 64] [--device auto|cpu|cuda] [--diff-only]',
    summary: 'The comparative regime verdict of every pair of runs from one base, M2 Jaccard of changed masks and M3 consensus maps.',
    details: [
      'Per pair: which run is more off-principal per unit of update (95% intervals) and the update-size ratio.',
      'Each RUN is a checkpoint, or a run folder (its last complete checkpoint).',
    ],
    flags: ['--json', '--md', '--html', '--eta', '--diff-only', ...SVD_FLAGS, ...OUTPUT_FLAGS],
  },
  {
    name: 'slurm',
    usage: 'gatescope slurm analyze BASE CKPT... --tasks N --out DIR [--wait] [--partition P] [--sbatch-arg ARG]... | gatescope slurm status DIR [--wait]',
    summary: 'The analysis on a Slurm cluster: per checkpoint, one job array of N shards and a merge job that starts when all succeeded.',
    details: [
      'Reports land in DIR/<checkpoint label>.json (--formats md,html adds those); parts, logs and job scripts stay under DIR.',
      'The nodes run this Node and this Gatescope at the same paths (a shared file system), and read the checkpoints where they are.',
      '"slurm status DIR" shows a submission\'s state; with --wait it waits, and exits 1 naming a failed task and its log.',
    ],
    flags: ['--tasks', '--out', '--wait', '--poll', '--partition', '--sbatch-arg', '--formats', '--eta', ...SVD_FLAGS.filter((f) => f !== '--verbose')],
  },
  {
    name: 'steps',
    usage: 'gatescope steps RUN [--json F] [--csv F] [--md F] [--lr X] [--base DIR | --no-base]',
    summary:
      "Step to step: the changed share, update norm and sync payloads of every consecutive pair of RUN's checkpoints, and what bf16 predicts (Gate III).",
    details: [
      'RUN is a run folder; its base comes first when its files name one (--base names another, --no-base starts at the first checkpoint).',
      "Payloads in bytes: dense, bitmap, COO and XOR+zstd. The prediction needs the learning rate: read from the run's files, or --lr.",
      'Each checkpoint is read once.',
    ],
    flags: ['--json', '--csv', '--md', '--eta', '--lr', '--base', '--no-base', ...OUTPUT_FLAGS],
  },
  {
    name: 'scramble',
    usage: 'gatescope scramble BASE --layers 20,25 [--rotate] [--hadamard] [--permute] [--seed S] --out DIR',
    summary: 'Write a NEW checkpoint folder in which the chosen layers are scrambled without changing the function (Gate II test).',
    details: [
      'Per-KV-head orthogonal rotation of v_proj/o_proj (Haar-random, or --hadamard) and/or a consistent permutation of heads across q/k/v/o.',
      'Details in DIR/SCRAMBLE.json.',
    ],
    flags: ['--layers', '--rotate', '--hadamard', '--permute', '--seed', '--out', '--mkdir'],
  },
  {
    name: 'mask',
    usage:
      'gatescope mask BASE [--kind union|low|nonprincipal|principal] [--alpha 0.5] [--k 64] [--all-modules] [--device auto|cpu|cuda] [--json F] --out FILE.safetensors',
    summary: 'Export sparse-RL masks (U8 0/1, one per linear weight; docs/sparse-rl-masks.md).',
    details: ['principal = top alpha of |rank-k W0|, low = bottom alpha of |W0|, union = low or not principal (default).'],
    flags: ['--kind', '--alpha', '--k', '--all-modules', '--device', '--json', '--out', '--mkdir'],
  },
];

export function commandSpec(name: string): CommandSpec | undefined {
  return COMMAND_SPECS.find((c) => c.name === name);
}

function flagLines(names: readonly string[]): string[] {
  const rows = names.map((n) => [FLAGS[n].value ? `${n} ${FLAGS[n].value}` : n, FLAGS[n].help]);
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([a, b]) => `  ${a.padEnd(w)}  ${b}`);
}

export function commandHelp(c: CommandSpec): string {
  return [
    `Usage: ${c.usage}`,
    '',
    c.summary,
    ...c.details,
    '',
    'Options:',
    ...flagLines([...c.flags, ...COMMON_FLAGS.filter((f) => f !== '-h')]),
    '',
    'Exit codes: 0 ok, 1 analysis error, 2 usage error.',
  ].join('\n');
}

export function globalHelp(): string {
  return [
    `gatescope ${VERSION}: weight-level diagnostics of RL and SFT training runs`,
    '',
    'Usage:',
    ...COMMAND_SPECS.flatMap((c) => [`  ${c.usage}`, `      ${c.summary}`]),
    '',
    '  gatescope help COMMAND     the options of one command (also: gatescope COMMAND --help)',
    '  gatescope --version',
    '',
    'Every command takes --quiet (no progress or notices) and --debug (stack traces on errors).',
    "Reports name checkpoints relative to the report's folder (--absolute-paths keeps them absolute);",
    'nothing is ever written inside a checkpoint folder, and a missing output folder is an error unless --mkdir.',
    'Exit codes: 0 ok, 1 analysis error, 2 usage error.',
  ].join('\n');
}
