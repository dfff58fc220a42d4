import { SCHEMA_VERSION } from '../../src/report/schema';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { writeSyntheticRun } from '../../src/examples/synthetic';
import type { CheckpointReport, ConsistencyReport } from '../../src/report/schema';
import { tempDir, writeFile } from '../support/st';
import { runCli } from '../support/cli';

test('diff writes the report contract and exits 0; usage errors exit 2; bad checkpoints exit 1', async () => {
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(path.join(dir, 'ex'));
  const json = path.join(dir, 'report.json');
  const csv = path.join(dir, 'report.csv');
  const r = await runCli(['diff', base, checkpoints[0], '--json', json, '--csv', csv, '--quiet']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /unchanged \(M1/);
  assert.match(r.out, /module\s+tensors/);
  const report = JSON.parse(await fsp.readFile(json, 'utf8')) as CheckpointReport;
  assert.equal(report.schemaVersion, SCHEMA_VERSION);
  // Paths relative to the report's folder: a shared report does not carry the author's home folder.
  assert.equal(report.base, path.relative(dir, base));
  assert.equal(report.checkpoint, path.relative(dir, checkpoints[0]));
  assert.ok(report.summary.unchanged! > 0 && report.summary.unchanged! < 1);
  assert.ok(report.summary.unchangedLinear! > 0 && report.summary.unchangedLinear! < 1);
  for (const t of report.tensors) {
    for (const k of ['name', 'module', 'layer', 'shape', 'dtype', 'numel', 'unchanged', 'relUpdateNorm'] as const) assert.ok(k in t, `${t.name} has ${k}`);
  }
  const csvText = await fsp.readFile(csv, 'utf8');
  assert.equal(csvText.trim().split('\n').length, report.tensors.length + 1);

  assert.equal((await runCli(['diff', base])).code, 2);
  assert.equal((await runCli(['diff', base, checkpoints[0], '--k', 'x'])).code, 2);
  assert.equal((await runCli(['nonsense'])).code, 2);
  assert.equal((await runCli(['diff', base, checkpoints[0], '--bogus'])).code, 2);
  // Never write inside a checkpoint folder.
  const inside = await runCli(['diff', base, checkpoints[0], '--json', path.join(checkpoints[0], 'r.json')]);
  assert.equal(inside.code, 2);
  assert.match(inside.err, /refusing to write/);
  await assert.rejects(fsp.stat(path.join(checkpoints[0], 'r.json')));

  const broken = await writeFile(path.join(dir, 'broken', 'model.safetensors'), Buffer.from([9, 0, 0, 0, 0, 0, 0, 0, 0x7b]));
  const bad = await runCli(['diff', base, path.dirname(broken)]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /broken.model\.safetensors/);
  assert.match(bad.err, /still saving/);
});

test('scan lists runs, states and the base', async () => {
  const dir = await tempDir();
  await writeSyntheticRun(path.join(dir, 'ex'));
  const r = await runCli(['scan', dir]);
  assert.equal(r.code, 0);
  assert.match(r.out, /run ex\/run\s+base: .*ex[/\\]base/);
  assert.match(r.out, /300\s+complete\s+hf-trainer/);
});

test('compare prints and writes the comparative verdict of every pair; runs of another base are refused, naming both', { timeout: 120_000 }, async () => {
  const dir = await tempDir();
  const a = await writeSyntheticRun(path.join(dir, 'a'), { seed: 7 });
  const b = await writeSyntheticRun(path.join(dir, 'b'), { seed: 7, lr: 6e-6 });
  const json = path.join(dir, 'out', 'compare.json');
  await fsp.mkdir(path.dirname(json), { recursive: true });
  const md = path.join(dir, 'out', 'compare.md');
  const html = path.join(dir, 'out', 'compare.html');
  // Two checkpoints of one base: the run's step 100 and step 300.
  const r = await runCli(['compare', a.base, a.checkpoints[0], a.checkpoints[2], '--k', '8', '--json', json, '--md', md, '--html', html, '--quiet']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /Comparative regime verdict/);
  const rep = JSON.parse(await fsp.readFile(json, 'utf8')) as ConsistencyReport;
  assert.ok(rep.regime);
  assert.equal(rep.regime.pairs.length, 1);
  const pair = rep.regime.pairs[0];
  assert.deepEqual(
    [pair.a, pair.b],
    rep.runs.map((x) => x.label),
  );
  assert.ok(pair.updateSizeRatio !== null && pair.updateSizeRatio > 0 && pair.updateSizeRatio < 1, `step 100 has the smaller update: ${pair.updateSizeRatio}`);
  assert.ok(pair.moreOffPrincipal === null || pair.moreOffPrincipal === pair.a || pair.moreOffPrincipal === pair.b);
  for (const e of pair.evidence) {
    for (const k of ['measure', 'ratio', 'ciLow', 'ciHigh', 'leans'] as const) assert.ok(k in e, `evidence has ${k}`);
    assert.ok(e.ciLow <= e.ratio && e.ratio <= e.ciHigh);
  }
  // Isotropic synthetic steps of one process at two times: the same geometry, different sizes.
  assert.equal(pair.moreOffPrincipal, null, `${pair.summary} ${JSON.stringify(pair.evidence)}`);
  assert.match(await fsp.readFile(md, 'utf8'), /Comparative regime verdict[\s\S]*no difference beyond the update size/);
  assert.match(await fsp.readFile(html, 'utf8'), /Comparative regime verdict/);
  // A checkpoint whose config names another base.
  const other = await runCli(['compare', a.base, a.checkpoints[2], b.checkpoints[2], '--quiet']);
  assert.equal(other.code, 2);
  assert.ok(other.err.includes(path.resolve(b.base)) || other.err.includes(b.base), other.err);
  assert.match(other.err, /compare runs of one base/);
});
