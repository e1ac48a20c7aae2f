"""`--compile`: the training forward compiled, recompiled after every cut, timed apart."""

import json

import pytest

from demp.experiments.cli.main import main
from demp.experiments.harness import runner
from demp.integrations.compiled import CompiledModel

BASE = ["train", "--dataset", "synthetic", "--train-size", "256", "--test-size", "64",
        "--batch-size", "32", "--no-progress", "--model", "mlp", "--steps", "40",
        "--method", "demp", "--target-sparsity", "0.5", "--prune-every", "5",
        "--reg-target", "all", "--threads", "1"]  # fmt: skip


class Counting:
    """A torch.compile backend that runs the traced graph eagerly and counts compilations."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def test_compile_recompiles_after_every_cut_and_times_the_compiles_apart(
    tmp_path, monkeypatch, capsys
):
    backend = Counting()

    class Compiled(CompiledModel):  # the harness's handle, with the counting backend
        def __init__(self, module):
            super().__init__(module, backend=backend)

    monkeypatch.setattr(runner, "CompiledModel", Compiled)
    assert main([*BASE, "--out", str(tmp_path / "eager")]) == 0
    assert main([*BASE, "--compile", "--out", str(tmp_path / "compiled")]) == 0
    assert "torch.compile" in capsys.readouterr().out
    eager, compiled = (
        json.loads((tmp_path / name / "summary.json").read_text()) for name in ("eager", "compiled")
    )
    checks = [
        json.loads(line)
        for line in (tmp_path / "compiled" / "metrics.jsonl").read_text().splitlines()
    ]
    cuts = sum(1 for r in checks if r["kind"] == "check" and r.get("removed"))
    assert cuts >= 2 and compiled["compiles"] == 1 + cuts and backend.graphs >= 1 + cuts
    assert compiled["seconds_per_step"]["compile"] > 0  # counted in training, shown apart
    assert eager["seconds_per_step"]["compile"] == 0 and "compiles" not in eager
    per_step = compiled["seconds_per_step"]
    training = sum(v for k, v in per_step.items() if k not in ("eval", "checkpoint"))
    assert compiled["train_seconds"] == pytest.approx(40 * training)
    # the compiled forward computes what the eager one does: the same run
    assert compiled["weight_sparsity"] == eager["weight_sparsity"]
    assert compiled["test_acc"] == pytest.approx(eager["test_acc"], abs=1e-9)


def test_compile_must_be_a_boolean_in_a_config_file(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('compile = "yes"\n')
    assert main([*BASE, "--config", str(config), "--out", str(tmp_path / "x")]) == 2
    assert "compile must be true or false" in capsys.readouterr().err


def test_compile_with_cuts_on_several_cpu_threads_runs(tmp_path, monkeypatch):
    """Once refused (Inductor crashed there); now compiled with CPU_OPTIONS, and it runs."""
    seen = []

    class Compiled(CompiledModel):  # the harness's handle, recording what it compiles with
        def effective_kwargs(self):
            seen.append(super().effective_kwargs())
            return {"backend": Counting()}

    monkeypatch.setattr(runner, "CompiledModel", Compiled)
    args = [*BASE[:-1], "2"]  # --threads 2
    assert main([*args, "--compile", "--out", str(tmp_path / "x")]) == 0
    assert seen and all(k == {"options": {"layout_optimization": False}} for k in seen)
