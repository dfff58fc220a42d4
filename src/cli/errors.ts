/**
 * Every error the CLI can meet ends in one clear line naming the file and the problem, and an exit
 * code: 2 for what was typed, 1 for what was found. A stack trace only with --debug.
 */
import { CheckpointFormatError, describeSystemError } from '../formats/errors';
import { OutputPathError } from '../formats/output-guard';
import { DeviceUnavailableError } from '../compute/errors';
import { UsageError } from './args';

export interface ErrorOutcome {
  code: 1 | 2;
  lines: string[];
}

function firstLine(s: string): string {
  return s.split('\n')[0];
}

export function describeError(e: unknown, opts: { command?: string; debug?: boolean } = {}): ErrorOutcome {
  const err = e instanceof Error ? e : new Error(String(e));
  const trace = opts.debug && err.stack ? [err.stack] : [];
  if (err instanceof UsageError) {
    const cmd = err.command ?? opts.command;
    return { code: 2, lines: [err.message, `Run "gatescope help${cmd ? ` ${cmd}` : ''}" for usage.`, ...trace] };
  }
  if (err instanceof OutputPathError || err.name === 'TransformInputError') return { code: 2, lines: [err.message, ...trace] };
  if (err instanceof CheckpointFormatError) {
    const hint = err.looksIncomplete ? ['(the checkpoint looks incomplete: is training still saving it? try again when it is done)'] : [];
    return { code: 1, lines: [err.message, ...hint, ...trace] };
  }
  if (err instanceof DeviceUnavailableError) return { code: 1, lines: [err.message, ...trace] };
  if (err.name === 'AbortError') return { code: 1, lines: ['cancelled', ...trace] };
  if (err.name === 'ComparisonError' || err.name === 'StepsError' || err.name === 'MergeError' || err.name === 'SlurmError')
    return { code: 1, lines: [err.message, ...trace] };
  const sys = describeSystemError(err);
  if (sys) return { code: 1, lines: [sys, ...trace] };
  if (err instanceof RangeError && /allocation failed|Invalid array length|Invalid typed array length/i.test(err.message)) {
    return { code: 1, lines: [`out of memory: ${firstLine(err.message)} (a tensor too large for this machine's memory?)`, ...trace] };
  }
  return {
    code: 1,
    lines: [`internal error: ${firstLine(err.message)}${opts.debug ? '' : ' (run again with --debug for the stack trace, and please report it)'}`, ...trace],
  };
}
