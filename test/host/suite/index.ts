/**
 * The in-host test runner (VS Code's convention: the module at extensionTestsPath exports `run()`, and
 * the extension host exits with 0 when it resolves, 1 when it rejects). Used both by the code-server
 * harness (scripts/host-test.sh) and by test/host/run-electron.js for a desktop VS Code.
 *
 * Environment (set by the launcher, inherited by the extension host):
 *   GATESCOPE_HOST_TEST_EXPECTED       expected.json written by test/host/expect.ts (required)
 *   GATESCOPE_HOST_TEST_OUT            folder for integration-results.json (optional)
 *   GATESCOPE_HOST_TEST_EXTENSION_DIR  where the packaged extension must be loaded from (optional)
 *   GATESCOPE_HOST_TEST_GREP           run only the tests whose title matches (optional)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { format } from 'node:util';
import Mocha from 'mocha';

/** Marks the runner's lines in the extension host's console, which the launcher receives mixed with the workbench's. */
export const MARK = '[gatescope-host] ';

function say(...args: unknown[]): void {
  for (const line of format(...args).split('\n')) console.log(MARK + line);
}

interface Result {
  title: string;
  state: 'passed' | 'failed' | 'pending';
  durationMs: number | null;
  error?: string;
}

export function run(): Promise<void> {
  Mocha.reporters.Base.consoleLog = say;
  const mocha = new Mocha({ ui: 'tdd', reporter: 'spec', color: false, timeout: 120_000, slow: 10_000 });
  if (process.env.GATESCOPE_HOST_TEST_GREP) mocha.grep(process.env.GATESCOPE_HOST_TEST_GREP);
  // The test files are bundled into this one: define mocha's globals, then evaluate them.
  mocha.suite.emit('pre-require', globalThis, 'host-tests', mocha);
  require('./integration.test');

  const results: Result[] = [];
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const runner = mocha.run((failures) => {
      const summary = {
        passed: results.filter((r) => r.state === 'passed').length,
        failed: failures,
        pending: results.filter((r) => r.state === 'pending').length,
        durationMs: Date.now() - t0,
        results,
      };
      const out = process.env.GATESCOPE_HOST_TEST_OUT;
      if (out) {
        try {
          mkdirSync(out, { recursive: true });
          writeFileSync(path.join(out, 'integration-results.json'), JSON.stringify(summary, null, 2) + '\n');
        } catch (e) {
          say(`could not write the results: ${(e as Error).message}`);
        }
      }
      say(`integration: ${summary.passed} passed, ${failures} failed${summary.pending ? `, ${summary.pending} skipped` : ''}`);
      if (failures > 0) reject(new Error(`${failures} host test(s) failed`));
      else if (summary.passed === 0) reject(new Error('no host test ran'));
      else resolve();
    });
    runner.on('pass', (t) => results.push({ title: t.fullTitle(), state: 'passed', durationMs: t.duration ?? null }));
    runner.on('fail', (t, err: Error) =>
      results.push({ title: t.fullTitle(), state: 'failed', durationMs: t.duration ?? null, error: err.stack ?? err.message }),
    );
    runner.on('pending', (t) => results.push({ title: t.fullTitle(), state: 'pending', durationMs: null }));
  });
}
