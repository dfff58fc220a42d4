import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HEATMAP_METRICS, cellValue, heatmapData, scalePosition, slimReport, stepSeries } from '../../src/ui-model/heatmap';
import { headBoundaries, headInfoFromConfig } from '../../src/ui-model/heads';
import { report, spectral, tensor } from '../support/ui-fixtures';

test('heatmap: layers x modules in block order, pooled unchanged, weight (not bias) for matrix metrics', () => {
  const r = report(100, [
    tensor('model.layers.1.mlp.down_proj.weight', { unchanged: 0.9, changed: 204.8, spectral: spectral({ nss: 0.3 }) }),
    tensor('model.layers.0.self_attn.q_proj.weight', { unchanged: 0.5, changed: 1024, spectral: spectral({ nss: 0.1 }) }),
    tensor('model.layers.0.self_attn.q_proj.bias', { unchanged: 0, changed: 64 }),
    tensor('model.embed_tokens.weight'),
  ]);
  const hm = heatmapData(r, 'unchanged');
  assert.deepEqual(hm.layers, [0, 1]);
  assert.deepEqual(hm.modules, ['q', 'down']);
  const q0 = hm.cells[0];
  assert.equal(q0.layer, 0);
  assert.equal(q0.module, 'q');
  // Pooled over entries: (1024 + 64 changed) of (2048 + 64).
  assert.ok(Math.abs(q0.value! - (1 - 1088 / 2112)) < 1e-12);
  assert.equal(hm.cells[1].value, null, 'layer 0 has no down_proj');
  const nss = heatmapData(r, 'nss');
  assert.equal(nss.cells[0].value, 0.1);
  assert.equal(nss.cells[3].value, 0.3);
  assert.equal(nss.min, 0.1);
  assert.equal(nss.max, 0.3);
});

test('heatmap: every metric is defined, the spectral ones are null without a spectral pass', () => {
  const withSp = [tensor('model.layers.0.self_attn.q_proj.weight')];
  const without = [tensor('model.layers.0.self_attn.q_proj.weight', { spectral: undefined })];
  for (const m of HEATMAP_METRICS) {
    assert.notEqual(cellValue(withSp, m.id), null, m.id);
    if (m.spectral) assert.equal(cellValue(without, m.id), null, m.id);
  }
  const excess = cellValue(withSp, 'offPrincipalEnergyExcess')!;
  assert.ok(Math.abs(excess - 0.01) < 1e-12);
  // relUpdateNorm pools Frobenius norms.
  const two = [
    tensor('model.layers.0.self_attn.q_proj.weight', { updateNormFro: 3, baseNormFro: 100 }),
    tensor('model.layers.0.self_attn.q_proj.bias', { updateNormFro: 4, baseNormFro: 0 }),
  ];
  assert.equal(cellValue(two, 'relUpdateNorm'), 0.05);
});

test('scale position clamps and handles an empty range', () => {
  assert.equal(scalePosition(5, 0, 10), 0.5);
  assert.equal(scalePosition(-1, 0, 10), 0);
  assert.equal(scalePosition(11, 0, 10), 1);
  assert.equal(scalePosition(3, 3, 3), 0.5);
});

test('step series is ordered by step and carries the spectral summary', () => {
  const a = report(300, [], {
    spectralSummary: {
      tensors: 1,
      principalAngleMaxDeg: 2,
      principalAngleMedianDeg: 1,
      nssMedian: 1e-3,
      nssPrincipalMedian: 1e-3,
      nssPrincipalFirstOrderMedian: 1e-3,
      spectralSharePrincipalMedian: 0.1,
      spectralShareOfUpdateMedian: 0.1,
      offPrincipalEnergyMedian: 0.98,
      offPrincipalEnergyBaselineMedian: 0.97,
      overlapPrincipal: 0.4,
      overlapPrincipalBaseline: 0.5,
      overlapPrincipalExpectedPrecision: 0.41,
      overlapLowMagnitude: 0.6,
      overlapLowMagnitudeBaseline: 0.5,
      overlapLowMagnitudeExpectedPrecision: 0.6,
    },
  });
  const b = report(100, [], { verdict: undefined });
  const s = stepSeries([a, b]);
  assert.deepEqual(
    s.map((p) => p.step),
    [100, 300],
  );
  assert.equal(s[0].verdict, null);
  assert.equal(s[0].principalAngleMaxDeg, null);
  assert.equal(s[1].principalAngleMaxDeg, 2);
  assert.equal(s[1].verdict, 'off-principal');
});

test('slim report drops long arrays but keeps the numbers', () => {
  const r = report(1, [tensor('model.layers.0.self_attn.q_proj.weight')]);
  const slim = slimReport(r);
  const t = slim.tensors[0];
  assert.equal(t.rowChangedRatio, undefined);
  assert.equal(t.colChangedRatio, undefined);
  assert.deepEqual(t.spectral!.sigmaBase, []);
  assert.equal(t.spectral!.nss, 6e-4);
  assert.ok(r.tensors[0].rowChangedRatio, 'the original is untouched');
  assert.equal(r.tensors[0].spectral!.sigmaBase.length, 3);
});

test('head geometry from config.json and head boundaries per module', () => {
  const h = headInfoFromConfig({ hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16 });
  assert.deepEqual(h, { numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 16 });
  assert.deepEqual(headInfoFromConfig({ hidden_size: 64, num_attention_heads: 4 }), { numAttentionHeads: 4, numKeyValueHeads: 4, headDim: 16 });
  assert.deepEqual(headInfoFromConfig({ text_config: { hidden_size: 32, num_attention_heads: 2 } }), {
    numAttentionHeads: 2,
    numKeyValueHeads: 2,
    headDim: 16,
  });
  assert.equal(headInfoFromConfig({ hidden_size: 64 }), null);
  assert.equal(headInfoFromConfig('nope'), null);
  assert.deepEqual(headBoundaries('q', 'row', 64, h), [16, 32, 48]);
  assert.deepEqual(headBoundaries('k', 'row', 32, h), [16]);
  assert.deepEqual(headBoundaries('o', 'col', 64, h), [16, 32, 48]);
  assert.deepEqual(headBoundaries('o', 'row', 64, h), []);
  assert.deepEqual(headBoundaries('q', 'row', 60, h), [], 'sizes that do not match the config draw nothing');
  assert.deepEqual(headBoundaries('up', 'row', 176, h), []);
});
