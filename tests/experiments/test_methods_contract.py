"""Every registered method keeps the contract of a method (like the models' contract test).

On a tiny ResNet, through ``demp train``: it trains, it reaches its target when it has one
(within one unit per group), the saved model reloads into a freshly built one with the
same outputs, and a run interrupted midway and resumed ends bit-identical to a straight
one. A toy method registered by a test goes through the same checks, and so does
any method a future file registers.
"""

import json
from dataclasses import dataclass, field

import pytest
import torch
from safetensors.torch import load_file

import demp
from demp.experiments.cli.main import build_parser, main
from demp.experiments.data import load_dataset
from demp.experiments.models import build_model
from demp.methods import Method, MethodContext, method_names, register_method, unregistered_after

BASE = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "64", "--batch-size",
        "32", "--model", "resnet18", "--width", "0.125", "--no-progress", "--steps", "40",
        "--score-batches", "2", "--early-deadline", "3", "--target", "0.5",
        "--reg-strength", "0.05", "--prune-every", "8", "--lr", "1e-2"]  # fmt: skip
GROUPS = 12  # CIFAR ResNet-18: 8 block-inner groups + 4 residual streams


def check_contract(method, tmp_path, interrupt_at):
    args = [*BASE, "--method", method]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main(["train", *args, "--out", str(straight)]) == 0
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["method"] == method and summary["steps"] == 40
    if summary["target"] is not None:  # a method that aims at a neuron sparsity reaches it
        expected = round((1 - summary["target"]) * summary["units_initial"])
        assert abs(summary["units"] - expected) <= GROUPS

    # the saved (possibly shrunk) model reloads into a freshly built one, outputs equal
    data = load_dataset("synthetic", None, 256, 64, 0)
    fresh = build_model("resnet18", data.num_classes, data.input_shape, 0.125)
    demp.load_checkpoint(straight / "checkpoint", fresh)
    weights = load_file(straight / "checkpoint" / "model.safetensors")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in weights.items())
    assert sum(p.numel() for p in fresh.parameters()) == summary["params"]

    # interrupted at step 21 and resumed: bit-identical to the straight run
    disarm = interrupt_at(21)
    assert main(["train", *args, "--out", str(cut)]) == 130
    disarm()
    assert main(["train", "--resume", str(cut), "--no-progress"]) == 0
    a, b = (load_file(r / "checkpoint" / "model.safetensors") for r in (straight, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    resumed = json.loads((cut / "summary.json").read_text())
    assert resumed["units"] == summary["units"] and resumed["notes"] == summary["notes"]


@pytest.mark.parametrize("method", method_names())
def test_every_registered_method_keeps_the_contract(method, tmp_path, interrupt_at):
    check_contract(method, tmp_path, interrupt_at)


# ---------------------------------------------------------------- a method in one file
@dataclass(frozen=True)
class ToyOptions:
    """Options of the toy method (``target`` is shared with the baselines)."""

    target: float = 0.5
    toy_step: int = field(default=10, metadata={"help": "toy: prune at this step"})


class RandomUnits(Method):
    """Remove a random ``target`` fraction of the units at ``toy_step``, then train on."""

    def __init__(self, options: ToyOptions) -> None:
        self.options = options
        self.generator = torch.Generator().manual_seed(0)

    def after_step(self, ctx: MethodContext, step: int) -> None:
        if step != self.options.toy_step:
            return
        keep = round((1 - self.options.target) * ctx.initial_units)
        scores = {n: torch.rand(g.width, generator=self.generator)
                  for n, g in ctx.structure.groups.items()}  # fmt: skip
        order = sorted(((float(s), n, j) for n, v in scores.items() for j, s in enumerate(v)),
                       reverse=True)  # fmt: skip
        kept = {(n, j) for _, n, j in order[:keep]}
        removed = {n: [j for j in range(g.width) if (n, j) not in kept][: g.width - 1]
                   for n, g in ctx.structure.groups.items()}  # fmt: skip
        demp.remove_units(ctx.model, removed, ctx.optimizer, structure=ctx.structure)
        ctx.structure_changed()

    def summary_fields(self):
        return {"target": self.options.target}

    def state_dict(self):
        return {}, {"generator": self.generator.get_state().tolist()}

    def load_state_dict(self, tensors, values, step):
        if values:
            self.generator.set_state(torch.tensor(values["generator"], dtype=torch.uint8))


@pytest.fixture
def toy_method():
    with unregistered_after():

        @register_method("toy-random", options=ToyOptions, summary="random units, once")
        def build(options: ToyOptions, ctx: MethodContext) -> Method:
            return RandomUnits(options)

        yield "toy-random"


def test_a_toy_method_registered_in_one_place_is_a_full_method(toy_method, tmp_path, interrupt_at):
    # the CLI's --method choices and flags are read from the registry
    args = build_parser().parse_args(["train", "--method", "toy-random", "--toy-step", "5"])
    assert (args.method, args.toy_step) == ("toy-random", 5)
    check_contract(toy_method, tmp_path, interrupt_at)


def test_the_toy_leaves_no_trace():
    assert "toy-random" not in method_names()
    with pytest.raises(demp.DempError, match="already registered"):
        register_method("snap")(lambda options, ctx: Method())


def test_a_method_option_with_a_bad_value_is_a_clear_error(tmp_path, capsys):
    assert main(["train", *BASE, "--method", "snap", "--target", "1.5",
                 "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    assert "target neuron sparsity must be in [0, 1)" in capsys.readouterr().err


def test_every_file_of_the_methods_package_is_imported_so_it_can_register():
    import pkgutil
    import sys

    import demp.methods

    names = {f"demp.methods.{m.name}" for m in pkgutil.iter_modules(demp.methods.__path__)}
    assert names <= set(sys.modules)
    assert method_names()[:2] == ("dense", "demp")  # the built-ins first, in their order
