#!/usr/bin/env python3
"""Independent numpy reference for `gatescope steps` on the bundled example runs.

For every run under examples/runs, walks base -> each complete checkpoint in step order and writes
examples/runs/<run>/steps-reference.json with, per step and per tensor: M1 changed counts, entries whose
bits differ, the relative update norm in float64, the lower median of |dw| / ulp, the dense / bitmap /
COO payload bytes, the SHA-256 of the XOR of the two bit patterns (what the XOR+zstd payload
compresses), and Gate III's direct count of entries whose half bf16 ULP exceeds the step's bound.

Only numpy: safetensors headers are parsed here, the learning rate and optimizer steps are read from
the run's files by this script's own rules (the largest logged learning_rate in the step's window, else
training_args.json, else the verl YAML's actor_rollout_ref.actor.optim.lr; HF Trainer checkpoints count
optimizer steps, verl iterations step the optimizer ppo_epochs x train_batch_size / ppo_mini_batch_size
times). Nothing of Gatescope is imported.

Usage: python3 scripts/steps-reference.py [examples]
"""
import hashlib
import json
import os
import re
import struct
import sys

import numpy as np

ETA = 1e-3
DTYPES = {'BF16': (np.uint16, 2), 'F16': (np.float16, 2), 'F32': (np.float32, 4), 'F64': (np.float64, 8)}


def read_safetensors(path):
    """name -> (dtype, shape, raw little-endian array: uint16 bits for BF16)."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, v in header.items():
        if name == '__metadata__':
            continue
        np_dtype, size = DTYPES[v['dtype']]
        a, b = v['data_offsets']
        arr = np.frombuffer(data[a:b], dtype=np.dtype(np_dtype).newbyteorder('<')).reshape(v['shape'])
        out[name] = (v['dtype'], list(v['shape']), arr)
    return out


def read_checkpoint(folder):
    """A checkpoint folder: model.safetensors, or the shards a model.safetensors.index.json names."""
    single = os.path.join(folder, 'model.safetensors')
    if os.path.exists(single):
        return read_safetensors(single)
    index = json.load(open(os.path.join(folder, 'model.safetensors.index.json')))
    out = {}
    for shard in sorted(set(index['weight_map'].values())):
        out.update(read_safetensors(os.path.join(folder, shard)))
    assert set(out) == set(index['weight_map']), f'{folder}: the index and the shards disagree'
    return out


def values(dtype, raw):
    if dtype == 'BF16':
        return (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return raw.astype(np.float64)


def bf16_ulp_of_values(w):
    """bf16 spacing at |w| from frexp (|w| = m 2^e, m in [0.5, 1)): 2^(e - 8); 2^-133 below the normal range."""
    m, e = np.frexp(np.abs(w))
    ulp = np.ldexp(1.0, (e - 8).astype(np.int64))
    return np.where(np.abs(w) < 2.0 ** -126, 2.0 ** -133, ulp)


def module_of(name):
    for key, m in (('q_proj', 'q'), ('k_proj', 'k'), ('v_proj', 'v'), ('o_proj', 'o'), ('gate_proj', 'gate'),
                   ('up_proj', 'up'), ('down_proj', 'down'), ('embed_tokens', 'embed'), ('lm_head', 'head')):
        if key in name:
            return m
    return 'norm' if 'norm' in name else 'other'


def step_of(rel):
    for part in reversed(rel.split(os.sep)):
        m = re.fullmatch(r'(?:checkpoint|global_step)[-_]?(\d+)', part)
        if m:
            return int(m.group(1))
    return None


def checkpoints_of(run_dir):
    found = []
    for dirpath, _, files in os.walk(run_dir):
        if 'model.safetensors' in files or 'model.safetensors.index.json' in files:
            rel = os.path.relpath(dirpath, run_dir)
            found.append((step_of(rel), dirpath, 'verl' if 'global_step' in rel else 'hf-trainer'))
    return sorted(found)


def yaml_value(run_dir, dotted):
    """A scalar at a dotted path of the run's YAML files (indentation-nested, as the example configs are)."""
    want = dotted.split('.')
    for name in sorted(os.listdir(run_dir)):
        if not name.endswith(('.yaml', '.yml')):
            continue
        stack = []
        for line in open(os.path.join(run_dir, name)):
            body = line.split(' #')[0].rstrip()
            m = re.match(r'^( *)([A-Za-z_][\w]*):\s*(.*)$', body)
            if not m:
                continue
            depth = len(m.group(1))
            while stack and stack[-1][0] >= depth:
                stack.pop()
            stack.append((depth, m.group(2)))
            if [k for _, k in stack] == want and m.group(3):
                return m.group(3).strip()
    return None


def learning_rate(run_dir, ckpt_dir, from_step, to_step):
    state = os.path.join(ckpt_dir, 'trainer_state.json')
    if os.path.exists(state):
        logged = [e['learning_rate'] for e in json.load(open(state))['log_history']
                  if 'learning_rate' in e and from_step < e['step'] <= to_step]
        if logged:
            return max(logged)
    for d in (ckpt_dir, run_dir):
        args = os.path.join(d, 'training_args.json')
        if os.path.exists(args) and 'learning_rate' in json.load(open(args)):
            return float(json.load(open(args))['learning_rate'])
    v = yaml_value(run_dir, 'actor_rollout_ref.actor.optim.lr')
    return float(v) if v is not None else None


def optimizer_steps(run_dir, layout, from_step, to_step):
    if layout == 'hf-trainer':
        return to_step - from_step
    epochs = yaml_value(run_dir, 'actor_rollout_ref.actor.ppo_epochs')
    batch = yaml_value(run_dir, 'data.train_batch_size')
    mini = yaml_value(run_dir, 'actor_rollout_ref.actor.ppo_mini_batch_size')
    if None in (epochs, batch, mini):
        return 1
    return (to_step - from_step) * int(epochs) * (int(batch) // int(mini))


def tensor_step(name, d0, r0, d1, r1):
    numel = int(r0.size)
    size1 = DTYPES[d1][1]
    w0, w1 = values(d0, r0), values(d1, r1)
    nonfinite = ~np.isfinite(w0) | ~np.isfinite(w1)
    if d0 == 'BF16' and d1 == 'BF16':
        equal = (r0 == r1) | (((r0 & 0x7FFF) == 0) & ((r1 & 0x7FFF) == 0))
    else:
        equal = np.abs(w1 - w0) <= ETA * np.maximum(np.abs(w0), np.abs(w1))
    changed = ~equal & ~nonfinite
    dw = np.where(nonfinite, 0.0, w1 - w0)
    base = float(np.sqrt((np.where(nonfinite, 0.0, w0) ** 2).sum()))
    upd = float(np.sqrt((dw ** 2).sum()))
    if d0 == d1:
        x0 = r0.reshape(-1).view(np.uint8)
        x1 = r1.reshape(-1).view(np.uint8)
        xor = np.bitwise_xor(x0, x1)
        bits_changed = int((r0.reshape(-1).view(f'u{DTYPES[d0][1]}') != r1.reshape(-1).view(f'u{DTYPES[d0][1]}')).sum())
        xor_sha = hashlib.sha256(xor.tobytes()).hexdigest()
    else:
        bits_changed = int((w0 != w1).sum())
        xor_sha = None
    ulps = np.sort((np.abs(dw) / bf16_ulp_of_values(w0))[changed])
    if bits_changed:
        index_bytes = 8 if numel > 2 ** 31 else 4
        payload = {'dense': numel * size1, 'bitmap': -(-numel // 8) + bits_changed * size1, 'coo': bits_changed * (index_bytes + size1)}
    else:
        payload = {'dense': 0, 'bitmap': 0, 'coo': 0}
    return {
        'name': name, 'module': module_of(name), 'numel': numel, 'changed': int(changed.sum()), 'bitsChanged': bits_changed,
        'nonFinite': int(nonfinite.sum()), 'relUpdateNorm': upd / base if base > 0 else None,
        'medianUpdateUlps': float(ulps[(ulps.size - 1) // 2]) if ulps.size else None,
        'payload': payload, 'xorSha256': xor_sha,
        'bf16': d0 == 'BF16' and d1 == 'BF16',
        'halfUlpFrom': 0.5 * bf16_ulp_of_values(w0[np.isfinite(w0)]) if d0 == 'BF16' and d1 == 'BF16' else None,
    }


def run_reference(examples, run):
    run_dir = os.path.join(examples, 'runs', run)
    chain = [(0, os.path.join(examples, 'base'), 'base')] + checkpoints_of(run_dir)
    steps = []
    for (s0, p0, _), (s1, p1, layout) in zip(chain, chain[1:]):
        a, b = read_checkpoint(p0), read_checkpoint(p1)
        tensors = [tensor_step(n, a[n][0], a[n][2], b[n][0], b[n][2]) for n in sorted(a) if n in b]
        lr = learning_rate(run_dir, p1, s0, s1)
        opt = optimizer_steps(run_dir, layout, s0, s1)
        pred = None
        bf = [t for t in tensors if t['bf16']]
        if lr is not None and bf:
            half = np.concatenate([t['halfUlpFrom'] for t in bf])
            bound = lr * opt
            pred = {
                'learningRate': lr, 'optimizerSteps': opt, 'bound': bound, 'numel': int(half.size),
                'unchangedAtLrCount': int((half > bound).sum()), 'unchangedAt10LrCount': int((half > 10 * bound).sum()),
            }
        for t in tensors:
            del t['halfUlpFrom'], t['bf16']
        steps.append({
            'from': os.path.relpath(p0, run_dir), 'to': os.path.relpath(p1, run_dir), 'fromStep': s0, 'toStep': s1,
            'changed': sum(t['changed'] for t in tensors), 'bitsChanged': sum(t['bitsChanged'] for t in tensors),
            'numel': sum(t['numel'] for t in tensors),
            'payload': {k: sum(t['payload'][k] for t in tensors) for k in ('dense', 'bitmap', 'coo')},
            'prediction': pred, 'tensors': tensors,
        })
    return {'kind': 'gatescope.steps-reference', 'generator': 'scripts/steps-reference.py (numpy)', 'run': run, 'eta': ETA, 'steps': steps}


def main():
    examples = sys.argv[1] if len(sys.argv) > 1 else 'examples'
    for run in sorted(os.listdir(os.path.join(examples, 'runs'))):
        ref = run_reference(examples, run)
        out = os.path.join(examples, 'runs', run, 'steps-reference.json')
        with open(out, 'w') as f:
            json.dump(ref, f, indent=1, sort_keys=True)
            f.write('\n')
        print(out, [(s['fromStep'], s['toStep'], s['changed']) for s in ref['steps']])


if __name__ == '__main__':
    main()
