/**
 * The `gatescope` command line: the same engine as the extension, for clusters and CI.
 * Exit codes: 0 success, 1 analysis error (bad or incomplete checkpoint), 2 usage error.
 * Argument rules live in src/cli/args.ts, the commands' help in src/cli/specs.ts.
 */
import { parseArgs, UsageError } from './cli/args';
import { commandHelp, commandSpec, globalHelp } from './cli/specs';
import { describeError } from './cli/errors';
import { printable } from './cli/terminal';
import type { Command } from './cli/analysis-commands';
import { VERSION } from './version';

export { UsageError };

const COMMANDS: Record<string, () => Promise<Command>> = {
  scan: async () => (await import('./cli/analysis-commands')).cmdScan,
  diff: async () => (await import('./cli/analysis-commands')).cmdDiff,
  analyze: async () => (await import('./cli/analysis-commands')).cmdAnalyze,
  compare: async () => (await import('./cli/analysis-commands')).cmdCompare,
  merge: async () => (await import('./cli/shard-commands')).cmdMerge,
  slurm: async () => (await import('./cli/slurm-command')).cmdSlurm,
  steps: async () => (await import('./cli/steps-command')).cmdSteps,
  scramble: async () => (await import('./cli/transform-commands')).cmdScramble,
  mask: async () => (await import('./cli/transform-commands')).cmdMask,
};

/** Output piped into `head` and closed early: stop quietly, as other command-line tools do. */
function quietOnClosedPipe(): void {
  if (process.stdout.listenerCount('error') > 0) return;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}

function unknownCommand(cmd: string): UsageError {
  return new UsageError(`unknown command ${JSON.stringify(cmd)} (commands: ${Object.keys(COMMANDS).join(', ')})`);
}

export async function main(argv: string[]): Promise<number> {
  quietOnClosedPipe();
  const [cmd, ...rest] = argv;
  const debug = argv.includes('--debug');
  try {
    if (!cmd || cmd === '--help' || cmd === '-h') {
      console.log(globalHelp());
      return cmd ? 0 : 2;
    }
    if (cmd === 'help') {
      const topic = rest.find((a) => !a.startsWith('-'));
      if (!topic) {
        console.log(globalHelp());
        return 0;
      }
      const spec = commandSpec(topic);
      if (!spec) throw unknownCommand(topic);
      console.log(commandHelp(spec));
      return 0;
    }
    if (cmd === '--version') {
      console.log(VERSION);
      return 0;
    }
    const spec = commandSpec(cmd);
    const load = COMMANDS[cmd];
    if (!spec || !load) throw unknownCommand(cmd);
    const parsed = parseArgs(rest, cmd, spec.flags);
    if (parsed.flags.has('--help') || parsed.flags.has('-h')) {
      console.log(commandHelp(spec));
      return 0;
    }
    return await (
      await load()
    )(parsed);
  } catch (e) {
    const outcome = describeError(e, { command: cmd, debug });
    const [first, ...more] = outcome.lines;
    console.error(printable(`gatescope: ${first}`));
    for (const l of more) console.error(printable(l));
    return outcome.code;
  }
}

if (require.main === module) {
  process.env.ORT_DISABLE_TELEMETRY = '1';

  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
