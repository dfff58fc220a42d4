/**
 * The bundled adapter runs (examples/runs/rl-lora, rl-pissa, rl-pissa-lr3x: GRPO on LoRA factors, trained
 * by `scripts/train-example-runs.py --adapters`) against the numbers PyTorch computed in float64 from the
 * files on disk: M1 of the bf16 merge, the exact update norms, and M5, M6 and M8 of the exact update.
 * Then what a user sees of them: the scan finds them as adapter runs of the base, the tree labels them.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { createBackend, type ComputeBackend } from '../../src/compute/backend';
import type { CheckpointReport, TensorSpectral } from '../../src/report/schema';
import { scanFolder } from '../../src/discovery/scan';
import { checkpointView } from '../../src/ui-model/tree';
import { stepsOfRun, StepsError } from '../../src/analysis/steps';
import { adapterSummaryView } from '../../src/ui-model/adapter';
import { analyzeExampleRuns, EXAMPLES } from '../support/examples';
import { trainingConfigLenses } from '../../src/ui-model/lenses';
import { promises as fsp } from 'node:fs';

interface RefTensor {
  name: string;
  changed: number;
  unchanged: number;
  relUpdateNorm: number | null;
  adapter?: { rank: number; scale: number; updateNormFro: number; updateSpectralNorm: number; relUpdateNorm: number };
  spectral?: TensorSpectral;
}
interface Reference {
  base: string;
  checkpoint: string;
  settings: { k: number; alpha: number };
  summary: { unchanged: number; unchangedLinear: number; init: string; run: string; adapterRelUpdateNormMedian: number };
  tensors: RefTensor[];
}

const runs: { run: string; ref: Reference; report: CheckpointReport }[] = [];
let backend: ComputeBackend;

before(async () => {
  backend = await createBackend({ device: 'cpu' });
  runs.push(...(await analyzeExampleRuns<Reference>('adapterRuns', backend)));
});

after(async () => {
  await backend?.dispose();
});

test('the adapter example runs are bundled: plain LoRA and PiSSA (saved converted to plain LoRA)', () => {
  assert.deepEqual(runs.map((r) => r.ref.summary.init).sort(), ['lora', 'pissa', 'pissa']);
  for (const { run, report } of runs) {
    assert.ok(report.adapter, `${run} is read as an adapter`);
    assert.equal(report.adapter.targets.length, 28, run);
  }
});

test('adapter runs: M1 of the bf16 merge and the exact update norms equal the PyTorch reference on every tensor', () => {
  for (const { run, ref, report } of runs) {
    const byName = new Map(report.tensors.map((t) => [t.name, t]));
    for (const r of ref.tensors) {
      const t = byName.get(r.name);
      assert.ok(t, `${run}: ${r.name} missing`);
      assert.equal(t.changed, r.changed, `${run} ${r.name} changed`);
      assert.equal(t.unchanged, r.unchanged, `${run} ${r.name} unchanged`);
      if (r.relUpdateNorm !== null) assert.ok(Math.abs(t.relUpdateNorm! - r.relUpdateNorm) <= 1e-9 * r.relUpdateNorm + 1e-15, `${run} ${r.name} relUpdateNorm`);
      if (!r.adapter) {
        assert.equal(t.adapter, undefined, `${run} ${r.name} is not targeted`);
        continue;
      }
      assert.equal(t.adapter?.rank, r.adapter.rank, `${run} ${r.name} rank`);
      assert.equal(t.adapter.scale, r.adapter.scale, `${run} ${r.name} scale`);
      for (const key of ['updateNormFro', 'updateSpectralNorm', 'relUpdateNorm'] as const)
        assert.ok(Math.abs(t.adapter[key]! - r.adapter[key]) <= 1e-9 * r.adapter[key], `${run} ${r.name} ${key} ${t.adapter[key]} vs ${r.adapter[key]}`);
    }
    assert.ok(Math.abs(report.summary.unchanged! - ref.summary.unchanged) < 1e-12, `${run} summary.unchanged`);
    assert.ok(Math.abs(report.summary.unchangedLinear! - ref.summary.unchangedLinear) < 1e-12, `${run} summary.unchangedLinear`);
  }
});

test('adapter runs: M5, M6 and M8 of the exact update equal the PyTorch float64 reference; untouched weights are skipped', () => {
  for (const { run, ref, report } of runs) {
    const byName = new Map(report.tensors.map((t) => [t.name, t]));
    for (const r of ref.tensors) {
      const t = byName.get(r.name)!;
      const where = `${run} ${r.name}`;
      if (!r.spectral) {
        if (t.spectralSkipped !== undefined && /\.(q|k|v|o|gate|up|down)_proj\./.test(r.name))
          assert.match(t.spectralSkipped, /not updated by the adapter/, where);
        assert.equal(t.spectral, undefined, where);
        continue;
      }
      const s = t.spectral!;
      const e = r.spectral;
      assert.ok(s, `${where}: no spectral result`);
      assert.equal(s.svdMethod, 'full', where);
      assert.ok(Math.abs(s.nss - e.nss) <= 1e-4 * e.nss, `${where} nss ${s.nss} vs ${e.nss}`);
      assert.ok(Math.abs(s.nssPrincipal - e.nssPrincipal) <= 1e-3 * e.nssPrincipal, `${where} nssPrincipal ${s.nssPrincipal} vs ${e.nssPrincipal}`);
      assert.ok(
        Math.abs(s.principalAngleMaxDeg - e.principalAngleMaxDeg) <= 0.01 + 1e-3 * e.principalAngleMaxDeg,
        `${where} angle ${s.principalAngleMaxDeg} vs ${e.principalAngleMaxDeg}`,
      );
      for (const key of ['offPrincipalEnergy', 'offPrincipalEnergyLeft', 'offPrincipalEnergyRight'] as const)
        assert.ok(Math.abs(s[key] - e[key]) <= 1e-5, `${where} ${key} ${s[key]} vs ${e[key]}`);
      assert.ok(Math.abs(s.updateSpectralNorm - e.updateSpectralNorm) <= 1e-9 * e.updateSpectralNorm, `${where} ||dW||_2`);
      const fo = e.principalShiftFirstOrder;
      const scale = Math.max(...fo.map(Math.abs));
      s.principalShiftFirstOrder.forEach((x, i) => assert.ok(Math.abs(x - fo[i]) <= 1e-4 * scale, `${where} first-order shift ${i}: ${x} vs ${fo[i]}`));
      // The masks are the merge's: the low-magnitude overlap is exact, the principal one up to threshold ties.
      assert.ok(Math.abs(s.overlapLowMagnitude! - e.overlapLowMagnitude!) <= 1e-12, `${where} low-magnitude overlap`);
      assert.ok(Math.abs(s.overlapPrincipal! - e.overlapPrincipal!) <= 2e-3, `${where} principal overlap`);
    }
  }
});

test('adapter runs in the workspace: the scan finds them with their base, and the tree labels them as LoRA adapters', async () => {
  const scan = await scanFolder(path.join(EXAMPLES, 'runs'));
  for (const { run, ref } of runs) {
    const found = scan.runs.find((r) => path.basename(r.root) === run);
    assert.ok(found, `${run} found`);
    assert.equal(found.base.resolved && path.resolve(found.base.resolved), path.join(EXAMPLES, 'base'), `${run} base`);
    assert.equal(found.checkpoints.length, 2, run);
    for (const c of found.checkpoints) {
      assert.equal(c.state, 'complete', `${c.path}: ${c.reason}`);
      assert.deepEqual(c.adapter, { r: ref.summary.init === 'pissa' ? 16 : 8, loraAlpha: ref.summary.init === 'pissa' ? 32 : 16, principalInit: null });
      const view = checkpointView(c, { kind: 'none' }, true);
      assert.match(view.description, /^LoRA r (8|16) · not analysed$/, view.description);
      assert.match(view.tooltip, /PEFT adapter, analysed merged into its base for M1 and from its factors for Gate II/);
    }
  }
});

test("the dashboard's adapter summary names the adapter and gives the exact update's size, as PyTorch computed it", () => {
  for (const { run, ref, report } of runs) {
    const v = adapterSummaryView(report);
    assert.ok(v, run);
    const r = ref.summary.init === 'pissa' ? 16 : 8;
    assert.equal(v.title, `LoRA adapter r ${r}, alpha ${2 * r} on 28 weights`, run);
    assert.match(v.note, /merging the adapter into the base.*exact update scale \* B @ A/);
    const want = ref.summary.adapterRelUpdateNormMedian;
    assert.ok(Math.abs(v.relUpdateNormMedian! - want) <= 1e-9 * want, `${run}: ${v.relUpdateNormMedian} vs ${want}`);
  }
  assert.equal(adapterSummaryView({ ...runs[0].report, adapter: undefined }), null);
});

test("the adapter runs' training configs: a PiSSA init is warned about, with how Gatescope reads its checkpoints; plain LoRA is not", async () => {
  const lensesOf = async (run: string) => {
    const file = path.join(EXAMPLES, 'runs', run, 'train_grpo.py');
    return trainingConfigLenses(file, await fsp.readFile(file, 'utf8')).filter((l) => l.kind === 'lora-init');
  };
  for (const run of ['rl-pissa', 'rl-pissa-lr3x']) {
    const [lens, ...more] = await lensesOf(run);
    assert.ok(lens && more.length === 0, `${run}: one init lens`);
    assert.match(lens.title, /pissa: principal-direction LoRA init/);
    assert.match(lens.detail, /converted to plain LoRA.*path_initial_model_for_weight_conversion.*--residual-base/);
  }
  assert.deepEqual(await lensesOf('rl-lora'), []);
});

test('step to step on an adapter run is refused with what to do instead, never a comparison of factor files', async () => {
  await assert.rejects(stepsOfRun(path.join(EXAMPLES, 'runs', 'rl-lora')), (e: Error) => {
    assert.ok(e instanceof StepsError);
    assert.match(
      e.message,
      /rl-lora is a LoRA adapter run .*checkpoint-\d+\): .*stores factors, not weights.*gatescope analyze BASE CHECKPOINT.*gatescope compare/,
    );
    return true;
  });
});
