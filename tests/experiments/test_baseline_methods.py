"""Each baseline reaches its neuron-sparsity target in the harness (tiny runs, two levels).

Resume and reload of every method: tests/experiments/test_methods_contract.py.
"""

import json

import pytest

from demp.experiments.cli.main import main
from demp.methods import method_names

BASE = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "64", "--batch-size",
        "32", "--model", "resnet18", "--width", "0.125", "--no-progress",
        "--score-batches", "2"]  # fmt: skip


@pytest.mark.parametrize(
    "method", [m for m in method_names("structured") if m not in ("dense", "demp")]
)
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
