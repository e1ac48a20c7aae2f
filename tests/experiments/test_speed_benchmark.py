"""benchmarks/speed.py: a run's final architecture, rebuilt from its checkpoint spec."""

import json
import sys
import time

import pytest
import torch
from bench_scripts import load_benchmark

from demp.experiments.cli.main import main

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the CPU memory is read from /proc/self/statm, on Linux only",
)


def load_speed(monkeypatch):
    return load_benchmark("speed", monkeypatch)


def test_the_rebuilt_architecture_is_the_runs_and_scales(tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--train-size", "256", "--test-size", "64",
            "--batch-size", "32", "--model", "resnet18", "--width", "0.125", "--steps", "40",
            "--lr", "0.05", "--reg-strength", "0.5", "--prune-every", "8", "--no-progress",
            "--out", str(run)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["params"] < summary["params_initial"]  # the run cut units
    speed = load_speed(monkeypatch)
    config, fractions, shape, k = speed.final_fractions(run)
    assert config.residual_mode() == "per-block" and min(fractions.values()) < 1.0
    x = torch.randn(2, *shape)
    same = speed.scaled(config, fractions, shape, k, config.width, None, x)
    assert sum(p.numel() for p in same.parameters()) == summary["params"]  # the run's own
    big = (shape[0], 32, 32)
    wide = speed.scaled(config, fractions, big, k, 0.25, 8, torch.randn(2, *big))
    assert wide(torch.randn(3, *big)).shape == (3, k)
    rows = speed.main([str(run), "--width", "0.25", "--steps", "1", "--round-to", "8",
                       "--batch", "8"])  # fmt: skip
    assert [r["model"] for r in rows] == ["dense", "pruned", "round_to=8"]
    assert rows[0]["flops_bound"] == 1.0 and rows[1]["flops_bound"] >= rows[2]["flops_bound"] > 1


@linux_only
def test_cpu_step_memory_is_the_resident_sets_growth(monkeypatch):
    speed = load_speed(monkeypatch)
    assert speed.resident_bytes() is not None

    def step():  # 64 MiB touched, held 50 ms, freed
        block = torch.ones(16 * 2**20)
        time.sleep(0.05)
        del block

    growth = speed.peak_memory(step, torch.device("cpu"))
    assert 60 * 2**20 <= growth <= 200 * 2**20


@linux_only
def test_cpu_step_memory_does_not_depend_on_what_was_measured_before(monkeypatch):
    speed = load_speed(monkeypatch)

    def step():  # 48 blocks of 1 MiB: small enough to come from the C heap, not mmap
        blocks = [torch.ones(2**18) for _ in range(48)]
        time.sleep(0.05)
        del blocks

    big = torch.ones(4 * 2**20)  # freeing a 16 MiB block raises glibc's mmap threshold
    del big
    growths = [speed.peak_memory(step, torch.device("cpu")) for _ in range(3)]
    assert all(44 * 2**20 <= g <= 120 * 2**20 for g in growths), growths
