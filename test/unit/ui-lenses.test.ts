import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { BF16_HALF_ULP_REL, detectFlavours, lrToFloorRatio, outputDirCandidates, readShellFlags, trainingConfigLenses } from '../../src/ui-model/lenses';

const kinds = (fileName: string, text: string): string[] => trainingConfigLenses(fileName, text).map((l) => `${l.line}:${l.kind}:${l.key}`);

test('verl YAML: output dir, KL / clip (Gate I), lr and dtype (Gate III)', () => {
  const yaml = [
    'actor_rollout_ref:',
    '  model:',
    '    path: Qwen/Qwen2.5-Math-1.5B',
    '  actor:',
    '    optim:',
    '      lr: 1e-6',
    '    use_kl_loss: true',
    '    kl_loss_coef: 0.001',
    '    clip_ratio: 0.2',
    '    fsdp_config:',
    '      mixed_precision:',
    '        param_dtype: bf16',
    'algorithm:',
    '  kl_ctrl:',
    '    kl_coef: 0.0',
    'trainer:',
    '  default_local_dir: checkpoints/grpo  # where checkpoints go',
  ].join('\n');
  assert.deepEqual(detectFlavours(yaml), ['verl']);
  assert.deepEqual(kinds('ppo_trainer.yaml', yaml), [
    '5:gate3-lr:lr',
    '6:gate1:use_kl_loss',
    '7:gate1:kl_loss_coef',
    '8:gate1:clip_ratio',
    '11:gate3-dtype:param_dtype',
    '14:gate1:kl_coef',
    '16:output:default_local_dir',
  ]);
  const lenses = trainingConfigLenses('ppo_trainer.yaml', yaml);
  assert.match(lenses.find((l) => l.key === 'kl_coef')!.title, /no KL penalty/);
  assert.equal(lenses.find((l) => l.kind === 'output')!.value, 'checkpoints/grpo');
  for (const l of lenses) {
    // Every lens explains itself in two sentences.
    assert.equal(l.detail.split(/(?<=[.!?])\s+(?=[A-Z])/).length, 2, `${l.key}: ${l.detail}`);
  }
});

test('TRL GRPOConfig in Python, PEFT PiSSA warning', () => {
  const py = [
    'from trl import GRPOConfig',
    'from peft import LoraConfig',
    'cfg = GRPOConfig(output_dir="out/grpo", learning_rate=1e-6, beta=0.04, epsilon=0.2, bf16=True)',
    'lora = LoraConfig(r=16, lora_alpha=32, init_lora_weights="pissa_niter_4")',
    'opt = dict(betas=(0.9, 0.99))',
  ].join('\n');
  assert.deepEqual(detectFlavours(py).sort(), ['hf-trainer', 'peft', 'trl']);
  const l = trainingConfigLenses('train.py', py);
  assert.deepEqual(
    l.map((x) => `${x.line}:${x.kind}:${x.key}`),
    ['2:output:output_dir', '2:gate3-lr:learning_rate', '2:gate1:beta', '2:gate1:epsilon', '2:gate3-dtype:bf16', '3:lora-init:init_lora_weights'],
  );
  const pissa = l.find((x) => x.kind === 'lora-init')!;
  assert.equal(pissa.severity, 'warning');
  assert.match(pissa.detail, /collapsed early at higher learning rates/);
  assert.equal(l.find((x) => x.key === 'output_dir')!.value, 'out/grpo');
});

test('HF TrainingArguments JSON and a plain LoRA init get no warning', () => {
  const json =
    '{\n  "output_dir": "runs/sft",\n  "learning_rate": 2e-5,\n  "per_device_train_batch_size": 4,\n  "torch_dtype": "float32",\n  "init_lora_weights": true\n}';
  assert.deepEqual(kinds('training_args.json', json), ['1:output:output_dir', '2:gate3-lr:learning_rate', '4:gate3-dtype:torch_dtype']);
  assert.match(trainingConfigLenses('training_args.json', json)[2].title, /fp32 weights/);
});

test('OpenRLHF shell flags and verl Hydra overrides', () => {
  const sh = [
    '#!/bin/bash',
    'deepspeed --module openrlhf.cli.train_ppo \\',
    '  --pretrain Qwen/Qwen2.5-7B \\',
    '  --save_path ./ckpt/ppo \\',
    '  --actor_learning_rate 5e-7 \\',
    '  --init_kl_coef 0.01 \\',
    '  --eps_clip=0.2 \\',
    '  --bf16',
  ].join('\n');
  assert.deepEqual(kinds('train_ppo.sh', sh), [
    '3:output:save_path',
    '4:gate3-lr:actor_learning_rate',
    '5:gate1:init_kl_coef',
    '6:gate1:eps_clip',
    '7:gate3-dtype:bf16',
  ]);
  const hydra =
    'python3 -m verl.trainer.main_ppo \\\n  actor_rollout_ref.actor.optim.lr=1e-6 \\\n  actor_rollout_ref.actor.kl_loss_coef=0.001 \\\n  trainer.default_local_dir=$HOME/ckpt';
  assert.deepEqual(kinds('run_grpo.sh', hydra), ['1:gate3-lr:lr', '2:gate1:kl_loss_coef', '3:output:default_local_dir']);
  assert.deepEqual(
    readShellFlags('  --flag --x=1 # c').map((k) => `${k.key}=${k.value}`),
    ['flag=true', 'x=1'],
  );
});

test('files that are not training configs get no lenses', () => {
  assert.deepEqual(trainingConfigLenses('settings.py', 'lr = 0.1\nbeta = 0.5\n'), []);
  assert.deepEqual(trainingConfigLenses('config.json', '{"torch_dtype": "bfloat16", "hidden_size": 64}'), []);
  assert.deepEqual(trainingConfigLenses('notes.txt', 'output_dir: x'), []);
});

test('Gate III arithmetic: half a bf16 ULP is 0.195%-0.391% relative; lr 1e-6 is about 1/40-1/80 of the floor at |w|=0.02', () => {
  assert.ok(Math.abs(BF16_HALF_ULP_REL.low - 0.001953125) < 1e-15);
  assert.ok(Math.abs(BF16_HALF_ULP_REL.high - 0.00390625) < 1e-15);
  const r = lrToFloorRatio(1e-6);
  assert.ok(Math.abs(r.floorLow - 3.90625e-5) < 1e-12);
  assert.ok(Math.abs(r.high - 1e-6 / 3.90625e-5) < 1e-12);
  assert.ok(Math.abs(r.low - 1e-6 / 7.8125e-5) < 1e-12);
  const lens = trainingConfigLenses('a.yaml', 'actor_rollout_ref:\n  actor:\n    optim:\n      lr: 1e-6\n')[0];
  assert.match(lens.title, /0\.013–0\.026x the bf16 floor/);
  assert.match(lens.detail, /0\.195%–0\.391%/);
});

test('output directory candidates: relative to the config, then the workspace; interpolation is skipped', () => {
  assert.deepEqual(outputDirCandidates('out/a', '/w/configs', ['/w'], path.posix.join, path.posix.isAbsolute), ['/w/configs/out/a', '/w/out/a']);
  assert.deepEqual(outputDirCandidates('/abs/run', '/w', [], path.posix.join, path.posix.isAbsolute), ['/abs/run']);
  assert.deepEqual(outputDirCandidates('${trainer.project}/x', '/w', ['/w'], path.posix.join, path.posix.isAbsolute), []);
  assert.deepEqual(outputDirCandidates('$HOME/ckpt', '/w', ['/w'], path.posix.join, path.posix.isAbsolute), []);
});
