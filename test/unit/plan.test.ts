import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { AnalysisPlan, spectralScope } from '../../src/analysis/plan';
import { analyzeCheckpoint, analyzePlan } from '../../src/analysis/analyze';
import { planShards } from '../../src/analysis/shards';
import { createSpectralPass, spectralApplies } from '../../src/analysis/spectral';
import { createReferenceBackend } from '../../src/compute/reference-backend';
import { assertFitsMemory, MemoryBudgetError } from '../../src/engine/memory';
import { DEFAULT_SETTINGS, type CheckpointReport } from '../../src/report/schema';
import { writeSyntheticRun } from '../../src/examples/synthetic';
import { tempDir } from '../support/st';

const THREAD_SCRIPT = path.join(__dirname, '../../src/analysis/diff-thread.js');
const SETTINGS = { ...DEFAULT_SETTINGS, k: 8, kSpectrum: 16 };

/** The numbers of a report, without when it ran and how long it took. */
function numbers(r: CheckpointReport): unknown {
  return { ...r, createdAt: undefined, durationMs: undefined, timings: undefined };
}

const T = 1_700_000_000;

test('an analysis reads the files its plan opened, on every diff thread and in the spectral pass: a checkpoint replaced afterwards (same size, same mtime) changes nothing', async () => {
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(dir, { seed: 11 });
  const target = path.join(checkpoints[1], 'model.safetensors');
  const other = path.join(checkpoints[0], 'model.safetensors');
  assert.equal((await fsp.stat(target)).size, (await fsp.stat(other)).size, 'the swap keeps the size');
  // Whole seconds, so that the swapped file's mtime is the same to the last bit.
  await fsp.utimes(target, T, T);
  const opts = {
    settings: SETTINGS,
    passes: 'full' as const,
    spectral: createSpectralPass(createReferenceBackend()),
    threads: 2,
    threadScript: THREAD_SCRIPT,
  };
  const before = await analyzeCheckpoint(base, checkpoints[1], opts);
  const plan = await AnalysisPlan.open(base, checkpoints[1], 'full');
  try {
    // Another step's weights under the same name, size and mtime: only a second open would see them.
    const swap = path.join(checkpoints[1], 'swap.tmp');
    await fsp.copyFile(other, swap);
    await fsp.utimes(swap, T, T);
    await fsp.rename(swap, target);
    const during = await analyzePlan(plan, opts);
    assert.deepEqual(numbers(during), numbers(before));
  } finally {
    await plan.close();
  }
  // The swap is real: opened again, the folder holds the other step's weights.
  const after = await analyzeCheckpoint(base, checkpoints[1], opts);
  assert.notDeepEqual(after.summary, before.summary);
  assert.deepEqual(after.summary, (await analyzeCheckpoint(base, checkpoints[0], opts)).summary);
});

test('the plan says what the spectral pass takes, the shard split and the memory guard use the same, and its identities are the files it opened', async () => {
  const dir = await tempDir();
  const { base, checkpoints } = await writeSyntheticRun(dir, { seed: 12 });
  const report = await analyzeCheckpoint(base, checkpoints[1], {
    settings: SETTINGS,
    passes: 'full',
    spectral: createSpectralPass(createReferenceBackend()),
    threads: 1,
  });
  const plan = await AnalysisPlan.open(base, checkpoints[1], 'full');
  try {
    assert.deepEqual(
      plan.pairs.map((p) => p.name),
      report.tensors.map((t) => t.name),
    );
    let spectral = 0;
    for (const t of report.tensors) {
      const planned = plan.pair(t.name)!;
      // A tensor the pass took was planned for it; one it skipped for its name or shape was not.
      if (t.spectral) assert.equal(planned.spectral, true, t.name);
      if (t.spectralSkipped && spectralScope(t.name, t.shape)) assert.equal(planned.spectral, false, t.name);
      assert.equal(planned.spectral, spectralScope(t.name, t.shape) === null);
      assert.equal(spectralApplies(t) === null, !!t.spectral, t.name);
      if (planned.spectral) spectral++;
    }
    assert.ok(spectral > 0 && spectral < plan.pairs.length, `${spectral} of ${plan.pairs.length} tensors are planned for the spectral pass`);
    // The diff-only plan plans no spectral work, and the shard split weighs the spectral tensors by it.
    const diffPlan = AnalysisPlan.of(plan.base, plan.checkpoint, 'diff');
    assert.ok(diffPlan.pairs.every((p) => !p.spectral));
    assert.ok(planShards(plan, 2, SETTINGS).loads.reduce((a, b) => a + b) > planShards(diffPlan, 2, SETTINGS).loads.reduce((a, b) => a + b));
    // The memory guard's largest need is a spectral tensor's (whole matrices), refused under a small cap.
    const need = plan.largestNeed()!;
    assert.equal(need.pass, 'spectral');
    assert.equal(plan.pair(need.tensor)!.spectral, true);
    assert.equal(diffPlan.largestNeed()!.pass, 'diff');
    assert.throws(
      () => assertFitsMemory([plan], { bytes: need.bytes - 1, source: 'a test cap' }),
      (e: unknown) => e instanceof MemoryBudgetError && e.tensor === need.tensor && /spectral pass, over a test cap/.test(e.message),
    );
    assert.doesNotThrow(() => assertFitsMemory([plan], { bytes: need.bytes, source: 'a test cap' }));
    // The cache key's identities are the opened files': path, size, mtime and header digest.
    const [b, c] = plan.fileIdentities();
    assert.equal(b.length, 1);
    const st = await fsp.stat(path.join(checkpoints[1], 'model.safetensors'));
    assert.equal(c[0], `${path.resolve(checkpoints[1], 'model.safetensors')}|${st.size}|${st.mtimeMs}|${plan.checkpoint.files[0].headerHash}`);
  } finally {
    await plan.close();
  }
});
