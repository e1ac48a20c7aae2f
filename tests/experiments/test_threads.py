"""Torch threads of the demp commands (their speed: benchmarks/threads.py, speed_cpu.md)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from demp.experiments.cli.main import build_parser, main
from demp.experiments.harness import threads


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_free_cores_is_the_idle_share_of_every_core(monkeypatch):
    samples = iter([(100.0, 400.0), (160.0, 480.0)])  # 60 of 80 jiffies idle
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.free_cores(0.0) == pytest.approx(3.0, abs=1e-12)


def test_choose_threads_prefers_the_flag_then_the_environment_then_the_free_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert threads.choose_threads(3) == (3, "--threads")
    monkeypatch.setattr(threads, "free_cores", lambda: 0.9)
    assert threads.choose_threads(None) == (1, "0.9 of 2 cores free")
    monkeypatch.setattr(threads, "free_cores", lambda: 0.1)  # every core taken: still one
    assert threads.choose_threads(None)[0] == 1
    monkeypatch.setattr(threads, "free_cores", lambda: 5.0)  # never above the usable cores
    assert threads.choose_threads(None)[0] == 2
    monkeypatch.setattr(threads, "free_cores", lambda: None)
    assert threads.choose_threads(None) == (2, "the usable cores")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose_threads(None) == (None, "OMP_NUM_THREADS")


def test_train_takes_threads_and_records_them(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "synthetic", "--model", "mlp", "--method", "dense", "--steps",
            "4", "--train-size", "64", "--test-size", "32", "--batch-size", "16",
            "--no-progress", "--threads", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert (
        first.startswith("demp train: training dense mlp") and "1 torch thread (--threads)" in first
    )
    assert json.loads((out / "config.json").read_text())["threads"] == 1
    assert json.loads((out / "summary.json").read_text())["threads"] == 1
    assert main(["train", *argv[1:-4], "--threads", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--threads" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["demo"], ["analyze", "dead-ratio"], ["bench"]])
def test_every_training_command_takes_threads(command):
    assert build_parser().parse_args([*command, "--threads", "2"]).threads == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--threads", "0"])


def test_importing_demp_changes_no_process_setting():
    code = "import os, demp; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "None"
