"""What the analyses share: data, one tracked training run, seeds, and the output files.

A run trains a registry model in the experiments' one loop (:func:`..harness.loop.run_loop`,
with a plain step at a constant learning rate) and counts dead units with a
:class:`~demp.tracking.DeathTracker`; the regularizer and the noise of a setup come from a
:class:`~demp.DemonPruner` with a constant schedule and no removal (``dynamic=False``,
never finalized), so they are exactly DemP's.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...algorithm.config import DemPConfig
from ...algorithm.pruner import DemonPruner
from ...schedules import Constant
from ...tracking import DeathTracker
from ..data import DataBundle, DataMissing, load_dataset
from ..harness.loop import Callback, StepResult, run_loop
from ..harness.optim import build_optimizer
from ..harness.rundir import write_json
from ..harness.steps import evaluate, train_step
from ..models import build_model

SIZES = ("tiny", "quick", "full")


@dataclass(frozen=True)
class Setup:
    """One training run of an analysis."""

    model: str = "mlp"
    width: float = 1.0
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    adam_eps: float = 1e-8
    momentum: float = 0.9
    batch_size: int = 128
    steps: int = 500
    seed: int = 0
    reg: str = "off"
    reg_target: str = "all"
    reg_strength: float = 0.0
    noise: str = "off"
    noise_std: float = 0.0
    check_every: int = 50
    criterion: str = "zero"
    eps: float | None = None
    probe_size: int | None = 512

    def replace(self, **changes: Any) -> Setup:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass
class Context:
    """Where an analysis runs: its size, data folder, progress bars, and the data it loaded."""

    size: str
    data_dir: str | None = None
    progress: bool = True
    notes: list[str] = dataclasses.field(default_factory=list)
    _cache: dict[Any, DataBundle] = dataclasses.field(default_factory=dict)

    def data(self, train_size: int | None) -> DataBundle:
        """The images of this size: synthetic (tiny), else MNIST, Fashion-MNIST or MNIST-1D."""
        key = train_size
        if key not in self._cache:
            self._cache[key] = self._load(train_size)
        return self._cache[key]

    def _load(self, train_size: int | None) -> DataBundle:
        if self.size == "tiny":
            return load_dataset("synthetic", None, train_size, 256)
        for name in ("mnist", "fashion-mnist"):
            try:
                bundle = load_dataset(name, self.data_dir, train_size, None)
            except DataMissing:
                continue
            self._note(f"data: {name}, {len(bundle.train_x)} training images")
            return bundle
        self._note("data: MNIST and Fashion-MNIST not found (run scripts/setup-data.sh); MNIST-1D")
        return load_dataset("mnist1d", None, train_size, None)

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def bar(self, total: int, desc: str) -> Any:
        """A progress bar over an analysis's runs."""
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=not self.progress, dynamic_ncols=True)


def make_optimizer(setup: Setup, model: nn.Module) -> torch.optim.Optimizer:
    """The setup's optimizer (the experiments' table: Adam/AdamW with ``adam_eps``, SGD(M))."""
    return build_optimizer(setup.optimizer, model.parameters(), setup.lr,
                           momentum=setup.momentum, eps=setup.adam_eps)  # fmt: skip


def build(setup: Setup, data: DataBundle) -> nn.Module:
    """The setup's model, seeded."""
    torch.manual_seed(setup.seed)
    return build_model(setup.model, data.num_classes, data.input_shape, setup.width,
                       setup.activation)  # fmt: skip


@dataclass
class TrackedRun:
    """The state of one analysis run in the experiments' loop (:mod:`..harness.loop`)."""

    setup: Setup
    data: DataBundle
    model: nn.Module
    optimizer: torch.optim.Optimizer
    total: int
    spe: int
    step: int = 0

    def epoch_batches(self, epoch: int, start: int) -> Any:
        """The shuffled training batches of ``epoch`` from batch ``start`` on."""
        return self.data.batches(self.setup.batch_size, epoch, self.setup.seed, start)


def plain_step(s: TrackedRun, batches: Any) -> StepResult:
    """One optimizer step at the setup's constant learning rate."""
    x, y = next(batches)
    loss, correct = train_step(s.model, s.optimizer, x, y)
    s.step += 1
    return StepResult(loss, correct, len(y))


class Checks(Callback):
    """A death check of every tracker every ``check_every`` steps and at the last step."""

    def __init__(self, trackers: dict[str, DeathTracker], every: int) -> None:
        self.trackers, self.every = trackers, every

    def on_step_end(self, s: TrackedRun, result: StepResult) -> None:
        """Check when due."""
        if s.step % self.every == 0 or s.step == s.total:
            for tracker in self.trackers.values():
                tracker.check(s.step)


def train_tracked(
    setup: Setup, data: DataBundle, extra_probes: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train one setup, counting dead units every ``check_every`` steps.

    Args:
        setup: The run.
        data: Its data; the probe is the first ``probe_size`` training examples (None: all).
        extra_probes: More trackers on other probe sets, by name (their checks run at the
            same steps).

    Returns:
        ``{"steps", "dead", "ratio", "units", "per_group", "overlap", "revivals", "test_acc",
        and per extra probe "dead_<name>"}``.
    """
    model = build(setup, data)
    opt = make_optimizer(setup, model)
    probe = data.train_x if setup.probe_size is None else data.train_x[: setup.probe_size]
    trackers = {"": _tracker(model, probe, setup)}
    for name, extra in (extra_probes or {}).items():
        trackers[name] = _tracker(model, extra, setup)
    pruner = _regularizer(setup, model, opt, probe)
    for tracker in trackers.values():
        tracker.check(0)
    run = TrackedRun(setup, data, model, opt, setup.steps, data.steps_per_epoch(setup.batch_size))
    run_loop(run, [Checks(trackers, setup.check_every)], step_fn=plain_step)
    if pruner is not None:
        pruner.detach()
    return _result(trackers, model, data)


def _tracker(model: nn.Module, probe: Any, setup: Setup) -> DeathTracker:
    return DeathTracker(model, probe, criterion=setup.criterion, eps=setup.eps,  # type: ignore[arg-type]
                        max_examples=None)  # fmt: skip


def _regularizer(
    setup: Setup, model: nn.Module, opt: torch.optim.Optimizer, probe: torch.Tensor
) -> DemonPruner | None:
    if setup.reg == "off" and setup.noise == "off":
        return None
    config = DemPConfig(
        reg=setup.reg, reg_target=setup.reg_target, reg_strength=setup.reg_strength,  # type: ignore[arg-type]
        noise=setup.noise, noise_std=setup.noise_std, schedule=Constant(), dynamic=False,  # type: ignore[arg-type]
        seed=setup.seed,
    )  # fmt: skip
    return DemonPruner(model, opt, probe[:64], setup.steps, config)


def _result(trackers: dict[str, DeathTracker], model: nn.Module, data: DataBundle) -> dict:
    main = trackers[""]
    out: dict[str, Any] = {
        "steps": [r.step for r in main.records],
        "dead": [r.num_dead for r in main.records],
        "ratio": [r.ratio for r in main.records],
        "units": main.records[0].num_units,
        "per_group": main.per_group(),
        "overlap": [o for _, o in main.overlap_with_final()],
        "revivals": main.revivals(),
        "test_acc": evaluate(model, data.test_x, data.test_y, torch.device("cpu"))["test_acc"],
    }
    for name, tracker in trackers.items():
        if name:
            out[f"dead_{name}"] = [r.num_dead for r in tracker.records]
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation of a list of numbers."""
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=False)) if len(values) > 1 else 0.0


def subplots(ncols: int = 1, width: float = 6.0, height: float = 4.0) -> tuple[Any, list[Any]]:
    """A figure with ``ncols`` axes side by side (matplotlib imported on first use)."""
    from ..reports.plots import pyplot

    fig, axes = pyplot().subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def write_result(out: Path, name: str, result: dict[str, Any], figure: Any) -> tuple[Path, Path]:
    """Write ``NAME.json`` and ``NAME.png`` into ``out`` (each atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / f"{name}.json", out / f"{name}.png"
    write_json(json_path, result)
    tmp = png_path.with_name(f".{png_path.name}.tmp")
    figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    os.replace(tmp, png_path)
    return json_path, png_path
