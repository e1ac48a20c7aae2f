"""`demp train --nproc 2`: the harness under torchrun (gloo, CPU)."""

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

BASE = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "64", "--batch-size",
        "32", "--no-progress", "--model", "mlp"]  # fmt: skip
DEMP = ["--method", "demp", "--reg-target", "all", "--reg-strength", "0.02", "--prune-every",
        "8", "--lr", "0.01", "--steps", "40"]  # fmt: skip


def demp_train(*args, nproc=None):
    cmd = [sys.executable, "-m", "demp", "train", *BASE, *map(str, args)]
    if nproc:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def params(run):
    return load_file(run / "checkpoint" / "model.safetensors")


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    done = demp_train(*DEMP, "--out", tmp_path / "two", nproc=2)
    assert done.stdout.count("demp mlp on synthetic: test acc") == 1  # only rank 0 prints
    assert done.stdout.count("demp train: training demp mlp") == 1
    demp_train(*DEMP, "--out", tmp_path / "one")
    a, b = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("two", "one"))
    assert a["units"] < a["units_initial"]  # units were removed
    assert (a["units"], a["params"]) == (b["units"], b["params"])
    pa, pb = params(tmp_path / "two"), params(tmp_path / "one")
    for key in pb:
        torch.testing.assert_close(pa[key], pb[key], rtol=1e-4, atol=1e-5)
    # only rank 0 wrote: one line per logged step, the same lines as one process writes
    steps = [r["step"] for r in records(tmp_path / "two") if r["kind"] == "step"]
    assert steps == [r["step"] for r in records(tmp_path / "one") if r["kind"] == "step"]
    assert len(steps) == len(set(steps))
    checks = [r for r in records(tmp_path / "two") if r["kind"] == "check"]
    assert [c["live"] for c in checks] == [
        c["live"] for c in records(tmp_path / "one") if c["kind"] == "check"
    ]


def test_stop_and_resume_under_torchrun(tmp_path):
    demp_train(*DEMP, "--out", tmp_path / "straight", nproc=2)
    done = demp_train(*DEMP, "--out", tmp_path / "cut", "--stop-after", 20, nproc=2)
    assert "stopped at step 20" in done.stdout
    assert not (tmp_path / "cut" / "summary.json").exists()
    cmd = [sys.executable, "-m", "demp", "train", "--resume", str(tmp_path / "cut"),
           "--nproc", "2", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = params(tmp_path / "straight"), params(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in records(tmp_path / "cut") if r["kind"] == "step"]
    assert steps == sorted(set(steps))


def test_bad_launch_options(tmp_path, capsys):
    from demp.experiments.cli.main import main

    args = ["train", *BASE, *DEMP, "--out", str(tmp_path / "x")]
    assert main([*args, "--nproc", "0"]) == 2
    assert "--nproc must be >= 1" in capsys.readouterr().err
    assert main([*args, "--batch-size", "32", "--stop-after", "40"]) == 2
    assert "stop-after 40 must lie between" in capsys.readouterr().err
    os.environ["WORLD_SIZE"] = "3"
    try:
        assert main([*args, "--nproc", "2"]) == 2
    finally:
        del os.environ["WORLD_SIZE"]
    assert "torchrun started 3 processes" in capsys.readouterr().err
