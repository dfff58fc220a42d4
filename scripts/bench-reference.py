#!/usr/bin/env python3
"""numpy reference for the Gatescope benchmark: the script a researcher would otherwise write.

  bench-reference.py diff BASE.safetensors CKPT.safetensors
  bench-reference.py spectral BASE.safetensors CKPT.safetensors NAME K_SPECTRUM K OVERSAMPLE POWER_ITERS ALPHA

Prints one JSON line with the seconds spent and a few numbers to cross-check against Gatescope.
Reads the safetensors header itself (json + struct) and maps tensors with np.memmap: nothing is unpickled.
"""
import json
import struct
import sys
import time

import numpy as np


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h, 8 + n


def tensor(path, hdr, start, name):
    t = hdr[name]
    b, e = t["data_offsets"]
    assert t["dtype"] == "BF16"
    return np.memmap(path, dtype=np.uint16, mode="r", offset=start + b, shape=(int(np.prod(t["shape"])),)), t["shape"]


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def diff(base, ckpt):
    hb, sb = header(base)
    hc, sc = header(ckpt)
    t0 = time.perf_counter()
    changed_total = 0
    numel_total = 0
    for name in sorted(hb):
        a, shape = tensor(base, hb, sb, name)
        b, _ = tensor(ckpt, hc, sc, name)
        a = np.asarray(a)
        b = np.asarray(b)
        finite = ((a & 0x7F80) != 0x7F80) & ((b & 0x7F80) != 0x7F80)
        changed = (a != b) & (((a | b) & 0x7FFF) != 0) & finite
        w0 = bf16_to_f32(a)
        w1 = bf16_to_f32(b)
        d = w1 - w0
        dsq = float(np.dot(d.astype(np.float64), d.astype(np.float64)))
        bsq = float(np.dot(w0.astype(np.float64), w0.astype(np.float64)))
        maxabs = float(np.abs(d).max()) if d.size else 0.0
        c = int(changed.sum())
        if c:
            exp = ((a[changed] >> 7) & 0xFF).astype(np.int32)
            ulp = np.ldexp(np.float32(1), np.maximum(exp, 1) - 127 - 7)
            np.median(np.abs(d[changed]) / ulp)
        if len(shape) == 2:
            m2 = changed.reshape(shape)
            m2.sum(axis=1)
            m2.sum(axis=0)
        changed_total += c
        numel_total += a.size
        del dsq, bsq, maxabs
    return {"seconds": time.perf_counter() - t0, "unchanged": 1 - changed_total / numel_total}


def rsvd(A, k, p, q, seed):
    rng = np.random.default_rng(seed)
    m, n = A.shape
    l = min(k + p, min(m, n))
    om = rng.standard_normal((n, l)).astype(np.float32)
    Q, _ = np.linalg.qr(A @ om)
    for _ in range(q):
        Z, _ = np.linalg.qr(A.T @ Q)
        Q, _ = np.linalg.qr(A @ Z)
    B = Q.T @ A
    ub, s, vt = np.linalg.svd(B.astype(np.float64), full_matrices=False)
    U = Q.astype(np.float64) @ ub
    return U[:, :k], s[:k], vt[:k].T


def spectral(base, ckpt, name, kspec, k, p, q, alpha):
    hb, sb = header(base)
    hc, sc = header(ckpt)
    a, shape = tensor(base, hb, sb, name)
    b, _ = tensor(ckpt, hc, sc, name)
    a = np.asarray(a)
    b = np.asarray(b)
    t0 = time.perf_counter()
    w0 = bf16_to_f32(a).reshape(shape)
    w1 = bf16_to_f32(b).reshape(shape)
    changed = ((a != b) & (((a | b) & 0x7FFF) != 0)).reshape(shape)
    kk = min(max(k, kspec), min(shape))
    U0, s0, V0 = rsvd(w0, kk, p, q, 1)
    U1, s1, V1 = rsvd(w1, kk, p, q, 1)
    dW = w1 - w0
    # M5
    cl = np.linalg.svd(U0[:, :k].T @ U1[:, :k], compute_uv=False)
    cr = np.linalg.svd(V0[:, :k].T @ V1[:, :k], compute_uv=False)
    angle = float(np.degrees(np.arccos(np.clip(min(cl.min(), cr.min()), 0, 1))))
    # M6
    nss = float(np.linalg.norm(s1 - s0) / np.linalg.norm(s0))
    # M8
    U0k = U0[:, :k].astype(np.float32)
    V0k = V0[:, :k].astype(np.float32)
    dWV = dW @ V0k
    inside = float(np.sum((U0k.T @ dWV) ** 2))
    off = 1 - inside / float(np.sum(dW.astype(np.float64) ** 2))
    # M7
    W0k = (U0k * s0[:k].astype(np.float32)) @ V0k.T
    cnt = int(round(alpha * W0k.size))
    flat = np.abs(W0k).ravel()
    P = np.zeros(flat.size, bool)
    P[np.argpartition(-flat, cnt - 1)[:cnt]] = True
    L = np.zeros(flat.size, bool)
    L[np.argpartition(np.abs(w0).ravel(), cnt - 1)[:cnt]] = True
    M = changed.ravel()
    ov_p = float((P & M).sum() / max(M.sum(), 1))
    ov_l = float((L & M).sum() / max(M.sum(), 1))
    return {
        "seconds": time.perf_counter() - t0,
        "principalAngleMaxDeg": angle,
        "nss": nss,
        "offPrincipalEnergy": off,
        "overlapPrincipal": ov_p,
        "overlapLowMagnitude": ov_l,
    }


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "diff":
        print(json.dumps(diff(sys.argv[2], sys.argv[3])))
    elif cmd == "spectral":
        base, ckpt, name = sys.argv[2:5]
        kspec, k, p, q = (int(x) for x in sys.argv[5:9])
        alpha = float(sys.argv[9])
        print(json.dumps(spectral(base, ckpt, name, kspec, k, p, q, alpha)))
    else:
        sys.exit(f"unknown command {cmd}")
