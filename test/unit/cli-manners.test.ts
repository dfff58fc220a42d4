/**
 * The CLI explains itself and fails in one clear line: per-command help, inapplicable flags refused,
 * every known error path without a stack trace, one output guard for every file written, escaped
 * terminal output, relative paths in reports, run-and-step labels, and partial files cleaned up.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { writeSyntheticRun } from '../../src/examples/synthetic';
import { describeError } from '../../src/cli/errors';
import { LayerListError, parseLayerList } from '../../src/transform/layers';
import { parseLayers } from '../../src/cli/args';
import { printable, printableName } from '../../src/cli/terminal';
import { checkpointLabel } from '../../src/discovery/layout';
import { withPathsRelativeTo } from '../../src/report/paths';
import { removeStalePartials } from '../../src/formats/partial';
import type { CheckpointReport } from '../../src/report/schema';
import { runCli } from '../support/cli';
import { rawFile, bf16Bytes, bf16, tempDir } from '../support/st';

let dir: string;
let base: string;
let ckpt: string;

before(async () => {
  process.env.ORT_DISABLE_TELEMETRY = '1';
  dir = await tempDir('gatescope-cli-');
  const run = await writeSyntheticRun(path.join(dir, 'ex'));
  base = run.base;
  ckpt = run.checkpoints[0];
});
after(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/** One line on stderr, no stack frame. */
function assertOneLine(err: string, re: RegExp): void {
  const lines = err.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('Run "gatescope help'));
  assert.equal(lines.length, 1, `one line: ${JSON.stringify(err)}`);
  assert.match(lines[0], re);
  assert.doesNotMatch(err, /\n\s+at /, 'no stack trace');
}

test('per-command help: gatescope help CMD and CMD --help print that command; the global help lists every command', async () => {
  for (const args of [
    ['help', 'diff'],
    ['diff', '--help'],
    ['diff', '-h'],
  ]) {
    const r = await runCli(args);
    assert.equal(r.code, 0, args.join(' '));
    assert.match(r.out, /^Usage: gatescope diff BASE CKPT/);
    assert.match(r.out, /--eta X/);
    assert.doesNotMatch(r.out, /gatescope scramble/, 'not the global help');
    assert.doesNotMatch(r.out, /--k N/, 'only the flags diff reads');
  }
  const analyze = await runCli(['help', 'analyze']);
  assert.match(analyze.out, /--device auto\|cpu\|cuda/);
  assert.match(analyze.out, /--mkdir/);
  const global = await runCli(['help']);
  for (const c of ['scan', 'diff', 'analyze', 'compare', 'scramble', 'mask']) assert.match(global.out, new RegExp(`gatescope ${c} `));
  const unknown = await runCli(['help', 'nonsense']);
  assert.equal(unknown.code, 2);
  assertOneLine(unknown.err, /unknown command "nonsense" \(commands: scan, diff/);
});

test('flags a command does not read are usage errors (exit 2), naming the command', async () => {
  const cases: [string[], RegExp][] = [
    [['diff', base, ckpt, '--md', path.join(dir, 'x.md')], /diff does not take --md/],
    [['diff', base, ckpt, '--device', 'cuda'], /diff does not take --device/],
    [['scan', dir, '--k', '5'], /scan does not take --k/],
    [['scramble', base, '--layers', '0', '--rotate', '--out', path.join(dir, 's'), '--json', path.join(dir, 's.json')], /scramble does not take --json/],
    [['compare', base, ckpt, ckpt, '--diff-only', '--k', '8'], /--diff-only runs no spectral pass: --k would be ignored/],
    [['diff', base, ckpt, '--bogus'], /unknown option --bogus/],
    [['diff', base, ckpt, '--quiet=yes'], /--quiet takes no value/],
    [['diff', base, ckpt, '--eta', '1e-3', '--eta', '1e-4'], /--eta is given twice/],
    [['diff', base, ckpt, '--eta', ' '], /--eta must be a number/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assertOneLine(r.err, re);
    assert.match(r.err, /Run "gatescope help (diff|scan|scramble|compare)" for usage/);
  }
});

test('every known error path ends in one clear line, never a stack trace; --debug adds the stack', async () => {
  const cuda = await runCli(['analyze', base, ckpt, '--device', 'cuda', '--quiet', '--k', '8']);
  if (cuda.code !== 0) {
    assert.equal(cuda.code, 1);
    assertOneLine(cuda.err, /CUDA compute was requested \(device 'cuda'\) but onnxruntime could not use it/);
  }
  const folder = path.join(dir, 'a-folder');
  await fsp.mkdir(folder, { recursive: true });
  const cases: [string[], number, RegExp][] = [
    [['diff', base, ckpt, '--json', folder, '--quiet'], 2, /cannot write the JSON output .*a-folder: it is a folder/],
    [['diff', base, path.join(dir, 'missing'), '--quiet'], 2, /no such checkpoint: .*missing/],
    [['scramble', base, '--layers', '0-100000000', '--rotate', '--out', path.join(dir, 'scr')], 2, /--layers: 0-100000000 goes past layer 100000/],
    [['scramble', base, '--layers', '5-3,7', '--rotate', '--out', path.join(dir, 'scr')], 2, /--layers: empty range 5-3/],
    [['mask', base, '--out', folder], 2, /refusing to write the mask file .*a-folder: it already exists/],
    [['scan', path.join(dir, 'nope')], 2, /not a folder: /],
  ];
  for (const [args, code, re] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.err}`);
    assertOneLine(r.err, re);
  }
  assert.ok(
    !(await fsp.stat(path.join(dir, 'scr')).then(
      () => true,
      () => false,
    )),
    'nothing written',
  );

  // Errors the CLI cannot foresee: one line that says what and where, the stack only on request.
  const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write', path: '/data/report.json' });
  assert.deepEqual(describeError(enospc).lines, ['/data/report.json: no space left on the device (write)']);
  const bug = describeError(new TypeError("Cannot read properties of undefined (reading 'x')\nsecond line"));
  assert.equal(bug.code, 1);
  assert.deepEqual(bug.lines, [
    "internal error: Cannot read properties of undefined (reading 'x') (run again with --debug for the stack trace, and please report it)",
  ]);
  const debug = describeError(new TypeError('boom'), { debug: true });
  assert.equal(debug.lines.length, 2);
  assert.match(debug.lines[1], /TypeError: boom\n\s+at /);
});

test('one output guard: symlinks resolved, any folder holding weights refused, missing folders need --mkdir', async () => {
  const other = (await writeSyntheticRun(path.join(dir, 'other'))).checkpoints[1];
  const link = path.join(dir, 'link-to-ckpt');
  await fsp.symlink(ckpt, link);
  const loose = path.join(dir, 'loose');
  await fsp.mkdir(loose);
  // A checkpoint file without the .safetensors extension, named on the command line.
  await fsp.copyFile(path.join(ckpt, 'model.safetensors'), path.join(loose, 'weights-step100'));
  const refused: [string[], RegExp][] = [
    [['diff', base, ckpt, '--json', path.join(link, 'r.json')], /refusing to write the JSON output .* inside the checkpoint folder/],
    [['diff', base, ckpt, '--json', path.join(other, 'r.json')], /its folder .* holds model weights \(model\.safetensors\)/],
    [['diff', base, ckpt, '--json', path.join(other, 'sub', 'r.json'), '--mkdir'], /inside the checkpoint folder/],
    [['scan', ckpt, '--json', path.join(ckpt, 'scan.json')], /inside the checkpoint folder/],
    [['diff', base, path.join(loose, 'weights-step100'), '--json', path.join(loose, 'r.json')], /inside the checkpoint folder/],
    [['diff', base, ckpt, '--json', path.join(dir, 'new-folder', 'r.json')], /the folder .*new-folder does not exist \(create it, or pass --mkdir\)/],
    [['diff', base, ckpt, '--json', path.join(dir, 'same.json'), '--csv', path.join(dir, 'same.json')], /--json and --csv both write/],
  ];
  for (const [args, re] of refused) {
    const r = await runCli([...args, '--quiet']);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assertOneLine(r.err, re);
  }
  for (const f of [
    path.join(ckpt, 'r.json'),
    path.join(other, 'r.json'),
    path.join(ckpt, 'scan.json'),
    path.join(loose, 'r.json'),
    path.join(dir, 'new-folder'),
  ]) {
    assert.ok(
      !(await fsp.stat(f).then(
        () => true,
        () => false,
      )),
      `${f} not written`,
    );
  }
  const made = await runCli(['diff', base, ckpt, '--json', path.join(dir, 'new-folder', 'deeper', 'r.json'), '--mkdir', '--quiet']);
  assert.equal(made.code, 0, made.err);
  assert.ok((await fsp.stat(path.join(dir, 'new-folder', 'deeper', 'r.json'))).isFile());
});

test('--quiet silences every notice; k is shown as used per weight; reports are labelled by run and step with relative paths', async () => {
  const quiet = await runCli(['analyze', base, ckpt, '--device', 'auto', '--k', '100000', '--quiet', '--no-layers']);
  assert.equal(quiet.code, 0, quiet.err);
  assert.equal(quiet.err, '', 'no CUDA fallback line, no progress');
  assert.match(quiet.out, /Gate II \(spectral, k=100000 requested, \d+(-\d+)? used \(capped at min\(m, n\) per weight\)/);
  assert.match(quiet.out, /^run step 100: checkpoint /m, 'labelled by run and step');

  // A verl layout: the label is the run and step, not the layout's folder name.
  assert.equal(checkpointLabel(path.join('runs', 'rl-kl', 'global_step_80', 'actor', 'huggingface')), 'rl-kl step 80');
  assert.equal(checkpointLabel(path.join('runs', 'sft', 'checkpoint-160')), 'sft step 160');
  assert.equal(checkpointLabel(path.join('out', 'grpo', '_actor', 'global_step20_hf')), 'grpo step 20');
  assert.equal(checkpointLabel(path.join('models', 'base')), 'base');

  const out = path.join(dir, 'reports');
  await fsp.mkdir(out);
  const json = path.join(out, 'r.json');
  const html = path.join(out, 'r.html');
  assert.equal((await runCli(['diff', base, ckpt, '--json', json, '--html', html, '--quiet'])).code, 0);
  const rel = JSON.parse(await fsp.readFile(json, 'utf8')) as CheckpointReport;
  assert.equal(rel.base, path.relative(out, base));
  assert.equal(rel.checkpoint, path.relative(out, ckpt));
  assert.equal(rel.label, 'run step 100');
  const page = await fsp.readFile(html, 'utf8');
  assert.ok(!page.includes(dir), 'the page carries no absolute path');
  assert.match(page, /<a href="#report-0">run step 100<\/a>|<h2>run step 100<\/h2>/);
  const absJson = path.join(out, 'abs.json');
  assert.equal((await runCli(['diff', base, ckpt, '--json', absJson, '--absolute-paths', '--quiet'])).code, 0);
  const abs = JSON.parse(await fsp.readFile(absJson, 'utf8')) as CheckpointReport;
  assert.equal(abs.checkpoint, path.resolve(ckpt));
  // Only path fields move; names and numbers stay.
  const moved = withPathsRelativeTo(
    { base: '/a/b', runs: [{ checkpoint: '/a/c/d', label: '/not/a/path/key' }], baseOf: ['/a/e'], source: '/a/b/config.json (_name_or_path)' },
    '/a',
  );
  assert.deepEqual(moved, { base: 'b', runs: [{ checkpoint: 'c/d', label: '/not/a/path/key' }], baseOf: ['e'], source: 'b/config.json (_name_or_path)' });
});

test('scan --base sets the base of runs whose files name none', async () => {
  const runDir = path.join(dir, 'unnamed');
  const src = (await writeSyntheticRun(path.join(dir, 'src'))).checkpoints[0];
  await fsp.mkdir(path.join(runDir, 'checkpoint-5'), { recursive: true });
  await fsp.copyFile(path.join(src, 'model.safetensors'), path.join(runDir, 'checkpoint-5', 'model.safetensors'));
  const before = await runCli(['scan', runDir]);
  assert.match(before.out, /base: unknown/);
  const r = await runCli(['scan', runDir, '--base', base, '--json', path.join(dir, 'scan.json')]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /base: .*ex[/\\]base\s+\[from --base\]/);
  const scan = JSON.parse(await fsp.readFile(path.join(dir, 'scan.json'), 'utf8')) as { runs: { base: { resolved: string } }[] };
  assert.equal(scan.runs[0].base.resolved, path.relative(dir, base));
  const missing = await runCli(['scan', runDir, '--base', path.join(dir, 'no-such-base')]);
  assert.equal(missing.code, 2);
  assertOneLine(missing.err, /no such base checkpoint/);
});

test('terminal output escapes control characters in every name', async () => {
  assert.equal(printable('a\x1b[31mred\x07\u202e\n'), 'a\\x1b[31mred\\x07\\u202e\n');
  assert.equal(printableName('x\ny\r'), 'x\\ny\\x0d');
  const hostile = path.join(dir, 'hostile');
  const names = ['model.layers.0.mlp.up_proj.weight', 'model.layers.0.mlp.down_proj.weight', 'evil\x1b]0;pwned\x07\x1b[2J.weight'];
  const file = (delta: number, which: string[]): Buffer => {
    const header: Record<string, unknown> = {};
    const data: Uint8Array[] = [];
    let off = 0;
    for (const n of which) {
      const d = bf16Bytes([1, 2, 3, 4].map((x) => bf16(x + delta)));
      header[n] = { dtype: 'BF16', shape: [2, 2], data_offsets: [off, off + d.byteLength] };
      data.push(d);
      off += d.byteLength;
    }
    return rawFile(JSON.stringify(header), Buffer.concat(data));
  };
  await fsp.mkdir(path.join(hostile, 'base'), { recursive: true });
  await fsp.mkdir(path.join(hostile, 'ck\x1b[31m'), { recursive: true });
  await fsp.writeFile(path.join(hostile, 'base', 'model.safetensors'), file(0, names));
  await fsp.writeFile(path.join(hostile, 'ck\x1b[31m', 'model.safetensors'), file(0.5, names.slice(0, 2)));
  const r = await runCli(['diff', path.join(hostile, 'base'), path.join(hostile, 'ck\x1b[31m'), '--quiet']);
  assert.equal(r.code, 0, r.err);
  // eslint-disable-next-line no-control-regex
  assert.ok(!/[\x00-\x09\x0b-\x1f\x7f]/.test(r.out + r.err), 'no raw control character reaches the terminal');
  assert.ok(r.out.includes('evil\\x1b]0;pwned\\x07\\x1b[2J.weight'), 'the hostile name is shown escaped');
  assert.ok(r.out.includes('ck\\x1b[31m'), 'the hostile folder name too');
});

test('partial files of a killed writer are removed by the next write into that folder; live writers are left alone', async () => {
  const out = path.join(dir, 'partials');
  await fsp.mkdir(out);
  // A PID far above any PID limit: that writer is gone.
  const dead = path.join(out, '.r.json.gatescope-partial-2147483646-0123abcd');
  const deadDir = path.join(out, '.scrambled.gatescope-partial-2147483646-89abcdef');
  const live = path.join(out, `.r.json.gatescope-partial-${process.pid}-fedcba98`);
  const foreign = path.join(out, '.r.json.partial-1-0123abcd');
  await fsp.writeFile(dead, 'half');
  await fsp.mkdir(deadDir);
  await fsp.writeFile(path.join(deadDir, 'model.safetensors'), 'half');
  await fsp.writeFile(live, 'half');
  await fsp.writeFile(foreign, 'not ours');
  const r = await runCli(['diff', base, ckpt, '--json', path.join(out, 'r.json'), '--quiet']);
  assert.equal(r.code, 0, r.err);
  const left = (await fsp.readdir(out)).sort();
  assert.deepEqual(left, [path.basename(foreign), path.basename(live), 'r.json'].sort());
  assert.deepEqual(await removeStalePartials(out), []);
});

test('--layers is parsed strictly', () => {
  assert.deepEqual(parseLayers('20,25'), [20, 25]);
  assert.deepEqual(parseLayers('4-6,2'), [2, 4, 5, 6]);
  assert.throws(() => parseLayers('5-3,7'), /empty range 5-3/);
  assert.throws(() => parseLayers('1,,2'), /empty entry/);
  assert.throws(() => parseLayers('x'), /not a layer index/);
  assert.throws(() => parseLayers('0-100001'), /goes past layer 100000/);
  // The extension's input box uses the same parser: "5-3,7" was once silently [7] there.
  assert.throws(
    () => parseLayerList('5-3,7'),
    (e: unknown) => e instanceof LayerListError && /empty range 5-3/.test(e.message),
  );
  assert.deepEqual(parseLayerList(' 0 - 2 , 5 '), [0, 1, 2, 5]);
});
