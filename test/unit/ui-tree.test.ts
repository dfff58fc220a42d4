import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { checkpointView, headline, runDescription, tensorView } from '../../src/ui-model/tree';
import { baseName, pct, sci, shortTensorName } from '../../src/ui-model/format';
import { report, tensor } from '../support/ui-fixtures';

const ckpt = { path: '/runs/a/checkpoint-300', step: 300, state: 'complete' as const };

test('checkpoint rows: every state has a label, an icon and a menu context', () => {
  const r = report(300, []);
  assert.deepEqual(checkpointView(ckpt, { kind: 'done', report: r, fromCache: false }, true), {
    label: 'step 300',
    description: '54.1% unchanged, off-principal',
    icon: 'pass',
    color: 'charts.green',
    tooltip: checkpointView(ckpt, { kind: 'done', report: r, fromCache: true }, true).tooltip,
    context: 'checkpoint.done',
  });
  assert.equal(checkpointView(ckpt, { kind: 'queued' }, true).description, 'queued');
  const run = checkpointView(ckpt, { kind: 'running', fraction: 0.426 }, true);
  assert.equal(run.description, 'analysing 43%');
  assert.equal(run.icon, 'sync~spin');
  assert.equal(checkpointView({ ...ckpt, state: 'incomplete', reason: 'short file' }, { kind: 'none' }, true).description, 'incomplete, waiting');
  assert.equal(checkpointView({ ...ckpt, state: 'needs-merging', mergeCommand: 'python -m verl.model_merger' }, { kind: 'none' }, true).icon, 'tools');
  assert.match(checkpointView(ckpt, { kind: 'error', message: 'bad header\nmore' }, true).description, /^error: bad header$/);
  assert.equal(checkpointView(ckpt, { kind: 'none' }, false).description, 'no base model');
  assert.equal(checkpointView(ckpt, { kind: 'none' }, false, true).description, 'base model');
  assert.equal(checkpointView({ path: '/x/weights.safetensors', step: null, state: 'complete' }, { kind: 'none' }, true).label, 'weights.safetensors');
});

test('headline: diff-only reports show the update size instead of a verdict', () => {
  assert.equal(headline(report(1, [], { verdict: undefined, passes: 'diff' })), '54.1% unchanged, rel. update 4.00e-3');
  assert.equal(headline(report(1, [], { verdict: { label: 'inconclusive', evidence: [] } })), '54.1% unchanged, inconclusive');
  // The label comes with its reason, shortened to the words before any detail.
  const why = { label: 'inconclusive' as const, reason: 'no update: every analysed weight is bit-identical to the base', evidence: [] };
  assert.equal(headline(report(1, [], { verdict: why })), '54.1% unchanged, inconclusive (no update)');
  const tip = checkpointView(
    { path: '/runs/a/checkpoint-1', step: 1, state: 'complete' },
    { kind: 'done', report: report(1, [], { verdict: why }), fromCache: false },
    true,
  ).tooltip;
  assert.match(tip, /verdict: inconclusive: no update: every analysed weight is bit-identical/);
});

test('run and tensor rows', () => {
  assert.equal(runDescription({ checkpoints: [ckpt], base: { resolved: '/m/base', ref: 'base' }, baseOf: [] }), '1 checkpoint, base: base');
  assert.equal(runDescription({ checkpoints: [ckpt, ckpt], base: { resolved: null, ref: null }, baseOf: ['/r1'] }), '2 checkpoints, base of 1 run');
  const t = tensorView(tensor('model.layers.3.self_attn.q_proj.weight'));
  assert.equal(t.label, '3.self_attn.q_proj.weight');
  assert.equal(t.description, '50.0% unchanged, angle 1.5°');
});

test('formatting helpers', () => {
  assert.equal(pct(0.5412), '54.1%');
  assert.equal(pct(null), '-');
  assert.equal(pct(Number.NaN), '-');
  assert.equal(sci(0.004), '4.00e-3');
  assert.equal(sci(0.25), '0.25');
  assert.equal(baseName('C:\\runs\\a\\checkpoint-3'), 'checkpoint-3');
  assert.equal(baseName('/runs/a/'), 'a');
  assert.equal(shortTensorName('model.layers.12.mlp.up_proj.weight'), 'mlp.up_proj.weight');
  assert.equal(shortTensorName('lm_head.weight'), 'lm_head.weight');
});

test('the UI model and the protocol never import vscode (the webview and the tests load them)', async () => {
  const root = path.resolve(__dirname, '..', '..', '..');
  for (const dir of ['src/ui-model', 'src/protocol']) {
    for (const f of await fsp.readdir(path.join(root, dir))) {
      const text = await fsp.readFile(path.join(root, dir, f), 'utf8');
      assert.doesNotMatch(text, /from\s+['"]vscode['"]|require\(\s*['"]vscode['"]\s*\)/, `${dir}/${f}`);
      assert.doesNotMatch(text, /from\s+['"]node:/, `${dir}/${f} must stay browser-safe`);
    }
  }
});
