"""Benchmark presets: the base run, DemP strengths, baseline targets, seeds.

- ``quick``: synthetic data, a tiny ResNet, one seed; a smoke test (well under 3 minutes).
- ``cpu``: Fashion-MNIST (20k), CIFAR-style ResNet-18 at width 16, Adam lr 5e-3 with cosine
  decay, 1000 steps, 2 seeds; DemP lambdas and baseline neuron-sparsity targets chosen to
  land near 50/70/80/90 % weight sparsity (FACTS §6 calibration). 50 runs, about 2 hours
  on 2 CPU cores.
- ``long``: the regime that separates the methods (benchmarks/RESULTS.md): Fashion-MNIST
  (5k training images, the full 10k test set), CIFAR-style ResNet-18 at width 1/16
  (dense error about 14 %), 30 epochs of AdamW (decoupled weight decay 5e-4, as the
  authors ran it: FACTS §7) lr 5e-3 with x0.2 steps every 31 % of the run, test
  evaluation every 5 epochs. Every method matched at 70 /
  80 / 90 / 95 % weight sparsity (DemP through its target controller with DemP+'s
  defaults, the baselines through ``--target-metric weight``), 3 seeds: 75 runs, two
  single-thread runs side by side (``--jobs 2``).
- ``steps``: the paper's step count at CPU cost (issue #26): 30,000 steps of a 1-D CNN
  (cnn1d, width 1: 13.8k parameters, a step of a few milliseconds) on 16k MNIST-1D
  sequences (240 epochs, about the paper's 250), AdamW lr 5e-3 x0.2 every 30.8 % of the
  run (the paper's shape), weight decay 5e-4; DemP (DemP+'s defaults) against SNAP and
  EarlyCroP-S at 80 and 90 % weight sparsity, 3 seeds: 21 runs.
- ``paper``: the paper's ResNet-18 / CIFAR-10 recipe as the authors ran it (250 epochs,
  batch 128, AdamW lr 5e-3 with decoupled weight decay 5e-4, x0.2 every 77 epochs, death
  checks every 5000 steps on 3 x 512 probe images), for a GPU; needs ``--data-dir`` with
  CIFAR-10.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import DempError
from ...methods import method_names

# every registered structured method other than the dense reference and DemP is a baseline
BASELINE_METHODS = tuple(m for m in method_names("structured") if m not in ("dense", "demp"))
UNSTRUCTURED_METHODS = method_names("unstructured")  # masks: a group a sweep may include
GROUPS = {"unstructured": UNSTRUCTURED_METHODS}


LONG_LEVELS = (0.7, 0.8, 0.9, 0.95)
STEPS_LEVELS = (0.8, 0.9)


@dataclass(frozen=True)
class Preset:
    """A sweep: method x level x seed over one base run.

    Attributes:
        name: The preset's name.
        base: Options of every run (:class:`~demp.experiments.harness.config.TrainConfig`).
        demp_strengths: DemP runs at these ``reg_strength`` values (the plain algorithm).
        targets: The baselines' targets (in ``target_metric``).
        seeds: Training seeds.
        methods: Methods of the sweep.
        demp: Options of DemP's ``DemPConfig`` for every DemP run.
        demp_targets: DemP runs at these target sparsities (DemP+'s controller).
        target_metric: What the targets measure (None: each method's default; the
            baselines' is neuron sparsity).
    """

    name: str
    base: dict[str, Any]
    demp_strengths: tuple[float, ...]
    targets: tuple[float, ...]
    seeds: tuple[int, ...]
    methods: tuple[str, ...] = ("dense", "demp", *BASELINE_METHODS)
    demp: dict[str, Any] = field(default_factory=dict)
    demp_targets: tuple[float, ...] = ()
    target_metric: str | None = None

    def __post_init__(self) -> None:
        both = set(self.demp_strengths) & set(self.demp_targets)
        if both:
            raise DempError(f"preset {self.name}: DemP strengths and targets share {both}")

    def runs(self, include: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
        """(run name, option dict) for every run of the sweep, dense first.

        Args:
            include: Groups of :data:`GROUPS` added to the preset's methods, at its targets
                (``"unstructured"``: the masks, whose targets are weight sparsities).

        Raises:
            DempError: An unknown group.
        """
        unknown = set(include) - set(GROUPS)
        if unknown:
            raise DempError(f"unknown group(s) {sorted(unknown)}; choose from {sorted(GROUPS)}")
        methods = [*self.methods, *(m for g in include for m in GROUPS[g])]
        out = []
        for seed in self.seeds:
            for method in methods:
                if method == "dense":
                    out.append((f"dense-s{seed}", self._options("dense", seed)))
                elif method == "demp":
                    out += self._demp_runs(seed)
                else:
                    for target in self.targets:
                        opts = {**self._options(method, seed), "target": target}
                        if self.target_metric is not None:
                            opts["target_metric"] = self.target_metric
                        out.append((f"{method}-{target:g}-s{seed}", opts))
        return out

    def _demp_runs(self, seed: int) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for lam in self.demp_strengths:
            opts = self._options("demp", seed)
            opts["demp"] = {**opts["demp"], "reg_strength": lam}
            out.append((f"demp-{lam:g}-s{seed}", opts))
        for target in self.demp_targets:
            opts = self._options("demp", seed)
            metric = {"target_metric": self.target_metric} if self.target_metric else {}
            opts["demp"] = {**opts["demp"], "target_sparsity": target, **metric}
            out.append((f"demp-{target:g}-s{seed}", opts))
        return out

    def _options(self, method: str, seed: int) -> dict[str, Any]:
        return {**self.base, "method": method, "seed": seed, "demp": dict(self.demp)}


PRESETS = {
    "quick": Preset(
        "quick",
        base={
            "dataset": "synthetic", "train_size": 512, "test_size": 256, "model": "resnet18",
            "width": 0.125, "optimizer": "adam", "lr": 1e-2, "lr_schedule": "cosine",
            "steps": 64, "batch_size": 64, "score_batches": 2, "early_deadline": 2,
        },
        demp_strengths=(0.05,), targets=(0.5,), seeds=(0,), demp={"prune_every": 8},
    ),
    "cpu": Preset(
        "cpu",
        base={
            "dataset": "fashion-mnist", "train_size": 20000, "model": "resnet18", "width": 0.25,
            "optimizer": "adam", "lr": 5e-3, "lr_schedule": "cosine", "steps": 1000,
            "batch_size": 128, "early_deadline": 4,
        },
        demp_strengths=(1.5e-3, 3e-3, 1e-2, 3e-2), targets=(0.3, 0.45, 0.55, 0.68),
        seeds=(0, 1), demp={"prune_every": 100},
    ),
    "long": Preset(
        "long",
        base={
            "dataset": "fashion-mnist", "train_size": 5000, "model": "resnet18",
            "width": 0.0625, "optimizer": "adamw", "lr": 5e-3, "lr_schedule": "step",
            "lr_decay_factor": 0.2, "lr_decay_every": 0.31, "weight_decay": 5e-4,
            "epochs": 30, "batch_size": 128, "eval_every": 5,
        },
        demp_strengths=(), targets=LONG_LEVELS, seeds=(0, 1, 2), demp_targets=LONG_LEVELS,
        target_metric="weight",  # DemP: DemP+'s defaults (benchmarks/RESULTS-demp.md)
    ),
    "steps": Preset(
        "steps",
        base={
            "dataset": "mnist1d", "train_size": 16000, "test_size": 4000, "model": "cnn1d",
            "width": 1.0, "optimizer": "adamw", "lr": 5e-3, "lr_schedule": "step",
            "lr_decay_factor": 0.2, "lr_decay_every": 0.308, "weight_decay": 5e-4,
            "steps": 30000, "batch_size": 128, "eval_every": 40, "log_every": 250,
        },
        demp_strengths=(), targets=STEPS_LEVELS, seeds=(0, 1, 2), demp_targets=STEPS_LEVELS,
        methods=("dense", "demp", "snap", "earlycrop-s"), target_metric="weight",
    ),
    "paper": Preset(
        "paper",
        base={
            "dataset": "cifar10", "model": "resnet18", "width": 1.0, "optimizer": "adamw",
            "lr": 5e-3, "lr_schedule": "step", "lr_decay_factor": 0.2, "lr_decay_every": 0.308,
            "weight_decay": 5e-4, "epochs": 250, "batch_size": 128, "early_deadline": 20,
        },
        demp_strengths=(1e-4, 3e-4, 1e-3, 3e-3), targets=(0.3, 0.45, 0.55, 0.68),
        seeds=(0, 1, 2), demp={"prune_every": 5000, "probe_size": 1536},
    ),
}  # fmt: skip


def get_preset(name: str) -> Preset:
    """A preset by name, or a clear error."""
    if name not in PRESETS:
        raise DempError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
