"""Faults a run survives: a signal in every phase of a step, a kill at every write, damage.

Each faulty run is compared with a straight one: the same summary, bit-equal final
weights, and the same metrics file line by line (times aside).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PHASES
from safetensors.torch import load_file

from demp.experiments.cli.main import main

ARGS = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "64", "--batch-size",
        "32", "--no-progress", "--model", "resnet18", "--width", "0.125", "--method", "demp",
        "--steps", "40", "--reg-strength", "0.05", "--prune-every", "6", "--lr", "1e-2",
        "--eval-every", "1"]  # fmt: skip
TIMES = ("elapsed", "seconds", "wall_seconds", "train_seconds", "eval_seconds")


def train(out, *extra):
    return main(["train", *ARGS, *map(str, extra), "--out", str(out)])


def resume(out):
    return main(["train", "--resume", str(out), "--no-progress"])


def untimed(record):
    return {k: v for k, v in record.items() if not any(t in k for t in TIMES)}


def metric_lines(out):
    return [untimed(json.loads(line)) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path):
    sa, sb = (untimed(json.loads((r / "summary.json").read_text())) for r in (a, b))
    sa.pop("per_step", None), sb.pop("per_step", None)
    assert sa == sb
    wa, wb = (load_file(r / "checkpoint" / "model.safetensors") for r in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert metric_lines(a) == metric_lines(b)


def cut_at(tmp_path, interrupt_at, *signal_args, **signal_kwargs):
    """A run stopped (exit 130) by ``interrupt_at(*signal_args, ...)``; its folder."""
    disarm = interrupt_at(*signal_args, **signal_kwargs)
    assert train(tmp_path / "cut") == 130
    disarm()
    return tmp_path / "cut"


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    assert train(out) == 0
    return out


@pytest.mark.parametrize("phase", PHASES)
def test_a_signal_in_any_phase_stops_at_the_step_boundary_and_resumes_exactly(
    phase, straight, tmp_path, interrupt_at
):
    n = {"evaluation": 2, "checkpoint": 2}.get(phase, 13)  # mid-epoch for the step phases
    cut_at(tmp_path, interrupt_at, n, phase)
    spec = json.loads((tmp_path / "cut" / "checkpoint" / "spec.json").read_text())
    assert spec["extra"]["step"] == (16 if n == 2 else 13)  # the end of the step signalled
    assert resume(tmp_path / "cut") == 0
    assert_same_run(straight, tmp_path / "cut")


def test_sigterm_is_handled_like_ctrl_c(straight, tmp_path, interrupt_at):
    cut_at(tmp_path, interrupt_at, 13, "backward", signum=signal.SIGTERM)
    assert (
        json.loads((tmp_path / "cut" / "checkpoint" / "spec.json").read_text())["extra"]["step"]
        == 13
    )
    assert resume(tmp_path / "cut") == 0
    assert_same_run(straight, tmp_path / "cut")


def test_a_second_signal_stops_at_once_and_keeps_the_last_complete_checkpoint(
    straight, tmp_path, interrupt_at, capsys
):
    cut_at(tmp_path, interrupt_at, 13, "optimizer", times=2)  # inside step 13: after the epoch at 8
    assert "without a checkpoint" in capsys.readouterr().out
    assert (
        json.loads((tmp_path / "cut" / "checkpoint" / "spec.json").read_text())["extra"]["step"]
        == 8
    )
    assert resume(tmp_path / "cut") == 0
    assert_same_run(straight, tmp_path / "cut")


KILLER = """
import os, sys
import demp.checkpoint as package
from demp.checkpoint import files
from demp.experiments.cli.main import main
target, n = sys.argv[1], int(sys.argv[2])
calls = {"n": 0}
real = getattr(package, target) if target != "replace" else os.replace
def dying(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == n:
        os._exit(9)  # as kill -9: no handler, no cleanup
    return real(*args, **kwargs)
if target == "replace":
    files.os = type(os)("os_shim"); files.os.__dict__.update(os.__dict__); files.os.replace = dying
else:
    setattr(package, target, dying)  # as save_checkpoint calls it
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize(
    ("target", "n"),
    [("fsync_dir", 1), ("replace", 1), ("fsync_dir", 2), ("replace", 2), ("replace", 3)],
)  # fmt: skip
def test_a_kill_at_any_write_of_a_checkpoint_resumes_exactly(target, n, straight, tmp_path):
    """fsync_dir: the new files are written, not yet swapped in (a stale temp folder);
    replace 2k and 2k+1: between and after the two renames that swap a checkpoint in."""
    out = tmp_path / "cut"
    cmd = [sys.executable, "-c", KILLER, target, str(n), "train", *ARGS, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # as in here
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 9
    if not any(out.glob("checkpoint*")):  # killed before the first checkpoint was in place
        assert resume(out) == 2  # nothing to resume: said in one line
        assert train(out) == 0  # a fresh run may start over (and removes the stale temps)
        assert not list(out.glob(".checkpoint.*"))
        assert_same_run(straight, out)
        return
    with (
        pytest.warns(UserWarning, match="previous checkpoint")
        if not (out / "checkpoint").exists()
        else _Nothing()
    ):
        assert resume(out) == 0
    assert not list(out.glob(".checkpoint.*"))  # the stale temp folders are gone
    assert_same_run(straight, out)


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(straight, tmp_path,
                                                                    interrupt_at):  # fmt: skip
    cut_at(tmp_path, interrupt_at, 20)  # checkpoints at 8 and 16, then 20 at the signal
    ckpt = tmp_path / "cut" / "checkpoint"
    data = bytearray((ckpt / "model.safetensors").read_bytes())
    data[-64:] = bytes(64)  # 64 bytes of the weights zeroed
    (ckpt / "model.safetensors").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"model.safetensors is damaged.*previous checkpoint"):
        assert resume(tmp_path / "cut") == 0
    assert_same_run(straight, tmp_path / "cut")


def test_both_checkpoints_damaged_is_a_clear_error(tmp_path, interrupt_at, capsys):
    cut_at(tmp_path, interrupt_at, 20)
    for name in ("checkpoint", "checkpoint.prev"):
        (tmp_path / "cut" / name / "optimizer.safetensors").write_bytes(b"garbage")
    capsys.readouterr()
    assert resume(tmp_path / "cut") == 2
    err = capsys.readouterr().err
    assert "optimizer.safetensors is damaged" in err and "checkpoint.prev" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "content"),
    [("checkpoint/spec.json", "{}"), ("checkpoint/spec.json", '{"format": "demp-ch'),
     ("config.json", '{"dataset": "synth')],
)  # fmt: skip
def test_a_malformed_file_is_a_one_line_error(name, content, tmp_path, interrupt_at, capsys):
    cut_at(tmp_path, interrupt_at, 20)
    shutil.rmtree(tmp_path / "cut" / "checkpoint.prev")
    (tmp_path / "cut" / name).write_text(content)
    capsys.readouterr()
    assert resume(tmp_path / "cut") == 2
    err = capsys.readouterr().err
    assert err.startswith("demp: error:") and err.count("\n") == 1, err


def test_a_full_disk_is_a_one_line_error_and_the_last_checkpoint_survives(
    straight, tmp_path, monkeypatch, capsys
):
    import errno

    import safetensors.torch

    real, calls = safetensors.torch.save_file, {"n": 0}

    def filling(tensors, filename, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 4:  # from the third checkpoint on (model, optimizer each)
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", filling)
    assert train(tmp_path / "cut") == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and err.count("\n") == 1 and "checkpoint" in err
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    assert not list((tmp_path / "cut").glob(".checkpoint.*"))
    assert resume(tmp_path / "cut") == 0
    assert_same_run(straight, tmp_path / "cut")


def test_a_checkpoint_of_the_earlier_layout_still_resumes(straight, tmp_path, interrupt_at):
    """Before the single channel DemP's state was ``pruner.json`` beside the spec."""
    cut_at(tmp_path, interrupt_at, 13)
    ckpt = tmp_path / "cut" / "checkpoint"
    spec = json.loads((ckpt / "spec.json").read_text())
    (ckpt / "pruner.json").write_text(json.dumps(spec["extra"].pop("method")["pruner"]))
    spec["extra"]["baseline"] = None
    (ckpt / "spec.json").write_text(json.dumps(spec))
    shutil.rmtree(tmp_path / "cut" / "checkpoint.prev")
    assert resume(tmp_path / "cut") == 0
    assert_same_run(straight, tmp_path / "cut")


@pytest.mark.parametrize(
    "damage",
    [lambda extra: extra.pop("step"), lambda extra: extra["method"].update(pruner={}),
     lambda extra: extra.update(method={})],
    ids=["no step", "empty pruner state", "no method state"],
)  # fmt: skip
def test_a_malformed_run_state_in_the_spec_is_a_one_line_error(damage, tmp_path, interrupt_at,
                                                                capsys):  # fmt: skip
    cut = cut_at(tmp_path, interrupt_at, 20)
    shutil.rmtree(cut / "checkpoint.prev")
    spec = json.loads((cut / "checkpoint" / "spec.json").read_text())
    damage(spec["extra"])
    (cut / "checkpoint" / "spec.json").write_text(json.dumps(spec))
    capsys.readouterr()
    assert resume(cut) == 2
    err = capsys.readouterr().err
    assert err.startswith("demp: error: cannot resume") and err.count("\n") == 1, err
