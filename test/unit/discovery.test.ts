import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import { scanFolder } from '../../src/discovery/scan';
import { readConfigKeys } from '../../src/discovery/config-keys';
import { validFile, f32Bytes, tempDir, writeFile } from '../support/st';

const weights = (): Buffer => validFile({ 'model.layers.0.mlp.up_proj.weight': { dtype: 'F32', shape: [2], data: f32Bytes([1, 2]) } });
const config = (nameOrPath?: string): string => JSON.stringify({ model_type: 'llama', ...(nameOrPath ? { _name_or_path: nameOrPath } : {}) });

test('finds every trainer layout, groups runs, orders steps, resolves bases', async () => {
  const root = await tempDir();
  const w = (p: string, d: string | Buffer): Promise<string> => writeFile(path.join(root, p), d);
  // A base model folder.
  await w('models/base/model.safetensors', weights());
  await w('models/base/config.json', config());
  // HF Trainer / TRL: checkpoint-N with _name_or_path pointing at the base (relative to the checkpoint).
  for (const step of [500, 50, 100]) {
    await w(`runs/sft/checkpoint-${step}/model.safetensors`, weights());
    await w(`runs/sft/checkpoint-${step}/config.json`, config('../../../models/base'));
  }
  // verl: global_step_N/actor/huggingface; the base named in a verl YAML; step 20 only has raw FSDP shards.
  await w('runs/grpo/global_step_10/actor/huggingface/model.safetensors', weights());
  await w('runs/grpo/global_step_10/actor/huggingface/config.json', config());
  await w('runs/grpo/global_step_20/actor/model_world_size_2_rank_0.pt', 'not read');
  await w('runs/grpo/config.yaml', 'actor_rollout_ref:\n  model:\n    path: ../../models/base  # the base\n  actor:\n    optim:\n      lr: 1e-6\n');
  // OpenRLHF HF exports.
  await w('runs/ppo/_actor/global_step5_hf/model.safetensors', weights());
  await w('runs/ppo/_actor/global_step5_hf/config.json', config('Org/Unknown-Model'));
  // Loose files.
  await w('loose/step_2.safetensors', weights());
  await w('loose/step_1.safetensors', weights());

  const s = await scanFolder(root);
  const byName = Object.fromEntries(s.runs.map((r) => [r.name, r]));
  assert.deepEqual(Object.keys(byName).sort(), ['loose', 'models/base', 'runs/grpo', 'runs/ppo', 'runs/sft']);
  const sft = byName['runs/sft'];
  assert.deepEqual(
    sft.checkpoints.map((c) => c.step),
    [50, 100, 500],
  );
  assert.ok(sft.checkpoints.every((c) => c.layout === 'hf-trainer' && c.state === 'complete'));
  assert.equal(sft.base.resolved, path.join(root, 'models/base'));
  const grpo = byName['runs/grpo'];
  assert.deepEqual(
    grpo.checkpoints.map((c) => [c.step, c.layout, c.state]),
    [
      [10, 'verl', 'complete'],
      [20, 'verl-fsdp', 'needs-merging'],
    ],
  );
  assert.match(grpo.checkpoints[1].mergeCommand!, /verl\.model_merger merge --backend fsdp/);
  assert.equal(grpo.base.resolved, path.join(root, 'models/base'));
  assert.match(grpo.base.source!, /config\.yaml:3 \(actor_rollout_ref\.model\.path\)/);
  const ppo = byName['runs/ppo'];
  assert.equal(ppo.checkpoints[0].layout, 'openrlhf');
  assert.equal(ppo.checkpoints[0].step, 5);
  assert.equal(ppo.base.resolved, null);
  assert.match(ppo.base.problem!, /Org\/Unknown-Model/);
  assert.deepEqual(
    byName.loose.checkpoints.map((c) => [c.step, c.layout]),
    [
      [1, 'loose-file'],
      [2, 'loose-file'],
    ],
  );
  assert.deepEqual(byName['models/base'].baseOf.sort(), [path.join(root, 'runs/grpo'), path.join(root, 'runs/sft')]);
});

test('hub ids resolve in the local Hugging Face cache (refs/main snapshot)', async () => {
  const root = await tempDir();
  const cache = path.join(root, 'hf', 'hub');
  await writeFile(path.join(cache, 'models--Qwen--Qwen2.5-Math-1.5B', 'refs', 'main'), 'abc123\n');
  await writeFile(path.join(cache, 'models--Qwen--Qwen2.5-Math-1.5B', 'snapshots', 'abc123', 'model.safetensors'), weights());
  await writeFile(path.join(root, 'ws', 'run', 'checkpoint-1', 'model.safetensors'), weights());
  await writeFile(path.join(root, 'ws', 'run', 'checkpoint-1', 'config.json'), config('Qwen/Qwen2.5-Math-1.5B'));
  const s = await scanFolder(path.join(root, 'ws'), { hfCacheDirs: [cache] });
  assert.equal(s.runs[0].base.resolved, path.join(cache, 'models--Qwen--Qwen2.5-Math-1.5B', 'snapshots', 'abc123'));
  // A setting overrides what the files say.
  await writeFile(path.join(root, 'other', 'model.safetensors'), weights());
  const o = await scanFolder(path.join(root, 'ws'), { hfCacheDirs: [cache], baseOverrides: { run: path.join(root, 'other') } });
  assert.equal(o.runs[0].base.resolved, path.join(root, 'other'));
  assert.equal(o.runs[0].base.source, 'setting');
});

test('checkpoints still being written are incomplete, broken ones are errors', async () => {
  const root = await tempDir();
  const full = weights();
  await writeFile(path.join(root, 'run', 'checkpoint-1', 'model.safetensors'), full.subarray(0, full.length - 2));
  await writeFile(
    path.join(root, 'run', 'checkpoint-2', 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }),
  );
  await writeFile(path.join(root, 'run', 'checkpoint-2', 'model-00001-of-00002.safetensors'), full);
  await writeFile(path.join(root, 'run', 'checkpoint-3', 'model.safetensors'), Buffer.concat([full.subarray(0, 8), Buffer.from('x'.repeat(full.length - 8))]));
  await writeFile(path.join(root, 'run', 'checkpoint-4', 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '../../escape.safetensors' } }));
  const s = await scanFolder(root);
  const states = s.runs[0].checkpoints.map((c) => [c.step, c.state]);
  assert.deepEqual(states, [
    [1, 'incomplete'],
    [2, 'incomplete'],
    [3, 'error'],
    [4, 'error'],
  ]);
  assert.match(s.runs[0].checkpoints[1].reason!, /missing-shard/);
  assert.match(s.runs[0].checkpoints[3].reason!, /shard-path/);
});

test('symlinked folders are not followed out of the scanned folder', async () => {
  const root = await tempDir();
  const outside = await tempDir();
  await writeFile(path.join(outside, 'secret', 'model.safetensors'), weights());
  await fsp.mkdir(path.join(root, 'ws'), { recursive: true });
  await fsp.symlink(path.join(outside, 'secret'), path.join(root, 'ws', 'link'));
  const s = await scanFolder(path.join(root, 'ws'));
  assert.equal(s.runs.length, 0);
});

test('config keys from YAML, JSON, Python kwargs and Hydra overrides, with lines', () => {
  const yaml = readConfigKeys(
    'trainer:\n  default_local_dir: ckpts/run  # out\nactor_rollout_ref:\n  actor:\n    kl_loss_coef: 0.001\n    clip_ratio: 0.2\n',
    'yaml',
  );
  assert.deepEqual(
    yaml.map((k) => [k.path, k.value, k.line]),
    [
      ['trainer', '', 0],
      ['trainer.default_local_dir', 'ckpts/run', 1],
      ['actor_rollout_ref', '', 2],
      ['actor_rollout_ref.actor', '', 3],
      ['actor_rollout_ref.actor.kl_loss_coef', '0.001', 4],
      ['actor_rollout_ref.actor.clip_ratio', '0.2', 5],
    ],
  );
  const json = readConfigKeys('{\n  "output_dir": "out/sft",\n  "learning_rate": 1e-05,\n  "peft": {\n    "init_lora_weights": "pissa"\n  }\n}', 'json');
  assert.deepEqual(
    json.map((k) => [k.path, k.value, k.line]),
    [
      ['output_dir', 'out/sft', 1],
      ['learning_rate', '1e-05', 2],
      ['peft', '', 3],
      ['peft.init_lora_weights', 'pissa', 4],
    ],
  );
  const py = readConfigKeys(
    'cfg = GRPOConfig(\n    output_dir="out/grpo",\n    beta=0.04, learning_rate=1e-6,\n)\nsft = SFTConfig(output_dir="out/sft", bf16=True)\n',
    'python',
  );
  assert.deepEqual(
    py.map((k) => [k.key, k.value, k.line]),
    [
      ['cfg', 'GRPOConfig', 0],
      ['output_dir', 'out/grpo', 1],
      ['beta', '0.04', 2],
      ['learning_rate', '1e-6', 2],
      ['sft', 'SFTConfig', 4],
      ['output_dir', 'out/sft', 4],
      ['bf16', 'True', 4],
    ],
  );
  const sh = readConfigKeys(
    'python3 -m verl.trainer.main_ppo \\\n  actor_rollout_ref.model.path=Qwen/Qwen2.5-0.5B \\\n  algorithm.kl_ctrl.kl_coef=0.001\n',
    'shell',
  );
  assert.deepEqual(
    sh.map((k) => [k.path, k.value, k.line]),
    [
      ['actor_rollout_ref.model.path', 'Qwen/Qwen2.5-0.5B', 1],
      ['algorithm.kl_ctrl.kl_coef', '0.001', 2],
    ],
  );
});

test(
  'config.json is read non-blocking: a FIFO of that name gives no config and never hangs the reader',
  { timeout: 20_000, skip: process.platform === 'win32' ? 'no FIFOs on Windows' : false },
  async () => {
    const { execFileSync } = await import('node:child_process');
    const { readModelConfig } = await import('../../src/discovery/model-config');
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'gatescope-fifo-'));
    try {
      const good = path.join(dir, 'good');
      const fifo = path.join(dir, 'fifo');
      await fsp.mkdir(good);
      await fsp.mkdir(fifo);
      await fsp.writeFile(path.join(good, 'config.json'), JSON.stringify({ num_attention_heads: 4, num_key_value_heads: 2, hidden_size: 64 }));
      execFileSync('mkfifo', [path.join(fifo, 'config.json')]);
      assert.deepEqual(await readModelConfig(path.join(good, 'model.safetensors')), { num_attention_heads: 4, num_key_value_heads: 2, hidden_size: 64 });
      assert.equal(await readModelConfig(fifo), null);
      assert.equal(await readModelConfig(path.join(dir, 'missing')), null);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  },
);

test('scan validates the index against the shard headers, reports an index beside model.safetensors, and quotes merge commands', async () => {
  const root = await tempDir();
  const t = (name: string): Buffer => validFile({ [name]: { dtype: 'F32', shape: [2], data: f32Bytes([1, 2]) } });
  const index = (map: Record<string, string>): string => JSON.stringify({ metadata: {}, weight_map: map });
  // The index says shard 2 holds b; it holds c.
  const bad = path.join(root, 'run', 'checkpoint-1');
  await writeFile(path.join(bad, 'model-00001-of-00002.safetensors'), t('a'));
  await writeFile(path.join(bad, 'model-00002-of-00002.safetensors'), t('c'));
  await writeFile(path.join(bad, 'model.safetensors.index.json'), index({ a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' }));
  // Both an index and a model.safetensors: which one is read is said.
  const both = path.join(root, 'run', 'checkpoint-2');
  await writeFile(path.join(both, 'model-00001-of-00001.safetensors'), t('a'));
  await writeFile(path.join(both, 'model.safetensors.index.json'), index({ a: 'model-00001-of-00001.safetensors' }));
  await writeFile(path.join(both, 'model.safetensors'), t('a'));
  // Raw FSDP shards in a folder whose path has a space and a quote.
  const raw = path.join(root, "my run's", 'global_step_5', 'actor');
  await writeFile(path.join(raw, 'model_world_size_1_rank_0.pt'), 'not read');
  const scan = await scanFolder(root);
  const run = scan.runs.find((r) => r.name === 'run')!;
  const [one, two] = run.checkpoints;
  assert.equal(one.state, 'error');
  assert.match(one.reason!, /index-mismatch: the index maps it to model-00002-of-00002\.safetensors, which does not hold it/);
  assert.equal(two.state, 'complete');
  assert.match(
    two.reason!,
    /holds both model\.safetensors\.index\.json and model\.safetensors: the index's 1 shard\(s\) are read and model\.safetensors is ignored/,
  );
  const fsdp = scan.runs.flatMap((r) => r.checkpoints).find((c) => c.layout === 'verl-fsdp')!;
  assert.ok(fsdp.mergeCommand!.includes(`--local_dir '${raw.replace(/'/g, "'\\''")}'`), fsdp.mergeCommand);
  // The analysis says the same in its report.
  const { Checkpoint } = await import('../../src/formats/checkpoint');
  const ck = await Checkpoint.open(both);
  assert.equal(ck.notes.length, 1);
  await ck.close();
});
