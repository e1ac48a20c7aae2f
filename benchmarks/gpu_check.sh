#!/bin/bash
# The GPU checks of benchmarks/RESULTS.md in one call: the CUDA tests, the pruner's overhead on
# CUDA, and the speed of finished runs' final architectures at ResNet-18 width 1.0.
#
#   bash benchmarks/gpu_check.sh OUT_DIR DATA_DIR RUN_DIR [RUN_DIR ...]
#
# OUT_DIR receives cuda-tests.txt, overhead-cuda.md and speed-cuda-b{128,512}.md; DATA_DIR is
# the runs' dataset folder on this machine. Run from the repository root with demp importable
# (e.g. PYTHONPATH=$PWD/src) and pytest installed.
set -u
OUT=$1; DATA=$2; shift 2
mkdir -p "$OUT"
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 300 $PY -m pytest -q -p no:cacheprovider tests/core/test_cuda.py > "$OUT/cuda-tests.txt" 2>&1
echo "CUDA tests rc=$?"; tail -2 "$OUT/cuda-tests.txt"
timeout 120 $PY benchmarks/overhead.py --width 64 --steps 40 --device cuda > "$OUT/overhead-cuda.md" 2>&1
echo "overhead rc=$?"; cat "$OUT/overhead-cuda.md"
for B in 128 512; do
  timeout 300 $PY benchmarks/speed.py "$@" --device cuda --round-to 8 --batch $B --steps 30 \
    --data-dir "$DATA" > "$OUT/speed-cuda-b$B.md" 2>&1
  echo "speed batch $B rc=$?"; cat "$OUT/speed-cuda-b$B.md"
done
