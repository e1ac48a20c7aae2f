"""Each baseline method reaches its neuron-sparsity target in the harness (tiny runs)."""

import json

import pytest

from demp.experiments.cli.main import main

BASE = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "64", "--batch-size",
        "32", "--model", "resnet18", "--width", "0.125", "--no-progress",
        "--score-batches", "2"]  # fmt: skip


@pytest.mark.parametrize("method", ["snap", "cropit-s", "earlysnap", "earlycrop-s", "slimming"])
@pytest.mark.parametrize("target", [0.3, 0.7])
def test_method_reaches_its_target(method, target, tmp_path):
    out = tmp_path / method
    args = [*BASE, "--method", method, "--target", str(target), "--steps", "40",
            "--early-deadline", "2", "--out", str(out)]  # fmt: skip
    assert main(["train", *args]) == 0
    s = json.loads((out / "summary.json").read_text())
    groups = 12  # CIFAR ResNet-18: 8 block-inner groups + 4 residual streams
    assert s["units_initial"] == 360
    assert abs(s["units"] - round((1 - target) * 360)) <= groups
    assert s["weight_sparsity"] > 0 and s["train_flops_ratio"] < 1
    if method.startswith("early"):
        assert any("pruned at the end of epoch" in n for n in s["notes"])


@pytest.mark.parametrize("method", ["snap", "earlysnap", "slimming"])
def test_interrupted_baseline_run_resumes_to_the_same_result(method, tmp_path, interrupt_at):
    import torch
    from safetensors.torch import load_file

    args = [*BASE, "--method", method, "--target", "0.5", "--steps", "40",
            "--early-deadline", "3"]  # fmt: skip
    assert main(["train", *args, "--out", str(tmp_path / "straight")]) == 0
    disarm = interrupt_at(21)
    assert main(["train", *args, "--out", str(tmp_path / "cut")]) == 130
    disarm()
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    a, b = (
        load_file(tmp_path / r / "checkpoint" / "model.safetensors") for r in ("straight", "cut")
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("straight", "cut"))
    assert sa["units"] == sb["units"] and sa["notes"] == sb["notes"]
