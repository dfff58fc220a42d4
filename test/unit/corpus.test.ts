/**
 * The malformed-file corpus (test/support/corpus.ts): 800 broken copies of valid checkpoints. Each must end,
 * within a time bound, in a successful diff with finite numbers or a typed CheckpointFormatError that names
 * the broken file and the problem: no other exception, no hang, bounded memory. A sample goes through the
 * CLI too (exit code 1, the file named). Prints the counts per mutation class and per problem.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { Checkpoint } from '../../src/formats/checkpoint';
import { CheckpointFormatError } from '../../src/formats/errors';
import { diffCheckpoints, type DiffResult } from '../../src/analysis/diff';
import { buildCorpus, nonFiniteNumbers, type CorpusCase } from '../support/corpus';
import { tempDir } from '../support/st';
import { runCli } from '../support/cli';
import { AnalysisPlan } from '../../src/analysis/plan';

/** Each open + diff attempt must end within this. */
const ATTEMPT_MS = 2000;
/** Resident memory may grow at most this much over the whole corpus. */
const MAX_RSS_GROWTH = 300 * 2 ** 20;

type Outcome = { kind: 'ok'; result: DiffResult } | { kind: 'error'; error: unknown } | { kind: 'timeout' };

async function attempt(c: CorpusCase): Promise<Outcome> {
  let base: Checkpoint | undefined;
  let target: Checkpoint | undefined;
  try {
    base = await Checkpoint.open(c.base);
    target = await Checkpoint.open(c.target);
    // A small chunk so that multi-chunk reads run on these small tensors too.
    return { kind: 'ok', result: await diffCheckpoints(AnalysisPlan.of(base, target, 'diff'), { eta: 1e-3, chunkElements: 96 }) };
  } catch (error) {
    return { kind: 'error', error };
  } finally {
    await base?.close();
    await target?.close();
  }
}

async function bounded(c: CorpusCase): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'timeout' }), ATTEMPT_MS);
  });
  try {
    return await Promise.race([attempt(c), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function isInside(root: string, p: string): boolean {
  const r = path.relative(path.resolve(root), path.resolve(p));
  return r === '' || (!r.startsWith(`..${path.sep}`) && r !== '..' && !path.isAbsolute(r));
}

/**
 * Statistics that once overflowed on huge but finite values (a flipped exponent bit): the median update in
 * ULPs (float32 histogram) and ||dW||_F of F64 data. Collected apart and asserted empty by their own test.
 */
const KNOWN_NON_FINITE = /\.(?:medianUpdateUlps|updateNormFro|baseNormFro|relUpdateNorm) = (?:-?Infinity|NaN)$/;

/** What is wrong with an outcome, or undefined; `known` collects the known diff.ts issues instead. */
function judge(c: CorpusCase, o: Outcome, known: string[]): string | undefined {
  if (o.kind === 'timeout') return `no answer within ${ATTEMPT_MS} ms (hang)`;
  if (o.kind === 'ok') {
    if (Array.isArray(c.expect) || c.expect === 'error') return `succeeded, expected ${Array.isArray(c.expect) ? c.expect.join(' | ') : 'an error'}`;
    const bad = nonFiniteNumbers(o.result);
    const unknown = bad.filter((b) => !KNOWN_NON_FINITE.test(b));
    if (unknown.length) return `non-finite numbers in the result: ${unknown.slice(0, 3).join(', ')}`;
    if (bad.length) known.push(`${c.id} (${c.what}): ${bad.join(', ')}`);
    return c.verify?.(o.result);
  }
  const e = o.error;
  if (!(e instanceof CheckpointFormatError))
    return `threw ${(e as Error)?.constructor?.name ?? typeof e}, not CheckpointFormatError: ${(e as Error)?.stack ?? String(e)}`;
  if (!e.message.includes(e.file) || !e.message.includes(`: ${e.problem}: `)) return `the message does not name the file and the problem: ${e.message}`;
  if (!isInside(c.root, e.file)) return `the error names ${e.file}, not a file of the broken checkpoint`;
  if (c.expect === 'ok') return `failed, expected success: ${e.message}`;
  if (Array.isArray(c.expect) && !c.expect.includes(e.problem)) return `problem ${e.problem}, expected ${c.expect.join(' | ')}: ${e.message}`;
  return undefined;
}

function table(title: string, rows: [string, ...(string | number)[]][], headers: string[]): string {
  const all = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const last = headers.length - 1;
  const line = (r: string[]): string =>
    r
      .map((c, i) => (i === 0 || (i === last && last > 1) ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [title, line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...all.slice(1).map(line)].join('\n');
}

interface CorpusRun {
  cases: CorpusCase[];
  failures: string[];
  known: string[];
  errors: Map<string, CheckpointFormatError>;
  classes: string[];
  rssGrowth: number;
  protoChanged: boolean;
  byProblem: Map<string, number>;
}

let dir: string | undefined;
let running: Promise<CorpusRun> | undefined;
after(async () => {
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
});

/** Builds and runs the corpus once; the tests below share the outcome. */
function corpusRun(): Promise<CorpusRun> {
  running ??= (async () => {
    dir = await tempDir('gatescope-corpus-');
    const started = Date.now();
    const corpus = await buildCorpus(dir, { seed: 20250101, headerFlips: 300, mixedHeaderFlips: 60 });
    const built = Date.now();
    const protoKeys = Object.getOwnPropertyNames(Object.prototype).length;
    const failures: string[] = [];
    const known: string[] = [];
    const byClass = new Map<string, { cases: number; ok: number; problems: Map<string, number> }>();
    const byProblem = new Map<string, number>();
    const errors = new Map<string, CheckpointFormatError>();
    let slowest = { ms: 0, id: '' };
    const rss0 = process.memoryUsage().rss;
    let rssPeak = rss0;
    for (const c of corpus.cases) {
      const t0 = Date.now();
      const o = await bounded(c);
      const ms = Date.now() - t0;
      if (ms > slowest.ms) slowest = { ms, id: c.id };
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      const wrong = judge(c, o, known);
      if (wrong) failures.push(`${c.id} (${c.what}): ${wrong}`);
      const row = byClass.get(c.cls) ?? { cases: 0, ok: 0, problems: new Map<string, number>() };
      byClass.set(c.cls, row);
      row.cases++;
      if (o.kind === 'ok') row.ok++;
      const key =
        o.kind === 'ok' ? 'ok (diff succeeded)' : o.kind === 'timeout' ? 'TIMEOUT' : o.error instanceof CheckpointFormatError ? o.error.problem : 'UNTYPED';
      if (o.kind === 'error' && o.error instanceof CheckpointFormatError) {
        errors.set(c.id, o.error);
        row.problems.set(key, (row.problems.get(key) ?? 0) + 1);
      }
      byProblem.set(key, (byProblem.get(key) ?? 0) + 1);
    }
    const ran = Date.now();
    console.log(
      table(
        `\nCorpus: ${corpus.cases.length} cases (seed 20250101), by mutation class`,
        [...byClass].map(([cls, r]) => [
          cls,
          r.cases,
          r.ok,
          r.cases - r.ok,
          [...r.problems]
            .sort((a, b) => b[1] - a[1])
            .map(([p, n]) => `${p} ${n}`)
            .join(', '),
        ]),
        ['class', 'cases', 'ok', 'error', 'problems'],
      ),
    );
    console.log(
      table(
        '\nCorpus: by outcome / returned problem',
        [...byProblem].sort((a, b) => b[1] - a[1]).map(([p, n]) => [p, n]),
        ['problem', 'cases'],
      ),
    );
    console.log(
      `\nCorpus: built in ${built - started} ms, ran in ${ran - built} ms, slowest case ${slowest.ms} ms (${slowest.id}), rss growth ${((rssPeak - rss0) / 2 ** 20).toFixed(1)} MB`,
    );
    return {
      cases: corpus.cases,
      failures,
      known,
      errors,
      classes: [...byClass.keys()],
      rssGrowth: rssPeak - rss0,
      protoChanged: Object.getOwnPropertyNames(Object.prototype).length !== protoKeys,
      byProblem,
    };
  })();
  return running;
}

test('malformed-file corpus: every case succeeds with finite numbers or fails with a typed error naming the file', { timeout: 120_000 }, async () => {
  const r = await corpusRun();
  assert.ok(r.cases.length >= 500, `only ${r.cases.length} cases`);
  assert.deepEqual(r.failures, [], `${r.failures.length} case(s) went wrong:\n${r.failures.join('\n')}`);
  assert.equal(r.byProblem.get('UNTYPED') ?? 0, 0);
  assert.equal(r.byProblem.get('TIMEOUT') ?? 0, 0);
  assert.ok(r.rssGrowth < MAX_RSS_GROWTH, `rss grew by ${r.rssGrowth} bytes`);
  assert.equal(r.protoChanged, false, 'Object.prototype was changed');
});

test('malformed-file corpus through the CLI: exit code 1 naming the same file and problem', { timeout: 60_000 }, async () => {
  const r = await corpusRun();
  const t0 = Date.now();
  // One error case per class first, then a spread over the rest, 20 in all; and two valid ones.
  const errorCases = r.cases.filter((c) => r.errors.has(c.id));
  const sample: CorpusCase[] = [];
  for (const cls of r.classes) {
    const c = errorCases.find((x) => x.cls === cls);
    if (c) sample.push(c);
  }
  for (let i = 0; sample.length < 20 && i < errorCases.length; i += 37) if (!sample.includes(errorCases[i])) sample.push(errorCases[i]);
  assert.ok(sample.length >= 20, `CLI sample of ${sample.length}`);
  const cliFailures: string[] = [];
  for (const c of sample.slice(0, 20)) {
    const e = r.errors.get(c.id)!;
    const out = await runCli(['diff', c.base, c.target, '--quiet']);
    if (out.code !== 1 || !out.err.includes(e.file) || !out.err.includes(`: ${e.problem}: `)) {
      cliFailures.push(`${c.id} (${c.what}): exit ${out.code}, stderr ${JSON.stringify(out.err.slice(0, 300))}, expected 1 naming ${e.file} and ${e.problem}`);
    }
  }
  for (const c of r.cases.filter((x) => x.expect === 'ok').slice(0, 2)) {
    const out = await runCli(['diff', c.base, c.target, '--quiet']);
    if (out.code !== 0) cliFailures.push(`${c.id} (${c.what}): exit ${out.code}, expected 0: ${out.err.slice(0, 300)}`);
  }
  assert.deepEqual(cliFailures, []);
  console.log(`Corpus: 20 error cases and 2 valid ones through the CLI in ${Date.now() - t0} ms`);
});

test('malformed-file corpus: statistics stay finite for huge but finite values', async () => {
  const r = await corpusRun();
  assert.deepEqual(r.known, []);
});
