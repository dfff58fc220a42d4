/**
 * The Step to Step panel's model (src/ui-model/steps.ts) on the example runs: every share it shows comes
 * from the numpy reference's counts (examples/runs/<run>/steps-reference.json), pooled here by module and
 * by layer from the tensor names; the band is the report's prediction; what crosses to the webview is
 * validated both ways.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { stepsOfRun } from '../../src/analysis/steps';
import { checkpointsSinceWalk, walkIsCurrent, slimSteps, stepRow, stepsHeadline, stepsView } from '../../src/ui-model/steps';
import { parseHostMessage, parsePanelState, parseWebviewMessage, type StepsData } from '../../src/protocol/messages';
import type { StepsReport } from '../../src/report/steps-schema';

const EXAMPLES = path.resolve(__dirname, '..', '..', '..', 'examples');

interface RefTensor {
  name: string;
  module: string;
  numel: number;
  changed: number;
  nonFinite: number;
}
interface RefStep {
  changed: number;
  numel: number;
  tensors: RefTensor[];
}

const reports = new Map<string, Promise<StepsReport>>();
function walk(run: string): Promise<StepsReport> {
  let r = reports.get(run);
  if (!r) {
    r = stepsOfRun(path.join(EXAMPLES, 'runs', run), { threads: 1 });
    reports.set(run, r);
  }
  return r;
}

async function reference(run: string): Promise<RefStep[]> {
  return (JSON.parse(await fsp.readFile(path.join(EXAMPLES, 'runs', run, 'steps-reference.json'), 'utf8')) as { steps: RefStep[] }).steps;
}

function layerOf(name: string): string | null {
  const m = /(?:^|\.)layers\.(\d+)\./.exec(name);
  return m ? m[1] : null;
}

function pooledShare(tensors: RefTensor[], key: (t: RefTensor) => string | null, want: string): number | null {
  let changed = 0;
  let finite = 0;
  for (const t of tensors) {
    if (key(t) !== want) continue;
    changed += t.changed;
    finite += t.numel - t.nonFinite;
  }
  return finite > 0 ? changed / finite : null;
}

for (const run of ['rl-kl', 'sft']) {
  test(`the steps view of ${run}: shares from the reference's counts, grids pooled by module and layer, the band from the prediction`, async () => {
    const report = await walk(run);
    const ref = await reference(run);
    const v = stepsView(report);
    assert.equal(v.rows.length, ref.length);
    v.rows.forEach((row, i) => {
      const s = report.steps[i];
      assert.ok(
        Math.abs(row.changed! - ref[i].changed / ref[i].numel) <= 1e-12,
        `${row.label}: changed share ${row.changed} vs ${ref[i].changed / ref[i].numel}`,
      );
      const p = s.prediction;
      assert.ok(p, `${run} has a learning rate and bf16 weights: a prediction for ${row.label}`);
      assert.equal(row.bandLow, 1 - p.unchangedAtLr);
      assert.equal(row.bandHigh, 1 - p.unchangedAt10Lr);
      assert.ok(row.bandLow <= row.bandHigh, 'more can change under 10 lr than under lr');
      assert.equal(row.agreement, p.agreement);
      assert.equal(row.note, p.note);
      assert.equal(row.xorZstdShare, s.payload.xorZstd! / s.payload.dense);
      assert.match(row.label, s.fromBase ? /^base → \d+$/ : /^\d+ → \d+$/);
    });
    for (const [g, key] of [
      [v.byModule, (t: RefTensor) => t.module],
      [v.byLayer, (t: RefTensor) => layerOf(t.name)],
    ] as const) {
      assert.deepEqual(
        g.cols,
        v.rows.map((r) => r.label),
      );
      const names = new Set(ref.flatMap((s) => s.tensors.map(key)).filter((k): k is string => k !== null));
      assert.deepEqual([...g.rows].sort(), [...names].sort(), 'one row per group the tensors name');
      g.rows.forEach((row, ri) => {
        ref.forEach((s, ci) => {
          const want = pooledShare(s.tensors, key, row);
          const got = g.cells[ri * g.cols.length + ci];
          if (want === null) assert.equal(got, null);
          else assert.ok(got !== null && Math.abs(got - want) <= 1e-12, `${row} @ ${g.cols[ci]}: ${got} vs ${want}`);
        });
      });
      const vals = g.cells.filter((c): c is number => c !== null);
      assert.equal(g.min, Math.min(...vals));
      assert.equal(g.max, Math.max(...vals));
    }
    assert.deepEqual(
      v.byLayer.rows,
      [...v.byLayer.rows].sort((a, b) => Number(a) - Number(b)),
      'layers in numeric order',
    );
    // The engine's own module groups agree with the panel's pooling.
    report.steps.forEach((s, ci) => {
      for (const m of s.modules) {
        const ri = v.byModule.rows.indexOf(m.module);
        assert.ok(ri >= 0);
        assert.ok(Math.abs(v.byModule.cells[ri * v.byModule.cols.length + ci]! - (1 - m.unchanged!)) <= 1e-12, `${m.module}`);
      }
    });
    assert.equal(v.noPrediction, null);
    // One learning rate said once when every step read the same (verl's config); per step otherwise (a schedule in trainer_state.json).
    const lrs = new Set(report.steps.map((s) => `${s.prediction!.learningRate.value} ${s.prediction!.learningRate.source}`));
    if (lrs.size === 1) assert.ok(v.learningRate && /^\d(?:\.\d+)?e-\d+ from /.test(v.learningRate), v.learningRate ?? 'null');
    else assert.equal(v.learningRate, null);
  });
}

test("the headline: steps, median changed share, the last step's payload", async () => {
  const report = await walk('rl-kl');
  const shares = report.steps.map((s) => 1 - s.unchanged!).sort((a, b) => a - b);
  const mid = shares.length % 2 ? shares[(shares.length - 1) / 2] : (shares[shares.length / 2 - 1] + shares[shares.length / 2]) / 2;
  const h = stepsHeadline(report);
  assert.ok(h.startsWith(`${report.steps.length} steps · median ${(mid * 100).toFixed(1)}% changed · last step `), h);
  assert.match(h, /XOR\+zstd of .* dense$/);
});

test('a step without a prediction shows no band and says why', async () => {
  const report = await walk('rl-kl');
  const s = { ...report.steps[0], prediction: null, predictionUnavailable: 'no learning rate found' };
  const row = stepRow(s);
  assert.equal(row.bandLow, null);
  assert.equal(row.text.band, '-');
  assert.equal(row.text.agreement, 'no prediction');
  assert.equal(row.note, 'no learning rate found');
  const v = stepsView({ ...report, steps: report.steps.map((x) => ({ ...x, prediction: null, predictionUnavailable: 'no learning rate found' })) });
  assert.equal(v.noPrediction, 'no learning rate found');
  assert.equal(v.learningRate, null);
});

test('what crosses to the webview: the report without tensor rows, validated both ways', async () => {
  const report = await walk('rl-kl');
  const slim = slimSteps(report);
  assert.ok(slim.steps.every((s) => s.tensors.length === 0));
  assert.deepEqual(
    slim.steps.map((s) => ({ ...s, tensors: undefined })),
    report.steps.map((s) => ({ ...s, tensors: undefined })),
  );
  assert.ok(
    report.steps.every((s) => s.tensors.length > 0),
    'the full report keeps its rows',
  );
  const data: StepsData = {
    runId: report.root,
    runName: report.name,
    base: report.base,
    state: 'done',
    busy: null,
    error: null,
    report: slim,
    view: stepsView(report),
    learningRate: null,
    newCheckpoints: 0,
  };
  const msg = JSON.parse(JSON.stringify({ type: 'steps', data })) as unknown;
  assert.deepEqual(parseHostMessage(msg), msg);
  assert.equal(parseHostMessage({ type: 'steps', data: { ...data, report: { kind: 'gatescope.checkpoint-report', steps: [] } } }), null);
  assert.equal(parseHostMessage({ type: 'steps', data: { ...data, view: { rows: 'x' } } }), null);
  assert.equal(parseHostMessage({ type: 'steps', data: { ...data, runId: '' } }), null);

  assert.deepEqual(parseWebviewMessage({ type: 'runSteps', askLearningRate: true, extra: 1 }), { type: 'runSteps', askLearningRate: true });
  assert.deepEqual(parseWebviewMessage({ type: 'openSteps', runId: '/r' }), { type: 'openSteps', runId: '/r' });
  for (const bad of [{ type: 'runSteps' }, { type: 'runSteps', askLearningRate: 'yes' }, { type: 'openSteps' }, { type: 'openSteps', runId: 3 }]) {
    assert.equal(parseWebviewMessage(bad), null, JSON.stringify(bad));
  }
  assert.deepEqual(parsePanelState({ panel: 'steps', runId: '/r', grid: 'layer' }), { panel: 'steps', runId: '/r', grid: 'layer' });
  assert.deepEqual(parsePanelState({ panel: 'steps', runId: '/r', grid: 'bogus' }), { panel: 'steps', runId: '/r', grid: 'module' });
  assert.equal(parsePanelState({ panel: 'steps' }), null);
});

test('checkpoints saved since a walk are counted, the base aside', async () => {
  const report = await walk('rl-kl');
  const complete = report.checkpoints.filter((c) => c.path !== report.base).map((c) => c.path);
  assert.equal(checkpointsSinceWalk(report, complete), 0);
  assert.equal(checkpointsSinceWalk(report, [...complete, '/runs/rl-kl/global_step_120/actor/huggingface']), 1);
  assert.equal(checkpointsSinceWalk(report, complete.slice(0, 1)), 0, 'a checkpoint gone is not a new one');
});

test('a walk is current while the run has the same base and the same complete checkpoints in order', async () => {
  const report = await walk('rl-kl');
  const complete = report.checkpoints.filter((c) => c.path !== report.base).map((c) => c.path);
  assert.equal(walkIsCurrent(report, complete, report.base), true);
  assert.equal(walkIsCurrent(report, [...complete, '/runs/rl-kl/global_step_120/actor/huggingface'], report.base), false, 'a new checkpoint');
  assert.equal(walkIsCurrent(report, complete.slice(1), report.base), false, 'a checkpoint gone');
  assert.equal(walkIsCurrent(report, complete, null), false, 'another base');
});
