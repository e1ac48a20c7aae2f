"""benchmarks/near_constant.py: a unit made constant, and one made dead, are counted."""

import importlib

import torch
from bench_scripts import load_benchmark

import demp
from demp.experiments.cli.main import main


def load_script(monkeypatch):
    return load_benchmark("near_constant", monkeypatch)


def test_a_constant_unit_and_a_dead_unit_are_counted(tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--train-size", "128", "--test-size", "64",
            "--batch-size", "32", "--model", "resnet18", "--width", "0.125", "--steps", "8",
            "--method", "dense", "--no-progress", "--out", str(run)]  # fmt: skip
    assert main(args) == 0
    script = load_script(monkeypatch)
    before = script.main([str(run), "--images", "64"])[0]

    speed = importlib.import_module("speed")  # benchmarks/speed.py, on the path now
    config, _, shape, k = speed.final_fractions(run)
    model, structure = speed.rebuild(config, config.width, shape, k, torch.randn(2, *shape))
    demp.load_checkpoint(run / "checkpoint", model)
    name = next(n for n in structure.groups if n.endswith("conv1") and "layers" in n)
    (norm,) = [s for s in structure.groups[name].slots if s.role == "norm"]
    bn = model.get_submodule(norm.path)
    with torch.no_grad():  # unit 0: relu(0 * z + 1) = 1 on every input; unit 1: relu(-1) = 0
        bn.weight[norm.index[:2]] = 0.0
        bn.bias[norm.index[0]], bn.bias[norm.index[1]] = 1.0, -1.0
    demp.save_checkpoint(run / "checkpoint", model)
    after = script.main([str(run), "--images", "64"])[0]

    # a unit's change can kill or freeze units after it too: at least these two are seen
    assert after["dead"] >= before["dead"] + 1 and after["near"] >= before["near"] + 1
    assert after["weight_sparsity"] == 0.0 and after["if_cut"] > before["if_cut"]


def test_classify_against_closed_forms(monkeypatch):
    script = load_script(monkeypatch)
    steps = torch.arange(100, dtype=torch.float64)
    acts = torch.stack([
        torch.full((100,), 2.0),  # constant: alive, near-constant
        torch.zeros(100),  # dead
        2.0 + 0.001 * (steps % 2),  # sd ~5e-4 = 2.5e-4 x mean: near-constant at rel 1e-2
        2.0 + 0.1 * (steps % 2),  # sd ~0.05 = 2.4e-2 x mean: alive and varying at rel 1e-2
        torch.relu(steps - 50),  # alive, varying
    ], 1)  # fmt: skip
    alive, near = script.classify(acts, 1e-2)
    assert alive.tolist() == [True, False, True, True, True]
    assert near.tolist() == [True, False, True, False, False]
    assert script.classify(acts, 3e-2)[1].tolist() == [True, False, True, True, False]
