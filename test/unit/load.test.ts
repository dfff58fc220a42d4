import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { scanFolder } from '../../src/discovery/scan';
import { Checkpoint } from '../../src/formats/checkpoint';
import { diffCheckpoints } from '../../src/analysis/diff';
import { validFile, bf16Bytes, tempDir, writeFile, bf16 } from '../support/st';
import { AnalysisPlan } from '../../src/analysis/plan';

test('a workspace with hundreds of checkpoints is scanned completely, steps in order', async () => {
  const root = await tempDir();
  const file = validFile({ 'model.layers.0.mlp.up_proj.weight': { dtype: 'BF16', shape: [2, 2], data: bf16Bytes([1, 2, 3, 4].map(bf16)) } });
  const writes: Promise<string>[] = [];
  for (let r = 0; r < 4; r++) {
    for (let s = 1; s <= 100; s++) {
      const dir = path.join(root, `run${r}`, `checkpoint-${s * 10}`);
      writes.push(writeFile(path.join(dir, 'model.safetensors'), file));
      writes.push(writeFile(path.join(dir, 'config.json'), JSON.stringify({ _name_or_path: '../../base' })));
    }
  }
  writes.push(writeFile(path.join(root, 'base', 'model.safetensors'), file));
  await Promise.all(writes);
  const s = await scanFolder(root);
  const runs = s.runs.filter((r) => r.name.startsWith('run'));
  assert.equal(runs.length, 4);
  for (const r of runs) {
    assert.equal(r.checkpoints.length, 100);
    assert.deepEqual(
      r.checkpoints.map((c) => c.step),
      Array.from({ length: 100 }, (_, i) => (i + 1) * 10),
    );
    assert.ok(r.checkpoints.every((c) => c.state === 'complete'));
    assert.equal(r.base.resolved, path.join(root, 'base'));
  }
});

test('a model with thousands of tensors diffs with flat memory', async () => {
  const dir = await tempDir();
  const tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
  const tensors1: typeof tensors = {};
  const n = 4000;
  for (let i = 0; i < n; i++) {
    const name = `model.layers.${i % 40}.experts.${i}.down_proj.weight`;
    const w0 = Array.from({ length: 64 }, (_, j) => bf16(Math.sin(i + j)));
    tensors[name] = { dtype: 'BF16', shape: [8, 8], data: bf16Bytes(w0) };
    tensors1[name] = { dtype: 'BF16', shape: [8, 8], data: bf16Bytes(w0.map((b, j) => (j % 3 === 0 ? b + 1 : b))) };
  }
  await writeFile(path.join(dir, 'a', 'model.safetensors'), validFile(tensors));
  await writeFile(path.join(dir, 'b', 'model.safetensors'), validFile(tensors1));
  const a = await Checkpoint.open(path.join(dir, 'a'));
  const b = await Checkpoint.open(path.join(dir, 'b'));
  try {
    // Warm up, then measure: the second pass must not hold more than the first one did.
    await diffCheckpoints(AnalysisPlan.of(a, b, 'diff'), { eta: 1e-3 });
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const r = await diffCheckpoints(AnalysisPlan.of(a, b, 'diff'), { eta: 1e-3, onProgress: () => void (peak = Math.max(peak, process.memoryUsage().rss)) });
    assert.equal(r.tensors.length, n);
    assert.ok(r.tensors.every((t) => t.changed === 22));
    // Results for 4000 tensors plus bounded read buffers: well under 100 MB of growth.
    assert.ok(peak - before < 100 * 2 ** 20, `rss grew by ${((peak - before) / 2 ** 20).toFixed(0)} MB`);
  } finally {
    await a.close();
    await b.close();
  }
});
