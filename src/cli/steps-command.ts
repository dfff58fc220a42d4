/** `gatescope steps`: how sparse each step of a run is, what bf16 predicts, and what a sparse sync would move. */
import { promises as fsp } from 'node:fs';
import { UsageError, numberFlag, stringFlag } from './args';
import { Outputs, json } from './outputs';
import { progressPrinter, terminal } from './terminal';
import type { Command } from './analysis-commands';
import { DEFAULT_SETTINGS } from '../report/schema';

export const cmdSteps: Command = async (p) => {
  if (p.positionals.length !== 1) throw new UsageError('steps takes one run folder', p.command);
  const [run] = p.positionals;
  const st = await fsp.stat(run).catch(() => undefined);
  if (!st) throw new UsageError(`no such run folder: ${run}`, p.command);
  if (!st.isDirectory()) throw new UsageError(`not a folder: ${run} (steps walks a run's folder of checkpoints)`, p.command);
  const base = stringFlag(p, '--base');
  if (base && p.flags.has('--no-base')) throw new UsageError('--base and --no-base exclude each other', p.command);
  if (
    base &&
    !(await fsp.stat(base).then(
      () => true,
      () => false,
    ))
  )
    throw new UsageError(`no such base checkpoint: ${base}`, p.command);
  const lr = p.flags.has('--lr') ? numberFlag(p, '--lr', 0, (x) => x > 0 && x < 1, 'a learning rate in (0, 1)') : undefined;
  const eta = numberFlag(p, '--eta', DEFAULT_SETTINGS.eta, (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  const inputs = [run, ...(base ? [base] : [])];
  const outputs = await Outputs.plan(p, ['--json', '--csv', '--md'], inputs);
  const term = terminal(p.flags.has('--quiet'));
  const { stepsOfRun } = await import('../analysis/steps');
  const { formatSteps, stepsToCsv, stepsToMarkdown } = await import('../report/steps-format');
  const report = await stepsOfRun(run, {
    base: p.flags.has('--no-base') ? null : base,
    learningRate: lr,
    learningRateSource: '--lr',
    eta,
    onProgress: progressPrinter(term.quiet, run),
  });
  term.out(formatSteps(report));
  await outputs.write('--json', report, json);
  await outputs.write('--csv', report, stepsToCsv);
  await outputs.write('--md', report, stepsToMarkdown);
  return 0;
};
