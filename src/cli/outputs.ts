/**
 * The files a command writes: checked before any work starts (so a typo costs nothing), written
 * atomically at their real paths, with checkpoint paths relative to the report's folder.
 */
import * as path from 'node:path';
import { checkOutputPath } from '../formats/output-guard';
import { withPathsRelativeTo } from '../report/paths';
import { writeFileAtomic } from '../report/write';
import { UsageError, stringFlag, type Parsed } from './args';

export type OutputFlag = '--json' | '--csv' | '--md' | '--html';

export class Outputs {
  private constructor(
    private readonly targets: Map<OutputFlag, string>,
    private readonly absolute: boolean,
  ) {}

  /** Validates every output flag of `p` that is set; `inputs` are the checkpoints and folders the command reads. */
  static async plan(p: Parsed, flags: readonly OutputFlag[], inputs: string[]): Promise<Outputs> {
    const targets = new Map<OutputFlag, string>();
    const seen = new Map<string, OutputFlag>();
    for (const f of flags) {
      const out = stringFlag(p, f);
      if (!out) continue;
      const target = await checkOutputPath(out, { inputs, mkdir: p.flags.has('--mkdir'), what: `the ${f.slice(2).toUpperCase()} output` });
      const other = seen.get(target);
      if (other) throw new UsageError(`${other} and ${f} both write ${out}`, p.command);
      for (const input of inputs) {
        if (path.resolve(input) === target) throw new UsageError(`${f} ${out} is one of the inputs`, p.command);
      }
      seen.set(target, f);
      targets.set(f, target);
    }
    return new Outputs(targets, p.flags.has('--absolute-paths'));
  }

  has(f: OutputFlag): boolean {
    return this.targets.has(f);
  }

  /** Renders `value` (paths made relative to the file's folder unless --absolute-paths) and writes it. */
  async write<T>(f: OutputFlag, value: T, render: (v: T) => string): Promise<void> {
    const target = this.targets.get(f);
    if (!target) return;
    const shown = this.absolute ? value : withPathsRelativeTo(value, path.dirname(target));
    await writeFileAtomic(target, render(shown));
  }
}

export function json(v: unknown): string {
  return JSON.stringify(v, null, 2);
}
