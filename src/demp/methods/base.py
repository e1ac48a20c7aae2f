"""What a training method sees of a run, and the hooks a run calls on it.

A :class:`Method` plugs into any training loop through a few hooks, all no-ops by
default; the loop gives it a :class:`MethodContext` (the model, its optimizer, the channel
groups, the budget and a few callbacks) instead of the loop itself, so a method never
depends on the experiments that run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..structure import Structure

ScoreBatches = Callable[[int], list[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class MethodContext:
    """A run, as a method sees it.

    Attributes:
        model: The model being trained (never a DDP wrapper).
        optimizer: Its optimizer; surgery slices its state.
        total_steps: Optimizer steps of the run.
        steps_per_epoch: Steps per epoch (the early methods count epochs).
        probe: Unaugmented training examples (this rank's share under DDP).
        batch_size: Examples per step (global).
        initial_units: Units of the prunable groups before any removal (targets count
            against it).
        score_batches: ``score_batches(n)`` returns the first ``n`` of the fixed training
            batches that scores are computed on.
        structure_changed: Call after every removal (re-wraps DDP, updates accounting).
        note: Add a line to the run's notes.
        sync: Applied in place to death statistics before a decision (a MAX all-reduce
            under DDP), or None.
        structure: The channel groups a method ranks and cuts; set by the loop for methods
            that do not bring their own (:attr:`Method.structure`).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    total_steps: int
    steps_per_epoch: int
    probe: Any
    batch_size: int
    initial_units: int = 0
    score_batches: ScoreBatches = field(default=lambda _n: [])
    structure_changed: Callable[[], None] = field(default=lambda: None)
    note: Callable[[str], None] = field(default=lambda _text: None)
    sync: Callable[[torch.Tensor], None] | None = None
    structure: Structure | None = None


class Method:
    """A training method's hooks (override what you need).

    Attributes:
        structure: The groups the method prunes when it keeps its own (DemP's pruner
            does); None lets the loop build one and put it in ``ctx.structure``.
        history: Death-check events to log (DemP's ``pruner.history``), or None when the
            loop should count dead units itself.
        pruner: A :class:`~demp.DemonPruner` whose phase timings the loop reports, or None
            (its state travels like any method's, through :meth:`state_dict`).
    """

    structure: Structure | None = None
    history: list[dict[str, Any]] | None = None
    pruner: Any = None

    def before_training(self, ctx: MethodContext) -> None:
        """Called once before the first step of a fresh run."""

    def after_step(self, ctx: MethodContext, step: int) -> None:
        """Called after every optimizer step (``step`` steps done)."""

    def epoch_end(self, ctx: MethodContext, epoch: int, step: int) -> None:
        """Called at the end of every epoch (1-based)."""

    def finish(self, ctx: MethodContext) -> None:
        """Called once after the last step (DemP's last death check)."""

    def penalty(self) -> float:
        """The current regularization term, for logging (0 if none)."""
        return 0.0

    def zero_weights(self) -> int:
        """Weights a mask holds at exactly zero (counted as removed by the weight sparsity)."""
        return 0

    def flops_saved(self) -> float:
        """Forward FLOPs per example a sparse kernel would skip (0 when nothing is masked)."""
        return 0.0

    def summary_fields(self) -> dict[str, Any]:
        """Extra entries of the run summary (e.g. the target)."""
        return {}

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
        """Tensors and JSON-able values to resume with."""
        return {}, None

    def load_state_dict(
        self, tensors: dict[str, torch.Tensor], values: dict[str, Any] | None, step: int
    ) -> None:
        """Restore what :meth:`state_dict` returned (``step``: where the run resumes)."""
