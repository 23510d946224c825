#!/usr/bin/env bash
# Every GPU measurement in one short run, for a session that is lent a GPU machine (device tool `run`):
#   bf16 AMP and torch.compile of the fusion step against the reference ports (docs/benchmarks/fusion_step_cuda.md),
#   the end-to-end step at the papers' sizes, eager vs compile, fp32 vs bf16, peak memory (docs/benchmarks/train_e2e.md).
# PyAV is not installed there: neither script decodes media. Usage: bash benchmarks/gpu_checks.sh [OUT_DIR]
set -euo pipefail
out="${1:-${OUT:-gpu_out}}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python benchmarks/fusion_step.py --device cuda --rounds 3 --steps 10 --out "$out/fusion_step.md" 2>&1 | tail -40
python benchmarks/train_e2e.py --device cuda --only step --steps 5 2>&1 | tee "$out/train_e2e_cuda.txt" | tail -40
