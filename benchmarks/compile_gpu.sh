#!/usr/bin/env bash
# Eager vs torch.compile with CUDA graphs (mode reduce-overhead) at batch 128 on a lent GPU
# (issue #28 item 3). Needs run folders with checkpoints (a dense and a DemP run of the long
# preset and of the demo); trains nothing itself. Usage:
#   benchmarks/compile_gpu.sh DENSE_RUN DEMP_RUN [...]   (writes runs/compile_gpu.md)
set -euo pipefail
python=${PYTHON:-.venv/bin/python}
mkdir -p runs
for mode in default reduce-overhead; do
  "$python" benchmarks/compile_cpu.py "$@" --device cuda --threads 1 --steps 100 \
    $( [ "$mode" = default ] || echo --mode "$mode" ) --md "runs/compile_gpu_$mode.md"
done
cat runs/compile_gpu_*.md
