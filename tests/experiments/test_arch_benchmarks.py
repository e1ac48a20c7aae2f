"""benchmarks/retrain_arch.py and step_floor.py: a pruned shape retrained afresh; the floor fit."""

import json

import pytest
import torch
from bench_scripts import load_benchmark
from safetensors.torch import load_file

from demp.errors import CheckpointError
from demp.experiments.cli.main import main
from demp.experiments.data import load_dataset
from demp.experiments.harness import runner
from demp.experiments.harness.config import TrainConfig
from demp.experiments.models import build_model

RUN = ["train", "--dataset", "synthetic", "--train-size", "256", "--test-size", "64",
       "--batch-size", "32", "--no-progress", "--model", "mlp", "--steps", "40",
       "--method", "demp", "--target-sparsity", "0.5", "--prune-every", "5",
       "--reg-target", "all", "--threads", "1"]  # fmt: skip


def test_retrain_keeps_the_pruned_shape_and_starts_from_fresh_weights(tmp_path, monkeypatch):
    script = load_benchmark("retrain_arch", monkeypatch)
    source = tmp_path / "demp"
    assert main([*RUN, "--out", str(source)]) == 0
    pruned = json.loads((source / "summary.json").read_text())
    assert pruned["params"] < pruned["params_initial"]  # the run did cut units

    shaped = runner.per_block_residuals
    summary = script.retrain(source, tmp_path / "retrained", seed=3)
    assert runner.per_block_residuals is shaped  # the harness is left as it was

    assert summary["method"] == "dense" and summary["seed"] == 3
    assert summary["params"] == pruned["params"]  # the same architecture...
    assert summary["params_initial"] == pruned["params"]  # ...from its first step
    before = load_file(str(source / "checkpoint" / "model.safetensors"))
    after = load_file(str(tmp_path / "retrained" / "checkpoint" / "model.safetensors"))
    assert {k: v.shape for k, v in before.items()} == {k: v.shape for k, v in after.items()}


def test_the_fresh_shape_has_the_runs_widths_and_seeded_new_weights(tmp_path, monkeypatch):
    script = load_benchmark("retrain_arch", monkeypatch)
    source = tmp_path / "demp"
    assert main([*RUN, "--out", str(source)]) == 0
    config = TrainConfig.from_dict(json.loads((source / "config.json").read_text()))
    data = load_dataset(config.dataset, config.data_dir, train_size=16, test_size=16)

    def built(seed):
        model = build_model(config.model, data.num_classes, data.input_shape, config.width,
                            config.activation)  # fmt: skip
        runner.per_block_residuals(model, data.train_x[:2], config.residual_mode())
        script.fresh_shape(model, source, seed)
        return model.state_dict()

    saved = load_file(str(source / "checkpoint" / "model.safetensors"))
    fresh, again, other = built(5), built(5), built(6)
    assert {k: v.shape for k, v in fresh.items() if k in saved} == {
        k: v.shape for k, v in saved.items()
    }
    weights = [k for k, v in saved.items() if k.endswith("weight") and v.dim() == 2]
    assert weights
    for k in weights:
        assert not torch.equal(fresh[k], saved[k])  # not the trained weights
        assert torch.equal(fresh[k], again[k])  # the seed decides them
        assert not torch.equal(fresh[k], other[k])


def test_retrain_refuses_a_run_without_a_checkpoint(tmp_path, monkeypatch):
    script = load_benchmark("retrain_arch", monkeypatch)
    source = tmp_path / "demp"
    assert main([*RUN, "--out", str(source)]) == 0
    for path in (source / "checkpoint").iterdir():
        path.unlink()
    shaped = runner.per_block_residuals
    with pytest.raises(CheckpointError, match="checkpoint"):
        script.retrain(source, tmp_path / "retrained", seed=0)
    assert runner.per_block_residuals is shaped


def test_the_floor_fit_recovers_an_exact_line(monkeypatch):
    script = load_benchmark("step_floor", monkeypatch)
    flops = [1.0e9, 2.5e9, 4.0e9, 9.0e9]
    a, b = script.fit(flops, [0.05 + 2e-11 * f for f in flops])
    assert a == pytest.approx(0.05, rel=1e-9) and b == pytest.approx(2e-11, rel=1e-9)
    # noise that sums to zero around the line leaves the least-squares line where it was
    a, b = script.fit(flops + flops, [0.05 + 2e-11 * f + e for f in flops for e in (0.01,)]
                      + [0.05 + 2e-11 * f - 0.01 for f in flops])  # fmt: skip
    assert a == pytest.approx(0.05, rel=1e-9) and b == pytest.approx(2e-11, rel=1e-9)


def test_the_floor_optimizers_are_the_implementations_named(monkeypatch):
    script = load_benchmark("step_floor", monkeypatch)
    model = torch.nn.Linear(3, 2)
    assert script.adamw(model, "loop").defaults["foreach"] is False
    assert script.adamw(model, "foreach").defaults["foreach"] is True


def test_odd_widths_rounds_up_within_the_dense_width(monkeypatch):
    script = load_benchmark("odd_widths", monkeypatch)
    widths, dense = {"a": 29, "b": 125, "c": 8, "d": 3}, {"a": 32, "b": 128, "c": 16, "d": 4}
    assert script.rounded(widths, dense, 8) == {"a": 32, "b": 128, "c": 8, "d": 4}
    assert script.rounded(widths, dense, 16) == {"a": 32, "b": 128, "c": 16, "d": 4}


def test_odd_widths_builds_the_last_checks_widths(tmp_path, monkeypatch):
    script = load_benchmark("odd_widths", monkeypatch)
    source = tmp_path / "demp"
    assert main([*RUN, "--out", str(source)]) == 0
    widths = script.last_widths(source)
    config = TrainConfig.from_dict(json.loads((source / "config.json").read_text()))
    model = script.shaped(config, widths)
    saved = load_file(str(source / "checkpoint" / "model.safetensors"))
    shapes = {k: v.shape for k, v in model.state_dict().items() if k in saved}
    assert shapes == {k: v.shape for k, v in saved.items()}  # the run's final shape
    dense = script.shaped(config, None)
    assert sum(p.numel() for p in dense.parameters()) > sum(p.numel() for p in model.parameters())


def test_odd_widths_times_each_shape_in_both_memory_formats(tmp_path, monkeypatch, capsys):
    script = load_benchmark("odd_widths", monkeypatch)
    source = tmp_path / "demp"
    assert main([*RUN, "--out", str(source)]) == 0
    argv = ["odd_widths.py", str(source), "--round", "8", "--threads", "1", "--steps", "1",
            "--rounds", "1", "--formats", "nchw", "channels-last"]  # fmt: skip
    monkeypatch.setattr("sys.argv", argv)
    script.main()
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line[:2] == "| "]
    rows = {r[0][2:]: r[1:3] for r in rows[1:]}  # shape -> (weights, GFLOPs); no header
    assert len(rows) == 6
    for shape in ("dense", "DemP's widths", "rounded up to 8"):
        assert rows[f"{shape}, channels-last"] == rows[shape]  # the same model, laid out anew


def test_the_original_shape_keeps_each_kept_units_first_weights(tmp_path, monkeypatch):
    script = load_benchmark("retrain_arch", monkeypatch)
    source = tmp_path / "demp"
    assert main([*RUN, "--out", str(source)]) == 0
    config = TrainConfig.from_dict(json.loads((source / "config.json").read_text()))
    torch.manual_seed(config.seed)  # as the harness built the run's model
    data = load_dataset(config.dataset, config.data_dir, config.train_size, config.test_size,
                        config.data_seed)  # fmt: skip
    model = build_model(config.model, data.num_classes, data.input_shape, config.width,
                        config.activation)  # fmt: skip
    runner.per_block_residuals(model, data.train_x[:2], config.residual_mode())
    first = {k: v.clone() for k, v in model.state_dict().items()}
    script.original_shape(model, source, data.train_x[:2])

    saved = load_file(str(source / "checkpoint" / "model.safetensors"))
    now = model.state_dict()
    assert {k: now[k].shape for k in saved} == {k: v.shape for k, v in saved.items()}
    matrices = [k for k, v in first.items() if k.endswith("weight") and v.dim() == 2]
    shrunk = [k for k in matrices if now[k].shape[0] < first[k].shape[0]]
    assert shrunk  # the run cut units
    for name in shrunk:
        # each kept row is one of the first rows (minus any cut inputs), in the first order
        rows = [next(i for i, r in enumerate(first[name]) if _within(row.tolist(), r.tolist()))
                for row in now[name]]  # fmt: skip
        assert rows == sorted(set(rows))


def _within(short: list[float], long: list[float]) -> bool:
    """Whether ``short`` is ``long`` with some entries left out (order kept)."""
    found = 0
    for value in long:
        if found < len(short) and value == short[found]:
            found += 1
    return found == len(short)


def test_targets_reads_the_pruner_state_from_the_checkpoint(tmp_path, monkeypatch):
    script = load_benchmark("targets", monkeypatch)
    source = tmp_path / "demp"
    assert main([*RUN, "--out", str(source)]) == 0
    spec = json.loads((source / "checkpoint" / "spec.json").read_text())
    saved = spec["extra"]["method"]["pruner"]
    assert saved["history"]  # the run's death checks
    assert script.pruner_state(source / "checkpoint") == saved
    row = script.row_of(source, "plain", 0.5, 0, "weight")
    assert row["revived"] == sum(e.get("revived", 0) for e in saved["history"])
    assert row["reached_step"] == saved["steering"]["controller"]["reached_at"]
    assert row["landed"] == json.loads((source / "summary.json").read_text())["weight_sparsity"]


def test_targets_starts_over_a_run_killed_before_its_first_checkpoint(tmp_path, monkeypatch):
    script = load_benchmark("targets", monkeypatch)
    (tmp_path / "runs" / "plain-weight-0.5-s0").mkdir(parents=True)  # killed before a save
    seen = []
    monkeypatch.setattr(script, "run_config", lambda *a: None)
    monkeypatch.setattr(script, "run_training", lambda c, f, resume, progress: seen.append(resume))
    monkeypatch.setattr(script, "row_of", lambda *a: {})
    script.run_one(tmp_path, ("plain", 0.5, 0, "weight"), {})
    assert seen == [False]
