"""benchmarks/demp_ablation.py: the variants' configs, the always-on count, the table."""

import dataclasses

import torch
from bench_scripts import load_benchmark

import demp
from demp.experiments.cli.main import main


def test_every_variant_builds_a_valid_config_on_the_long_base(monkeypatch):
    script = load_benchmark("demp_ablation", monkeypatch)
    for variant in script.VARIANTS:
        for mode in script.MODES:
            config = script.config_of(variant, mode, 2)
            assert config.optimizer == "adamw" and config.seed == 2 and config.method == "demp"
            assert (config.demp.target_sparsity == 0.8) == (mode == "target")
    prox = script.config_of("push-batch-prox", "target", 0).demp
    assert prox.reg_update == "proximal" and prox.reg_strength == 0.3
    assert prox.target_max_scale == 6.0
    paper = demp.DemPConfig(reg_strength=0.1, variant="paper")
    assert script.config_of("paper", "fixed", 0).demp == paper
    assert script.config_of("plus", "target", 0).demp.resolved_variant == "plus"


def test_plus_in_target_mode_is_demp_plus_as_it_ships(monkeypatch):
    script = load_benchmark("demp_ablation", monkeypatch)
    shipped = demp.DemPConfig(target_sparsity=0.8, target_metric="weight")  # variant "auto"
    plus = script.config_of("plus", "target", 0).demp
    assert dataclasses.replace(plus, variant="auto") == shipped
    assert shipped.target_max_scale == 3.0 and shipped.reg_strength == 5e-2
    no_push = script.config_of("plus-no-push", "target", 0).demp
    assert dataclasses.replace(no_push, variant="auto") == dataclasses.replace(
        shipped, shift_push=0.0
    )
    assert script.config_of("plus-probe-1536", "target", 0).probe_size == 1536
    first = script.config_of("push-batch", "target", 0).demp  # the first round's controller
    assert first.reg_strength == 5e-2 and first.target_max_scale == 6.0


def test_always_on_units_are_counted_and_the_table_is_written(tmp_path, monkeypatch):
    script = load_benchmark("demp_ablation", monkeypatch)
    runs = tmp_path / "runs"
    run = runs / "tiny-target-s0"
    args = ["train", "--dataset", "synthetic", "--train-size", "128", "--test-size", "64",
            "--batch-size", "32", "--model", "resnet18", "--width", "0.125", "--steps", "8",
            "--method", "demp", "--death-stats", "batch", "--prune-every", "4",
            "--no-progress", "--out", str(run)]  # fmt: skip
    assert main(args) == 0
    import speed  # benchmarks/speed.py, on the path now

    config, _, shape, k = speed.final_fractions(run)
    x = torch.randn(64, *shape)
    model, structure = speed.rebuild(config, config.width, shape, k, x[:2])
    demp.load_checkpoint(run / "checkpoint", model)
    on, live = script.always_on(model, structure, x)
    name = next(n for n in structure.groups if n.endswith("conv1") and "layers" in n)
    (norm,) = [s for s in structure.groups[name].slots if s.role == "norm"]
    bn = model.get_submodule(norm.path)
    with torch.no_grad():  # unit 0: relu(0 * z + 1) = 1 everywhere (always on)
        bn.weight[norm.index[0]], bn.bias[norm.index[0]] = 0.0, 1.0
    on2, live2 = script.always_on(model, structure, x)
    assert on2 >= on + 1 and live2 >= 1
    md = tmp_path / "out" / "ablation.md"
    text = script.main(["table", str(runs), "--md", str(md)]) or md.read_text()
    assert "| tiny-target | 1 |" in text and md.with_suffix(".json").exists()
