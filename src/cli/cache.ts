/**
 * The CLI's base-subspace cache: `$XDG_CACHE_HOME/gatescope` (default `~/.cache/gatescope`), or
 * `--cache-dir DIR`; `--no-cache` for none; `--cache-size MB` its limit. Never inside a checkpoint
 * folder: the same guard as every output.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { BasisCache, DEFAULT_BASIS_CACHE_BYTES } from '../engine/basis-cache';
import { checkOutputPath } from '../formats/output-guard';
import { UsageError, numberFlag, stringFlag, type Parsed } from './args';

/** The cache folder the CLI uses when no flag says otherwise. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  // The XDG spec: a relative XDG_CACHE_HOME is invalid and ignored.
  const root = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache');
  return path.join(root, 'gatescope');
}

export async function basisCacheFromFlags(p: Parsed, inputs: string[], log: (line: string) => void): Promise<BasisCache | undefined> {
  const dirFlag = stringFlag(p, '--cache-dir');
  if (p.flags.has('--no-cache')) {
    const clash = ['--cache-dir', '--cache-size'].filter((f) => p.flags.has(f));
    if (clash.length) throw new UsageError(`--no-cache uses no cache: ${clash.join(', ')} would be ignored`, p.command);
    return undefined;
  }
  const mb = numberFlag(p, '--cache-size', DEFAULT_BASIS_CACHE_BYTES / 1024 ** 2, (x) => x >= 16, 'at least 16 (megabytes)');
  const dir = path.join(path.resolve(dirFlag ?? defaultCacheDir()), 'bases');
  try {
    await checkOutputPath(path.join(dir, 'probe.basis'), { inputs, mkdir: true, what: 'the cache' });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}${dirFlag ? '' : ' (choose another with --cache-dir, or --no-cache)'}`, p.command);
  }
  return new BasisCache(dir, mb * 1024 ** 2, log);
}
