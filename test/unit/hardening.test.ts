/**
 * Hardening of the engine: checkpoints that change while they are read, nothing ever written inside a
 * checkpoint folder, hostile tensor names in the exports, no code evaluation in src/, and engine faults
 * (a job over the memory cap, a worker that runs out of heap, a worker that cannot start).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { Checkpoint } from '../../src/formats/checkpoint';
import { CheckpointFormatError } from '../../src/formats/errors';
import { buildHeader, writeSafetensors, type TensorSpec } from '../../src/formats/writer';
import { diffCheckpoints } from '../../src/analysis/diff';
import { analyzeCheckpoint } from '../../src/analysis/analyze';
import { scanFolder } from '../../src/discovery/scan';
import { EngineClient, EngineJobError } from '../../src/engine/client';
import type { JobSpec } from '../../src/engine/messages';
import { reportsToMarkdown } from '../../src/report/markdown';
import { reportsToCsv } from '../../src/report/csv';
import { DEFAULT_SETTINGS } from '../../src/report/schema';
import { writeSyntheticRun } from '../../src/examples/synthetic';
import { CORPUS_SHAPE, nonFiniteNumbers } from '../support/corpus';
import { tempDir, rawFile, bf16Bytes, bf16 } from '../support/st';
import { runCli } from '../support/cli';
import { AnalysisPlan } from '../../src/analysis/plan';

const WORKER = path.resolve(__dirname, '..', '..', '..', 'dist', 'worker.js');
const SRC = path.resolve(__dirname, '..', '..', '..', 'src');
const SETTINGS = { ...DEFAULT_SETTINGS, k: 4 };
const POSIX = process.platform !== 'win32';

const dirs: string[] = [];
async function scratch(): Promise<string> {
  const d = await tempDir('gatescope-hardening-');
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

/** Rejects when `p` takes longer than `ms`: a hang fails the test instead of stalling the run. */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints being written

type Rewrite = (file: string) => void;
const REWRITES: [string, Rewrite][] = [
  ['appended to', (f) => fs.appendFileSync(f, Buffer.alloc(4096, 1))],
  ['truncated', (f) => fs.truncateSync(f, Math.floor(fs.statSync(f).size / 2))],
  [
    'rewritten in place, same size',
    (f) => {
      const st = fs.statSync(f);
      const fd = fs.openSync(f, 'r+');
      fs.writeSync(fd, Buffer.alloc(256, 0x3f), 0, 256, st.size - 256);
      fs.closeSync(fd);
      // A filesystem with coarse timestamps could hide a same-size rewrite: move mtime on as a later save would.
      fs.utimesSync(f, st.atime, new Date(st.mtimeMs + 10_000));
    },
  ],
  [
    'replaced by rename, same size',
    (f) => {
      const st = fs.statSync(f);
      const tmp = `${f}.tmp`;
      fs.writeFileSync(tmp, Buffer.concat([fs.readFileSync(f).subarray(0, st.size - 256), Buffer.alloc(256, 0x3f)]));
      fs.utimesSync(tmp, st.atime, new Date(st.mtimeMs + 10_000));
      fs.renameSync(tmp, f);
    },
  ],
];

test('a checkpoint rewritten while the diff reads it fails as changed-while-reading, never with numbers', async () => {
  const dir = await scratch();
  // checkpoint-100 is one file, checkpoint-200 is sharded.
  await writeSyntheticRun(path.join(dir, 'src'), { shape: CORPUS_SHAPE, steps: [100, 200] });
  type Which = 'base' | 'checkpoint' | 'shard';
  const cases: [string, Rewrite, Which][] = [
    ...REWRITES.map(([w, f]) => [w, f, 'checkpoint'] as [string, Rewrite, Which]),
    ['appended to', REWRITES[0][1], 'base'],
    ['truncated', REWRITES[1][1], 'shard'],
  ];
  for (const [i, [what, rewrite, which]] of cases.entries()) {
    const d = path.join(dir, `case${i}`);
    await fsp.cp(path.join(dir, 'src'), d, { recursive: true });
    const baseDir = path.join(d, 'base');
    const ckptDir = path.join(d, 'run', which === 'shard' ? 'checkpoint-200' : 'checkpoint-100');
    const victim =
      which === 'base'
        ? path.join(baseDir, 'model.safetensors')
        : which === 'shard'
          ? path.join(ckptDir, 'model-00001-of-00002.safetensors')
          : path.join(ckptDir, 'model.safetensors');
    assert.ok(fs.statSync(victim).isFile(), victim);
    const base = await Checkpoint.open(baseDir);
    const ckpt = await Checkpoint.open(ckptDir);
    let rewritten = false;
    try {
      const run = diffCheckpoints(AnalysisPlan.of(base, ckpt, 'diff'), {
        eta: 1e-3,
        chunkElements: 64,
        onProgress: (p) => {
          if (p.index === 1) {
            rewrite(victim);
            rewritten = true;
          }
        },
      });
      const outcome = await within(5000, what, run).then(
        () => undefined,
        (e: unknown) => e,
      );
      await assert.rejects(Promise.reject(outcome ?? new Error(`${which} ${what}: the diff succeeded`)), (e: unknown) => {
        assert.ok(e instanceof CheckpointFormatError, `${which} ${what}: ${String(e)}`);
        assert.equal(e.problem, 'changed-while-reading', `${which} ${what}: ${e.message}`);
        assert.equal(e.looksIncomplete, true);
        assert.equal(path.resolve(e.file), path.resolve(victim));
        assert.ok(e.message.includes(victim));
        return true;
      });
      assert.ok(rewritten);
    } finally {
      await base.close();
      await ckpt.close();
    }
  }
});

/** A single-file checkpoint of `count` zero bf16 tensors of `rows x cols`, written sparse (no data blocks). */
async function sparseCheckpoint(dir: string, count: number, rows: number, cols: number): Promise<string> {
  const specs: TensorSpec[] = Array.from({ length: count }, (_, i) => ({ name: `model.layers.${i}.mlp.down_proj.weight`, dtype: 'BF16', shape: [rows, cols] }));
  const { header } = buildHeader(specs);
  await fsp.mkdir(dir, { recursive: true });
  const file = path.join(dir, 'model.safetensors');
  const fh = await fsp.open(file, 'w');
  try {
    await fh.write(header, 0, header.length, 0);
    await fh.truncate(header.length + count * rows * cols * 2);
  } finally {
    await fh.close();
  }
  return file;
}

test('through the engine, a checkpoint growing during the job fails as incomplete and nothing is cached', async () => {
  const dir = await scratch();
  // 24 tensors of 4M entries: the job runs for a while after the first progress message.
  await sparseCheckpoint(path.join(dir, 'base'), 24, 2048, 2048);
  const file = await sparseCheckpoint(path.join(dir, 'ckpt'), 24, 2048, 2048);
  const cacheDir = path.join(dir, 'cache');
  const engine = new EngineClient({ workerPath: WORKER, cacheDir });
  try {
    let grown = false;
    const job = engine.run(
      { kind: 'analyze', base: path.join(dir, 'base'), checkpoint: path.join(dir, 'ckpt'), passes: 'diff', settings: SETTINGS, device: 'cpu' },
      {
        onProgress: () => {
          if (!grown) {
            grown = true;
            fs.appendFileSync(file, Buffer.alloc(1 << 16, 0));
          }
        },
      },
    );
    await assert.rejects(within(15_000, 'engine job', job), (e: unknown) => {
      assert.ok(e instanceof EngineJobError, String(e));
      assert.equal(e.incomplete, true, e.message);
      assert.equal(e.problem, 'changed-while-reading', e.message);
      assert.equal(path.resolve(e.file ?? ''), path.resolve(file));
      return true;
    });
    assert.ok(grown);
    const entries = (await fsp.readdir(cacheDir).catch(() => [] as string[])).filter((f) => f.endsWith('.json'));
    assert.deepEqual(entries, [], 'a failed job leaves no cache entry');
  } finally {
    await engine.dispose();
  }
});

// ---------------------------------------------------------------------------------------------
// Nothing is written inside a checkpoint folder

interface Entry {
  type: string;
  size: number;
  mtimeMs: number;
  ino: number;
  link?: string;
}

/** Every file, folder and link under `root` with type, size, mtime and inode (folder mtimes catch files created and removed). */
async function snapshot(root: string): Promise<Record<string, Entry>> {
  const out: Record<string, Entry> = {};
  const visit = async (p: string): Promise<void> => {
    const st = await fsp.lstat(p);
    const rel = path.relative(root, p) || '.';
    const type = st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
    out[rel] = { type, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, ...(type === 'link' ? { link: await fsp.readlink(p) } : {}) };
    if (type === 'dir') for (const e of (await fsp.readdir(p)).sort()) await visit(path.join(p, e));
  };
  await visit(root);
  return out;
}

test('scan, diff, analyze, compare and the engine with its cache write nothing inside the checkpoint folders', { timeout: 60_000 }, async () => {
  const dir = await scratch();
  const ws = path.join(dir, 'workspace');
  const { base, checkpoints } = await writeSyntheticRun(path.join(ws, 'ex'), { shape: CORPUS_SHAPE, steps: [100, 200, 300] });
  const out = path.join(dir, 'out');
  await fsp.mkdir(out);
  const before = await snapshot(ws);
  // Let a write land in a later millisecond than the snapshot, so an mtime change cannot hide.
  await new Promise((r) => setTimeout(r, 20));

  const scan = await scanFolder(ws);
  assert.equal(scan.runs.find((r) => r.name === 'ex/run')?.checkpoints.length, 3);
  const cli: string[][] = [
    ['scan', ws, '--json', path.join(out, 'scan.json')],
    ['diff', base, ...checkpoints, '--json', path.join(out, 'diff.json'), '--csv', path.join(out, 'diff.csv'), '--quiet'],
    ['analyze', base, checkpoints[0], '--device', 'cpu', '--k', '4', '--json', path.join(out, 'analyze.json'), '--md', path.join(out, 'analyze.md'), '--quiet'],
    ['compare', base, checkpoints[0], checkpoints[2], '--json', path.join(out, 'compare.json')],
  ];
  for (const args of cli) {
    const r = await runCli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
  }
  // Output asked inside a checkpoint folder is refused before any work.
  for (const args of [
    ['diff', base, checkpoints[0], '--csv', path.join(checkpoints[0], 'r.csv')],
    ['analyze', base, checkpoints[0], '--md', path.join(base, 'r.md')],
    ['compare', base, checkpoints[0], checkpoints[1], '--json', path.join(checkpoints[1], 'sub', 'r.json')],
  ]) {
    const r = await runCli(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.err, /refusing to write/);
  }

  const cacheDir = path.join(dir, 'cache');
  const engine = new EngineClient({ workerPath: WORKER, cacheDir });
  try {
    const specs: JobSpec[] = [
      { kind: 'analyze', base, checkpoint: checkpoints[1], passes: 'diff', settings: SETTINGS, device: 'cpu' },
      { kind: 'analyze', base, checkpoint: checkpoints[2], passes: 'full', settings: SETTINGS, device: 'cpu' },
      { kind: 'compare', base, checkpoints: [checkpoints[0], checkpoints[1]], labels: ['a', 'b'], eta: 1e-3 },
    ];
    for (const spec of specs) assert.equal((await within(30_000, spec.kind, engine.run(spec))).fromCache, false);
    for (const spec of specs) assert.equal((await within(30_000, spec.kind, engine.run(spec))).fromCache, true);
  } finally {
    await engine.dispose();
  }
  assert.ok((await fsp.readdir(cacheDir)).some((f) => f.endsWith('.json')));
  assert.ok((await fsp.readdir(out)).length >= 6);
  assert.deepEqual(await snapshot(ws), before);
});

// ---------------------------------------------------------------------------------------------
// Hostile names in the exports

/** RFC 4180 rows. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += c;
  }
  if (cell !== '' || row.length) rows.push([...row, cell]);
  return rows;
}

const XSS = '<img src=x onerror=alert(1)>';
const HOSTILE = [
  `model.layers.0.${XSS}.weight`,
  XSS,
  '=HYPERLINK("http://evil.example","click")',
  '+1+1',
  '-2+3',
  '@SUM(A1:A2)',
  '\t=1+1',
  'name|with|pipes',
  'two\nlines',
  '[link](javascript:alert(1))',
  '**bold** `code` <script>alert(1)</script>',
];

test('hostile tensor names and HTML metadata survive the diff and come out escaped in Markdown and CSV', async () => {
  const dir = await scratch();
  // On POSIX the checkpoint folder's own name is hostile too (it is printed in the Markdown heading).
  const ckptDir = path.join(dir, POSIX ? `ckpt-${XSS}` : 'ckpt');
  const tensors = (delta: number): Record<string, { dtype: string; shape: number[]; data: Uint8Array }> =>
    Object.fromEntries(
      HOSTILE.map((name, i) => [name, { dtype: 'BF16', shape: [2, 2], data: bf16Bytes([1, 2, 3, 4].map((x) => bf16(x * (i + 1) + (x === 4 ? delta : 0)))) }]),
    );
  const file = (delta: number): Buffer => {
    const t = tensors(delta);
    const header: Record<string, unknown> = { __metadata__: { note: '<script>alert(1)</script>', '<b>key</b>': '"><svg onload=alert(1)>' } };
    let off = 0;
    for (const [name, x] of Object.entries(t)) {
      header[name] = { dtype: x.dtype, shape: x.shape, data_offsets: [off, off + x.data.byteLength] };
      off += x.data.byteLength;
    }
    return rawFile(JSON.stringify(header), Buffer.concat(Object.values(t).map((x) => x.data)));
  };
  await fsp.mkdir(path.join(dir, 'base'));
  await fsp.mkdir(ckptDir);
  await fsp.writeFile(path.join(dir, 'base', 'model.safetensors'), file(0));
  await fsp.writeFile(path.join(ckptDir, 'model.safetensors'), file(0.5));
  const ck = await Checkpoint.open(ckptDir);
  assert.equal(ck.files[0].metadata.note, '<script>alert(1)</script>');
  await ck.close();

  const report = await analyzeCheckpoint(path.join(dir, 'base'), ckptDir, { settings: SETTINGS, passes: 'diff' });
  assert.deepEqual(report.tensors.map((t) => t.name).sort(), [...HOSTILE].sort(), 'every name survives the diff unchanged');
  assert.ok(
    report.tensors.every((t) => t.changed === 1),
    'one changed entry per tensor',
  );
  assert.deepEqual(nonFiniteNumbers(report.tensors), []);

  const md = reportsToMarkdown([report]);
  for (const raw of ['<img', '<script', '<b>', '<svg', 'onerror=alert(1)>', '](javascript:']) assert.ok(!md.includes(raw), `raw ${raw} in the Markdown`);
  assert.ok(md.includes('&lt;img src=x onerror=alert\\(1\\)&gt;'), 'the HTML name is shown escaped');
  assert.ok(md.includes('\\[link\\]\\(javascript:alert\\(1\\)\\)'));
  // Table rows keep their column count: pipes in names are escaped, newlines folded.
  const rows = md
    .split('\n')
    .filter(
      (l) => l.startsWith('| ') && !l.startsWith('| module') && !l.startsWith('| tensor') && !/^\|\s*(q|k|v|o|gate|up|down|embed|norm|head|other) \|/.test(l),
    );
  assert.equal(rows.length, HOSTILE.length);
  for (const r of rows) assert.equal(r.split(/(?<!\\)\|/).length - 2, 8, r);

  const csv = reportsToCsv([report]);
  const parsed = parseCsv(csv);
  const [headerRow, ...body] = parsed;
  assert.equal(body.length, HOSTILE.length);
  const nameCol = headerRow.indexOf('name');
  for (const r of body) {
    assert.equal(r.length, headerRow.length, JSON.stringify(r));
    for (const cell of r) {
      // A spreadsheet evaluates a cell that starts with = + - @ (or tab / CR before them): text must not.
      if (/^[=+\-@\t\r]/.test(cell)) assert.ok(Number.isFinite(Number(cell)), `formula-like cell ${JSON.stringify(cell)}`);
    }
  }
  const names = body.map((r) => r[nameCol]);
  assert.ok(names.includes(`'=HYPERLINK("http://evil.example","click")`), names.join(' / '));
  assert.ok(names.includes("'\t=1+1"));
  assert.ok(names.includes("'-2+3"));
  assert.ok(names.includes('two\nlines'));
});

test('no eval, new Function or string-evaluating timers anywhere in src/', async () => {
  const files: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (/\.(?:ts|js|mjs|cjs)$/.test(e.name)) files.push(p);
    }
  };
  await walk(SRC);
  assert.ok(files.length > 20, `only ${files.length} source files under ${SRC}`);
  const banned = [
    /\beval\s*\(/,
    /\bnew\s+Function\b/,
    /(?<![\w.])Function\s*\(\s*['"`]/,
    /\bvm\.(?:runIn\w*|compileFunction|Script)\b/,
    /\bset(?:Timeout|Interval)\s*\(\s*['"`]/,
    /from\s+['"](?:node:)?vm['"]/,
    /require\(\s*['"](?:node:)?vm['"]\s*\)/,
  ];
  const hits: string[] = [];
  for (const f of files) {
    const lines = (await fsp.readFile(f, 'utf8')).split('\n');
    lines.forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, '');
      for (const re of banned) if (re.test(code)) hits.push(`${path.relative(SRC, f)}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(hits, []);
});

// ---------------------------------------------------------------------------------------------
// Engine faults

test('a job whose tensor exceeds the engine memory cap is refused before allocating, and the engine lives on', async () => {
  const dir = await scratch();
  const specs: TensorSpec[] = [
    { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'BF16', shape: [1024, 1024] },
    { name: 'model.layers.0.input_layernorm.weight', dtype: 'BF16', shape: [1024] },
  ];
  const bytes = (s: TensorSpec): Uint8Array => new Uint8Array(s.shape.reduce((a, b) => a * b, 2)).fill(0x3c);
  await writeSafetensors(path.join(dir, 'base', 'model.safetensors'), specs, bytes);
  await writeSafetensors(path.join(dir, 'ckpt', 'model.safetensors'), specs, (s) => bytes(s).map((x, i) => (i % 5 ? x : x + 1)));
  const restarts: string[] = [];
  const engine = new EngineClient({ workerPath: WORKER, cacheDir: null, maxMemoryMb: 24, onRestart: (r) => restarts.push(r) });
  try {
    const spec = {
      kind: 'analyze',
      base: path.join(dir, 'base'),
      checkpoint: path.join(dir, 'ckpt'),
      passes: 'full',
      settings: SETTINGS,
      device: 'cpu',
    } as const;
    await assert.rejects(within(15_000, 'full job', engine.run(spec)), (e: unknown) => {
      assert.ok(e instanceof EngineJobError, String(e));
      assert.equal(e.problem, 'memory-limit');
      assert.equal(e.incomplete, false);
      assert.match(e.message, /q_proj\.weight.*1024 x 1024, BF16.*about \d+ MB in the spectral pass.*memory cap of 24 MB.*diff pass only/);
      return true;
    });
    const pid = engine.pid;
    // The same checkpoint's diff pass fits: same worker, no restart.
    const ok = await within(15_000, 'diff job', engine.run({ ...spec, passes: 'diff' }));
    assert.equal(ok.fromCache, false);
    assert.equal(engine.pid, pid);
    assert.deepEqual(restarts, []);
  } finally {
    await engine.dispose();
  }
});

test('a zero-element tensor with absurd dimensions is refused by the engine guard with a clear message', async () => {
  const dir = await scratch();
  const header = JSON.stringify({ 'model.layers.0.mlp.down_proj.weight': { dtype: 'BF16', shape: [2 ** 40, 0], data_offsets: [0, 0] } });
  await fsp.mkdir(path.join(dir, 'a'));
  await fsp.writeFile(path.join(dir, 'a', 'model.safetensors'), rawFile(header));
  const engine = new EngineClient({ workerPath: WORKER, cacheDir: null });
  try {
    await assert.rejects(
      within(
        15_000,
        'degenerate job',
        engine.run({ kind: 'analyze', base: path.join(dir, 'a'), checkpoint: path.join(dir, 'a'), passes: 'diff', settings: SETTINGS, device: 'cpu' }),
      ),
      (e: unknown) => {
        assert.ok(e instanceof EngineJobError, String(e));
        assert.equal(e.problem, 'memory-limit');
        assert.match(e.message, /down_proj\.weight.*1099511627776 x 0.*diff pass.*implausible/);
        return true;
      },
    );
  } finally {
    await engine.dispose();
  }
});

test('a zero-element tensor with absurd dimensions diffs in-process without allocating per row', async () => {
  const dir = await scratch();
  const header = JSON.stringify({ a: { dtype: 'BF16', shape: [2 ** 40, 0], data_offsets: [0, 0] }, b: { dtype: 'BF16', shape: [5, 0], data_offsets: [0, 0] } });
  const file = path.join(dir, 'degenerate.safetensors');
  await fsp.writeFile(file, rawFile(header));
  const ck = await Checkpoint.open(file);
  try {
    const r = await diffCheckpoints(AnalysisPlan.of(ck, ck, 'diff'), { eta: 1e-3 });
    assert.deepEqual(nonFiniteNumbers(r), []);
  } finally {
    await ck.close();
  }
});

test('a worker that runs out of heap is restarted, the job retried, then rejected with a clear message', { timeout: 60_000 }, async () => {
  const dir = await scratch();
  // 1000 tensors of 4096 x 1: every one carries a 4096-value row ratio in the report, far over a 16 MB heap.
  const specs: TensorSpec[] = Array.from({ length: 1000 }, (_, i) => ({ name: `model.layers.${i}.mlp.up_proj.weight`, dtype: 'BF16', shape: [4096, 1] }));
  const data = new Uint8Array(4096 * 2).map((_, i) => (i * 7) & 0x3f);
  await writeSafetensors(path.join(dir, 'base', 'model.safetensors'), specs, () => data);
  await writeSafetensors(path.join(dir, 'ckpt', 'model.safetensors'), specs, () => data.map((x, i) => (i % 6 ? x : x ^ 1)));
  const small = await writeSyntheticRun(path.join(dir, 'small'), { shape: CORPUS_SHAPE, steps: [100] });
  const restarts: string[] = [];
  const engine = new EngineClient({ workerPath: WORKER, cacheDir: null, maxMemoryMb: 16, maxAttempts: 1, onRestart: (r) => restarts.push(r) });
  try {
    const started = Date.now();
    await assert.rejects(
      within(
        30_000,
        'out-of-memory job',
        engine.run({ kind: 'analyze', base: path.join(dir, 'base'), checkpoint: path.join(dir, 'ckpt'), passes: 'diff', settings: SETTINGS, device: 'cpu' }),
      ),
      (e: unknown) => {
        assert.ok(e instanceof EngineJobError, String(e));
        assert.equal(e.problem, 'out-of-memory', e.message);
        assert.match(e.message, /ran out of memory .*memory cap is 16 MB.*stopped 2 time\(s\)/);
        return true;
      },
    );
    assert.ok(Date.now() - started < 30_000);
    assert.equal(restarts.length, 1, 'restarted once for the one retry');
    assert.match(restarts[0], /ran out of memory/);
    // The client is fine and starts a fresh worker for the next job.
    const r = await within(
      15_000,
      'small job',
      engine.run({ kind: 'analyze', base: small.base, checkpoint: small.checkpoints[0], passes: 'diff', settings: SETTINGS, device: 'cpu' }),
    );
    assert.equal(r.fromCache, false);
  } finally {
    await engine.dispose();
  }
});

test('a worker that cannot start rejects the job once, clearly, without a second start', async () => {
  const dir = await scratch();
  const missing = path.join(dir, 'no-such-worker.js');
  const lines: string[] = [];
  const restarts: string[] = [];
  const engine = new EngineClient({ workerPath: missing, cacheDir: null, log: (l) => lines.push(l), onRestart: (r) => restarts.push(r) });
  try {
    await assert.rejects(
      within(10_000, 'start', engine.run({ kind: 'analyze', base: dir, checkpoint: dir, passes: 'diff', settings: SETTINGS, device: 'cpu' })),
      (e: unknown) => {
        assert.ok(e instanceof EngineJobError, String(e));
        assert.match(e.message, /could not start.*exit code 1.*Cannot find module/);
        return true;
      },
    );
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(lines.filter((l) => /Cannot find module/.test(l)).length, 1, 'one start only');
    assert.deepEqual(restarts, []);
    assert.equal(engine.state, 'stopped');
  } finally {
    await engine.dispose();
  }
});
