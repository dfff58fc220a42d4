/**
 * The scan in a thread of its own (what the extension host uses): the same result as the in-process scan,
 * the caller's event loop free while a large header is parsed, and clear errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { scanFolder } from '../../src/discovery/scan';
import { scanFolderInThread } from '../../src/discovery/scan-off-thread';
import { validFile, f32Bytes, rawFile, tempDir, writeFile } from '../support/st';

/** The compiled thread script next to this test's compiled sources. */
const SCRIPT = path.join(__dirname, '../../src/discovery/scan-thread.js');

async function workspace(): Promise<string> {
  const root = await tempDir();
  const w = (n: number): Buffer => validFile({ 'model.layers.0.mlp.up_proj.weight': { dtype: 'F32', shape: [2, 2], data: f32Bytes([1, 2, 3, n]) } });
  await writeFile(path.join(root, 'base', 'model.safetensors'), w(4));
  await writeFile(path.join(root, 'base', 'config.json'), '{"model_type":"qwen2"}');
  for (const step of [10, 20]) {
    await writeFile(path.join(root, 'run', `checkpoint-${step}`, 'model.safetensors'), w(step));
    await writeFile(path.join(root, 'run', `checkpoint-${step}`, 'config.json'), JSON.stringify({ _name_or_path: path.join(root, 'base') }));
  }
  // Half-written: the scan must report it incomplete in the thread exactly as in process.
  await writeFile(path.join(root, 'run', 'checkpoint-30', 'model.safetensors'), w(30).subarray(0, 40));
  return root;
}

test('the threaded scan returns what the in-process scan returns', async () => {
  const root = await workspace();
  const inProcess = await scanFolder(root);
  const threaded = await scanFolderInThread(SCRIPT, root);
  assert.deepEqual(threaded, inProcess);
  const run = threaded.runs.find((r) => r.name === 'run');
  assert.deepEqual(
    run?.checkpoints.map((c) => `${c.step}:${c.state}`),
    ['10:complete', '20:complete', '30:incomplete'],
  );
  assert.equal(run?.base.resolved, path.join(root, 'base'));
});

test("a large header is parsed off the caller's event loop", async () => {
  const root = await tempDir();
  // ~25 MB of tensor entries: parsing takes most of a second, all of it blocking when done in process.
  const parts: string[] = [];
  let off = 0;
  for (let k = 0; k < 280_000; k++) {
    parts.push(`"model.layers.${k}.mlp.w":{"dtype":"F32","shape":[1],"data_offsets":[${off},${off + 4}]}`);
    off += 4;
  }
  await writeFile(path.join(root, 'big', 'model.safetensors'), rawFile(`{${parts.join(',')}}`, new Uint8Array(off)));
  const longestStall = async (scan: () => Promise<unknown>): Promise<number> => {
    let last = performance.now();
    let worst = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last);
      last = now;
    }, 5);
    try {
      await scan();
    } finally {
      clearInterval(timer);
    }
    return Math.max(worst, performance.now() - last);
  };
  const inProcess = await longestStall(() => scanFolder(root));
  const threaded = await longestStall(() => scanFolderInThread(SCRIPT, root));
  // A ratio in one process, not a time bound: the thread must leave the loop free for most of the parse.
  assert.ok(threaded < inProcess / 3, `longest event-loop stall: ${threaded.toFixed(0)} ms threaded vs ${inProcess.toFixed(0)} ms in process`);
});

test('a scan that cannot run ends in one clear error, and cancelling stops the thread', async () => {
  const root = await workspace();
  await assert.rejects(scanFolderInThread(path.join(root, 'no-such-script.js'), root), /the scan of .* (failed|stopped)/);
  const ac = new AbortController();
  const p = scanFolderInThread(SCRIPT, root, {}, ac.signal);
  ac.abort();
  await assert.rejects(p, /scan cancelled/);
});
