#!/usr/bin/env bash
# Set up demp on a fresh machine: .venv at the repo root, torch 2.13.0 (CPU wheel), the package.
#
#   bash scripts/setup.sh          .venv only (the library, the harness, the tests' tools)
#   bash scripts/setup.sh --zoo    also .venv-zoo: torch 2.14.1 + torchvision 0.29.1 + timm,
#                                  where the model-zoo tests (tests/zoo) run
#
# Why two environments: torchvision (and timm, which imports it) does not load beside the
# torch 2.13.0 CPU wheel; the only torch build on this machine's disk that it loads with is
# 2.14.1, a CUDA build of ~5.7 GB. .venv stays light for the demo, and the suite runs on
# two torch releases.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
ZOO=0
for arg in "$@"; do
    case "$arg" in
        --zoo) ZOO=1 ;;
        *) echo "setup.sh: unknown option $arg (the only option is --zoo)" >&2; exit 2 ;;
    esac
done

install() {  # install VENV TORCH_PINS... : torch first, pinned (an unpinned torch pulls CUDA)
    local venv=$1 extras=$2
    shift 2
    if [ ! -x "$venv/bin/python" ]; then
        "$PY" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet "$@"
    "$venv/bin/python" -m pip install --quiet -e ".[$extras]"
}

install .venv dev torch==2.13.0
if [ "$ZOO" = 1 ]; then
    install .venv-zoo dev,zoo torch==2.14.1 torchvision==0.29.1 timm==1.0.29
fi
