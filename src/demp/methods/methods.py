"""The structured baselines as harness methods, over the same groups and surgery engine.

- ``snap`` / ``cropit-s``: score at initialization, prune with the iterative schedule and
  rescoring on the shrunken net, then train the small net (FACTS §2).
- ``earlysnap`` / ``earlycrop-s``: train dense until the early trigger (or the deadline),
  prune as above at that point, keep training on the same total step budget.
- ``slimming``: L1 on BatchNorm scales during training, a global ``|gamma|`` threshold at
  ``slim_prune_at`` of the budget, then fine-tuning without the L1 term.

Targets are neuron sparsity. Each method sees the run through a small interface: the
model, optimizer, structure, data and a ``structure_changed()`` callback for accounting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..algorithm.regularizer import add_penalty_gradient
from ..structure.groups import Structure
from ..surgery import remove_units
from .early import EarlyTrigger, flat_weights
from .ranking import global_removal, iterative_targets
from .scores import crops_scores, snap_scores

Scorer = Callable[[nn.Module, Structure, Any], dict[str, torch.Tensor]]
BASELINES = ("snap", "cropit-s", "earlysnap", "earlycrop-s", "slimming")


def prune_iteratively(run: Any, scorer: Scorer, target: float) -> None:
    """Prune to ``target`` neuron sparsity along the "-it" schedule, rescoring each round."""
    for p_i in iterative_targets(target):
        keep = round((1 - p_i) * run.initial["units"])
        if run.structure.num_units <= keep:
            continue
        scores = scorer(run.model, run.structure, run.score_batches())
        _remove(run, global_removal(scores, keep), scores)


def _remove(run: Any, request: dict[str, torch.Tensor], scores: dict[str, torch.Tensor]) -> None:
    indices = {n: torch.nonzero(m).reshape(-1) for n, m in request.items() if bool(m.any())}
    if indices:
        remove_units(run.model, indices, run.opt, structure=run.structure, scores=scores)
        run.structure_changed()


class Baseline:
    """Hooks a baseline into the run loop (all no-ops by default)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.config = run.config

    def before_training(self) -> None:
        """Called once before the first step of a fresh run."""

    def after_step(self) -> None:
        """Called after every optimizer step."""

    def epoch_end(self, epoch: int) -> None:
        """Called at the end of every epoch (1-based)."""

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors and JSON-able values to resume with."""
        return {}, {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class AtInit(Baseline):
    """SNAP / CroPit-S: iterative pruning at initialization."""

    def __init__(self, run: Any, scorer: Scorer) -> None:
        super().__init__(run)
        self.scorer = scorer

    def before_training(self) -> None:
        """Prune before training."""
        prune_iteratively(self.run, self.scorer, self.config.target)


class Early(Baseline):
    """EarlySNAP / EarlyCroP-S: prune once the weight-distance trigger fires."""

    def __init__(self, run: Any, scorer: Scorer) -> None:
        super().__init__(run)
        self.scorer = scorer
        self.trigger = EarlyTrigger(
            self.config.target, self.config.early_variant, self.config.early_deadline
        )
        self.done = False

    def before_training(self) -> None:
        """Record the initial weights."""
        self.trigger.start(self.run.model)

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The trigger's reference weights, distances and threshold, and whether it fired."""
        t = self.trigger
        tensors = {"reference": t.reference} if t.reference is not None else {}
        return tensors, {"done": self.done, "distances": t.distances, "eps": t.eps}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
        """Restore the trigger."""
        self.trigger.reference = tensors.get("reference")
        self.trigger.distances = list(values["distances"])
        self.trigger.eps = values["eps"]
        self.done = bool(values["done"])

    def epoch_end(self, epoch: int) -> None:
        """Test the trigger; prune when it fires."""
        if self.done:
            return
        if self.trigger.epoch_end(epoch, flat_weights(self.run.model)):
            prune_iteratively(self.run, self.scorer, self.config.target)
            self.run.note(f"pruned at the end of epoch {epoch} (step {self.run.step})")
            self.done = True


class Slimming(Baseline):
    """Network Slimming: constant L1 on BN scales, global |gamma| threshold, fine-tune."""

    def __init__(self, run: Any) -> None:
        super().__init__(run)
        self.scales = [
            m.weight
            for m in run.model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
        ]
        self.prune_step = max(1, round(self.config.slim_prune_at * run.total))
        self.handle = run.opt.register_step_pre_hook(self._l1)

    def load_state_dict(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
        """A resumed run past the prune step fine-tunes without the L1 term."""
        if self.run.step >= self.prune_step and self.handle is not None:
            self.handle.remove()
            self.handle = None

    def _l1(self, *_args: Any) -> None:
        add_penalty_gradient(self.scales, "l1", self.config.slim_lambda)

    def after_step(self) -> None:
        """At the prune step: threshold on |gamma|, then fine-tune without L1."""
        if self.handle is None or self.run.step < self.prune_step:
            return
        self.handle.remove()
        self.handle = None
        scores = gamma_scores(self.run.model, self.run.structure)
        keep = round((1 - self.config.target) * self.run.initial["units"])
        _remove(self.run, global_removal(scores, keep), scores)


def gamma_scores(model: nn.Module, structure: Structure) -> dict[str, torch.Tensor]:
    """|gamma| per unit (max over the group's BatchNorms); +inf for groups without one."""
    out = {}
    for name, group in structure.groups.items():
        score = torch.full((group.width,), float("inf"), dtype=torch.float64)
        norms = [s for s in group.slots if s.role == "norm"]
        if norms:
            score = torch.stack(
                [
                    model.get_submodule(s.path).weight.detach().abs().cpu().double()[s.index[:, 0]]
                    for s in norms
                ]
            ).amax(0)
        out[name] = score
    return out


def make_baseline(run: Any) -> Baseline:
    """The baseline object for ``run.config.method``."""
    method = run.config.method
    if method == "snap":
        return AtInit(run, snap_scores)
    if method == "cropit-s":
        return AtInit(run, crops_scores)
    if method == "earlysnap":
        return Early(run, snap_scores)
    if method == "earlycrop-s":
        return Early(run, crops_scores)
    if method == "slimming":
        return Slimming(run)
    raise ValueError(f"not a baseline method: {method!r}")
