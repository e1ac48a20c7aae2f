"""The unstructured baselines in the harness: each reaches its weight-sparsity target
within one weight per layer, its masked weights are zero in the saved model, and the
summary tells the sparse FLOPs from those dense hardware executes.

Resume (masks and optimizer state bit-exact): tests/experiments/test_methods_contract.py.
"""

import json

import pytest
from safetensors.torch import load_file

from demp.experiments.cli.main import main
from demp.methods import method_names

BASE = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "64", "--batch-size",
        "32", "--model", "resnet18", "--width", "0.125", "--no-progress",
        "--score-batches", "2", "--steps", "40"]  # fmt: skip


@pytest.mark.parametrize("method", method_names("unstructured"))
@pytest.mark.parametrize("target", [0.3, 0.8])
def test_unstructured_method_reaches_its_weight_target(method, target, tmp_path, capsys):
    out = tmp_path / method
    assert main(["train", *BASE, "--method", method, "--target", str(target),
                 "--out", str(out)]) == 0  # fmt: skip
    assert "with sparse kernels (1.000 on dense hardware)" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    layers = s["masked_per_layer"]
    zeros = round(target * s["params_initial"])
    assert s["masked_weights"] == sum(layers.values()) == zeros
    assert abs(s["weight_sparsity"] - target) <= 1 / s["params_initial"]
    assert s["units"] == s["units_initial"]  # nothing removed
    weights = load_file(out / "checkpoint" / "model.safetensors")
    assert sum(int((weights[f"{p}.weight"] == 0).sum()) for p in layers) >= zeros
    assert s["inference_flops_ratio"] < 1 and s["train_flops_ratio"] < 1
    assert s["executed_inference_flops_ratio"] == 1.0
    assert s["executed_train_flops_ratio"] == pytest.approx(1.0)


def test_the_first_and_output_layers_stay_dense_by_default(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *BASE, "--method", "magnitude", "--target", "0.5",
                 "--out", str(out)]) == 0  # fmt: skip
    layers = json.loads((out / "summary.json").read_text())["masked_per_layer"]
    assert "conv1" not in layers and "fc" not in layers and len(layers) == 19


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "set", "--distribution", "global"], "uniform or erk"),
        (["--method", "rigl", "--drop-fraction", "1.5"], "drop_fraction"),
        (["--method", "magnitude", "--target", "0.999"], "can be masked"),
    ],
)
def test_bad_unstructured_options_are_refused_clearly(args, message, tmp_path, capsys):
    assert main(["train", *BASE, *args, "--out", str(tmp_path / "r")]) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r" / "checkpoint").exists()
