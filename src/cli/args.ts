/**
 * Command-line arguments: every flag is declared once, with its value and help, and every command
 * names the flags it reads, so a flag a command would ignore is a usage error rather than a silent no-op.
 */
import { DEFAULT_SETTINGS, type AnalysisSettings } from '../report/schema';
import { LayerListError, parseLayerList } from '../transform/layers';
import type { DeviceSetting } from '../compute/backend';

/** A mistake in what was typed: the CLI prints one line and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
  }
}

export interface FlagSpec {
  /** Placeholder of the value; absent for a switch. */
  value?: string;
  help: string;
  /** May be given more than once (values joined in order). */
  repeats?: boolean;
}

export const FLAGS: Record<string, FlagSpec> = {
  '--json': { value: 'FILE', help: 'write the versioned JSON report (docs/report-schema.md)' },
  '--csv': { value: 'FILE', help: 'write one row per tensor' },
  '--md': { value: 'FILE', help: 'write a Markdown report' },
  '--html': { value: 'FILE', help: 'write one self-contained HTML page (inline SVG charts, no scripts, no network)' },
  '--shard': { value: 'I/N', help: 'analyse shard I of N (1-based; tensors split by work) and write its partial report to --json, for `gatescope merge`' },
  '--tasks': { value: 'N', help: 'shards (Slurm array tasks) per checkpoint' },
  '--partition': { value: 'P', help: 'the Slurm partition of every job' },
  '--sbatch-arg': { value: 'ARG', help: 'passed to every sbatch as it is, e.g. --sbatch-arg=--time=02:00:00 (repeatable)', repeats: true },
  '--formats': { value: 'LIST', help: 'reports beside each merged JSON: md, html (e.g. md,html)' },
  '--wait': { help: 'wait for the jobs; exit 1 naming the failed task and its log if one fails' },
  '--poll': { value: 'SECONDS', help: 'how often --wait asks Slurm (default 5)' },
  '--mkdir': { help: 'create missing folders of the output files (otherwise a missing folder is an error)' },
  '--absolute-paths': { help: "keep absolute checkpoint paths in written reports (default: relative to the report's folder)" },
  '--eta': { value: 'X', help: 'M1 relative tolerance for non-bf16 float tensors (default 1e-3)' },
  '--k': { value: 'N', help: 'top-k subspace of M5, M7, M8 (default 64; capped per weight at min(m, n))' },
  '--alpha': { value: 'X', help: 'share of entries in the principal and low-magnitude masks (default 0.5)' },
  '--k-spectrum': { value: 'N', help: 'singular values used for NSS where a side exceeds 256 (default 256)' },
  '--power-iterations': { value: 'N', help: 'subspace iterations on each base weight at least, before the convergence test may stop them (default 4)' },
  '--oversample': { value: 'N', help: 'oversampling of the randomized SVD (default 10)' },
  '--device': { value: 'auto|cpu|cuda', help: 'where the spectral pass runs (default auto: CUDA when onnxruntime can use it)' },
  '--cache-dir': {
    value: 'DIR',
    help: 'where base subspaces are cached for later checkpoints and runs (default $XDG_CACHE_HOME/gatescope, else ~/.cache/gatescope)',
  },
  '--no-cache': { help: 'neither read nor write the base-subspace cache' },
  '--cache-size': { value: 'MB', help: 'size limit of the base-subspace cache; the oldest entries go first (default 4096)' },
  '--verbose': { help: 'say per checkpoint how many base subspaces came from the cache, the time of each pass and the diff kernel' },
  '--residual-base': {
    help: 'BASE is the residual base a PiSSA (or OLoRA, CorDA) adapter was trained on and saved with: analyse the adapter against it',
  },
  '--no-layers': { help: 'leave the per-layer table out of the terminal output' },
  '--diff-only': { help: 'M2/M3 only, no spectral pass and no comparative verdict' },
  '--base': { value: 'DIR', help: 'the base model of runs whose files name none' },
  '--no-base': { help: "start at the run's first checkpoint, not at its base" },
  '--lr': { value: 'X', help: "the learning rate of the run (default: read from trainer_state.json, training_args.json or the run's configs)" },
  '--out': {
    value: 'PATH',
    help: 'where to write: scramble and mask, a new file or folder (must not exist); slurm, a folder that holds no earlier submission',
  },
  '--layers': { value: 'LIST', help: 'layer indices and ranges, e.g. 20,25 or 4-7' },
  '--rotate': { help: 'rotate v_proj/o_proj per KV head (Haar-random)' },
  '--hadamard': { help: 'rotate with a Hadamard matrix instead (head_dim a power of two)' },
  '--permute': { help: 'permute heads consistently across q/k/v/o' },
  '--seed': { value: 'S', help: 'seed of the random rotation and permutation (default 0)' },
  '--kind': { value: 'union|low|nonprincipal|principal', help: 'which mask to export (default union)' },
  '--all-modules': { help: 'masks for embeddings and the head too' },
  '--quiet': { help: 'no progress and no notices on stderr (errors still print)' },
  '--debug': { help: 'on an error, print the stack trace too' },
  '--help': { help: 'this text' },
  '-h': { help: 'this text' },
};

/** Flags every command takes. */
export const COMMON_FLAGS = ['--quiet', '--debug', '--help', '-h'] as const;

export interface Parsed {
  command: string;
  positionals: string[];
  flags: Map<string, string | true>;
}

/** Parses `argv` for `command`, which reads only `allowed` (plus the common flags). */
export function parseArgs(argv: string[], command = '', allowed: readonly string[] = Object.keys(FLAGS)): Parsed {
  const positionals: string[] = [];
  const flags = new Map<string, string | true>();
  const takes = new Set<string>([...allowed, ...COMMON_FLAGS]);
  let onlyPositionals = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (onlyPositionals || !a.startsWith('-') || a === '-') {
      positionals.push(a);
      continue;
    }
    if (a === '--') {
      onlyPositionals = true;
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    const spec = FLAGS[name];
    if (!spec) throw new UsageError(`unknown option ${name}`, command);
    if (!takes.has(name)) throw new UsageError(`${command} does not take ${name}${command ? ` (see "gatescope help ${command}")` : ''}`, command);
    if (spec.value) {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${name} needs a value (${spec.value})`, command);
      const prev = flags.get(name);
      if (prev !== undefined && !spec.repeats) throw new UsageError(`${name} is given twice`, command);
      flags.set(name, typeof prev === 'string' ? `${prev}\u0000${v}` : v);
    } else {
      if (inline !== undefined) throw new UsageError(`${name} takes no value`, command);
      flags.set(name, true);
    }
  }
  return { command, positionals, flags };
}

export function numberFlag(p: Parsed, name: string, fallback: number, check: (x: number) => boolean, what: string): number {
  const v = p.flags.get(name);
  if (v === undefined) return fallback;
  const x = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(x) || !check(x))
    throw new UsageError(`${name} must be ${what}, got ${String(v)}`, p.command);
  return x;
}

export function stringFlag(p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

export function settingsFromFlags(p: Parsed): AnalysisSettings {
  return {
    ...DEFAULT_SETTINGS,
    eta: numberFlag(p, '--eta', DEFAULT_SETTINGS.eta, (x) => x >= 0 && x < 1, 'a number in [0, 1)'),
    k: numberFlag(p, '--k', DEFAULT_SETTINGS.k, (x) => Number.isInteger(x) && x >= 1, 'a positive integer'),
    alpha: numberFlag(p, '--alpha', DEFAULT_SETTINGS.alpha, (x) => x > 0 && x < 1, 'a number in (0, 1)'),
    kSpectrum: numberFlag(p, '--k-spectrum', DEFAULT_SETTINGS.kSpectrum, (x) => Number.isInteger(x) && x >= 1, 'a positive integer'),
    powerIterations: numberFlag(
      p,
      '--power-iterations',
      DEFAULT_SETTINGS.powerIterations,
      (x) => Number.isInteger(x) && x >= 0 && x <= 50,
      'an integer from 0 to 50',
    ),
    oversample: numberFlag(p, '--oversample', DEFAULT_SETTINGS.oversample, (x) => Number.isInteger(x) && x >= 0 && x <= 1000, 'an integer from 0 to 1000'),
  };
}

export function deviceFlag(p: Parsed): DeviceSetting {
  const d = stringFlag(p, '--device') ?? 'auto';
  if (d !== 'auto' && d !== 'cpu' && d !== 'cuda') throw new UsageError(`--device must be auto, cpu or cuda, got ${d}`, p.command);
  return d;
}

/** "20,25" or "20-23,30" -> sorted unique layer indices. */
/** --layers: the shared layer-list parser, its errors as usage errors. */
export function parseLayers(spec: string, command = ''): number[] {
  try {
    return parseLayerList(spec);
  } catch (e) {
    if (e instanceof LayerListError) throw new UsageError(`--layers: ${e.message}`, command);
    throw e;
  }
}
