"""Every registered method keeps the contract of a method (like the models' contract test).

On a tiny ResNet, through ``demp train``: it trains, it reaches its target when it has one
(within one unit per group), every cut it makes is exact to its mask (the model's output
after the cut equals its output just before, with the removed units zeroed at their
consumers), the saved model reloads into a freshly built one with the same outputs, and a
run interrupted midway and resumed ends bit-identical to a straight one. A toy method
registered by a test goes through the same checks, and so does any method a future file
registers.
"""

import json
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import torch
from safetensors.torch import load_file

import demp
from demp import surgery
from demp.batches import eval_mode
from demp.experiments.cli.main import build_parser, main
from demp.experiments.data import load_dataset
from demp.experiments.models import build_model
from demp.methods import (
    Method,
    MethodContext,
    get_method,
    method_names,
    register_method,
    unregistered_after,
)
from demp.ops.rules import feature_dim, side_size

BASE = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "64", "--batch-size",
        "32", "--model", "resnet18", "--width", "0.125", "--no-progress", "--steps", "40",
        "--score-batches", "2", "--early-deadline", "3",
        "--reg-strength", "0.05", "--prune-every", "8", "--lr", "1e-2"]  # fmt: skip
# the baselines cut to a neuron target; DemP (which takes --target as its controller's) runs
# on its plain schedule here: a controller cannot be asked to land within 40 steps
TARGET = {"demp": []}
# DemP needs a push to kill units within 40 steps (so that its cuts are checked too)
EXTRA = {"demp": ["--lr", "0.05", "--reg-strength", "0.5"]}
GROUPS = 12  # CIFAR ResNet-18: 8 block-inner groups + 4 residual streams


class CutChecker:
    """Wraps surgery's slicing: each real cut is compared with the masked model before it."""

    def __init__(self, real):
        self.real, self.cuts = real, 0
        self.x = load_dataset("synthetic", None, 256, 64, 0).test_x[:16]

    def __call__(self, model, cuts, optimizer=None, *, trial=False, **kwargs):
        if trial:  # the trial cuts of structure verification check themselves
            return self.real(model, cuts, optimizer, trial=trial, **kwargs)
        with eval_mode(model), torch.no_grad(), zeroed_inputs(model, cuts):
            masked = model(self.x)
        size = sum(p.numel() for p in model.parameters())
        self.real(model, cuts, optimizer, trial=trial, **kwargs)
        with eval_mode(model), torch.no_grad():
            after = model(self.x)
        self.cuts += sum(p.numel() for p in model.parameters()) < size
        scale = max(float(masked.abs().max()), 1.0)
        torch.testing.assert_close(after, masked, rtol=1e-4, atol=1e-5 * scale)


@contextmanager
def zeroed_inputs(model, cuts):
    """Zero, at the input of every consumer, the features a cut removes (forward pre-hooks)."""
    handles = []
    for (path, side), keep in cuts.items():
        if side != "in":
            continue
        module = model.get_submodule(path)
        dim = feature_dim(module)
        gone = torch.ones(side_size(module, "in"), dtype=torch.bool)
        gone[keep] = False
        index = gone.nonzero().reshape(-1)

        def hook(_m, args, dim=dim, index=index):
            return (args[0].index_fill(dim, index, 0.0), *args[1:])

        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def check_contract(method, tmp_path, interrupt_at, monkeypatch):
    target = TARGET.get(method, ["--target", "0.5"])
    args = [*BASE, "--method", method, *target, *EXTRA.get(method, [])]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    checker = CutChecker(surgery.apply_cuts)
    monkeypatch.setattr(surgery, "apply_cuts", checker)
    assert main(["train", *args, "--out", str(straight)]) == 0
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["method"] == method and summary["steps"] == 40
    if get_method(method).family == "unstructured":  # masks: a weight target, no cut
        layers = len(summary["masked_per_layer"])
        assert abs(summary["weight_sparsity"] - 0.5) * summary["params_initial"] <= layers
        assert summary["masked_weights"] > 0 and checker.cuts == 0
        assert summary["inference_flops_ratio"] < 1  # a sparse kernel's count...
        assert summary["executed_inference_flops_ratio"] == 1.0  # ...not what runs
    elif summary["target"] is not None:  # a method that aims at a neuron sparsity reaches it
        expected = round((1 - summary["target"]) * summary["units_initial"])
        assert abs(summary["units"] - expected) <= GROUPS
        assert checker.cuts > 0  # and each of its cuts was checked against its mask
    assert (checker.cuts > 0) == (summary["units"] < summary["units_initial"])
    if method == "demp":
        assert checker.cuts > 0

    # the saved (possibly shrunk) model reloads into a freshly built one, outputs equal
    data = load_dataset("synthetic", None, 256, 64, 0)
    fresh = build_model("resnet18", data.num_classes, data.input_shape, 0.125)
    if method == "demp":  # DemP's runs on the zoo ResNets are per-block (--residual auto)
        demp.decouple_residuals(fresh, data.test_x[:2])
    demp.load_checkpoint(straight / "checkpoint", fresh)
    weights = load_file(straight / "checkpoint" / "model.safetensors")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in weights.items())
    assert (
        sum(p.numel() for p in fresh.parameters()) == summary["params"] + summary["masked_weights"]
    )

    # interrupted at step 21 and resumed: bit-identical to the straight run
    disarm = interrupt_at(21)
    assert main(["train", *args, "--out", str(cut)]) == 130
    disarm()
    assert main(["train", "--resume", str(cut), "--no-progress"]) == 0
    a, b = (load_file(r / "checkpoint" / "model.safetensors") for r in (straight, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if get_method(method).family == "unstructured":  # the masks resume bit-exactly too
        ma, mb = (load_file(r / "checkpoint" / "extra.safetensors") for r in (straight, cut))
        assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    resumed = json.loads((cut / "summary.json").read_text())
    assert resumed["units"] == summary["units"] and resumed["notes"] == summary["notes"]
    # the removal history survives the resume (it lives in the checkpoint, not in a global)
    history = demp.removal_history(straight / "checkpoint")
    assert demp.removal_history(cut / "checkpoint") == history
    assert bool(history) == (summary["units"] < summary["units_initial"])


@pytest.mark.parametrize("method", method_names())
def test_every_registered_method_keeps_the_contract(method, tmp_path, interrupt_at, monkeypatch):
    check_contract(method, tmp_path, interrupt_at, monkeypatch)


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


def test_a_toy_method_registered_in_one_place_is_a_full_method(
    toy_method, tmp_path, interrupt_at, monkeypatch
):
    # the CLI's --method choices and flags are read from the registry
    args = build_parser().parse_args(["train", "--method", "toy-random", "--toy-step", "5"])
    assert (args.method, args.toy_step) == ("toy-random", 5)
    check_contract(toy_method, tmp_path, interrupt_at, monkeypatch)


@dataclass(frozen=True)
class OwnDefaults:
    """A method whose defaults differ from the baselines' for a shared option name."""

    target: float = 0.8
    toy_flag: bool = False
    toy_cap: int | None = None


def test_each_method_applies_its_own_defaults_and_typed_flags():
    from demp.experiments.harness.config import TrainConfig

    with unregistered_after():
        register_method("toy-defaults", options=OwnDefaults)(lambda options, ctx: Method())
        config = TrainConfig.from_dict({"method": "toy-defaults", "steps": 1})
        assert config.method_config() == OwnDefaults(0.8, False, None)
        assert TrainConfig.from_dict({"method": "snap", "steps": 1}).method_config().target == 0.5
        assert config.to_dict()["target"] == 0.8  # config.json holds the method's own values
        args = build_parser().parse_args(
            ["train", "--method", "toy-defaults", "--toy-flag", "false", "--toy-cap", "5"]
        )
        assert (args.toy_flag, args.toy_cap) == (False, 5)
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", "--toy-flag", "maybe"])


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
