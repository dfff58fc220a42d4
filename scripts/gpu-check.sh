#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: check in under 5 minutes that onnxruntime's CUDA provider is picked,
# that its results equal the CPU's within tolerance, and time the whole Three-Gate report for the
# Qwen2.5-1.5B shape on the GPU (goal: under 20 s on an H100).
# Needs: an installed checkout (npm ci), the CUDA 12 / cuDNN 9 runtime libraries on the library path, and
# onnxruntime-node's CUDA provider libraries (see BENCHMARKS.md, "The GPU path").
set -euo pipefail
cd "$(dirname "$0")/.."
export ORT_DISABLE_TELEMETRY=1
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU visible (nvidia-smi -L failed)"; exit 2
fi
nvidia-smi -L
provider=node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so
if [ ! -f "$provider" ]; then
  echo "gpu-check: $provider is missing; installing the CUDA 12 provider (needs network)"
  ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js
fi
[ -f dist/gpu-check.js ] || npm run build >/dev/null
timeout 240 node dist/gpu-check.js
# The whole report on the GPU, with a model generated in a temp folder (layers: all 28 by default).
timeout 600 node dist/bench.js --only report --device cuda ${GPU_CHECK_LAYERS:+--layers $GPU_CHECK_LAYERS}
