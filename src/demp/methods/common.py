"""What the score-and-rank baselines share: the iterative schedule applied to a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any

import torch
from torch import nn

from ..accounting import forward_flops
from ..batches import device_dtype, iterate_probe, take, to_device
from ..structure import Structure
from ..structure.costs import METRICS, CostModel, Metric
from ..surgery import remove_units
from .base import MethodContext
from .ranking import budget_removal, global_removal, iterative_targets

Scorer = Callable[[nn.Module, Structure, Any], dict[str, torch.Tensor]]


def target_field() -> Any:
    """The ``target`` option shared by the baselines (neuron sparsity, as in their papers)."""
    return field(
        default=0.5,
        metadata={
            "help": "target sparsity, every method (structured: in --target-metric, neuron by "
            "default for the baselines; unstructured: weight sparsity of the whole model; "
            "demp: its --target-sparsity)"
        },
    )


def target_metric_field() -> Any:
    """The ``target_metric`` option: what ``target`` measures (neuron, weight or flops)."""
    return field(
        default="neuron",
        metadata={
            "help": "what --target (and demp's --target-sparsity) measures",
            "choices": METRICS,
        },
    )


def check_target(target: float, metric: str = "neuron") -> None:
    """A target must lie in [0, 1) and measure one of :data:`METRICS`."""
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target {metric} sparsity must be in [0, 1), got {target}")
    if metric not in METRICS:
        raise ValueError(f"target_metric must be one of {METRICS}, got {metric!r}")


def prune_iteratively(
    ctx: MethodContext, scorer: Scorer, target: float, batches: int, metric: Metric = "neuron"
) -> None:
    """Prune to ``target`` sparsity along the "-it" schedule, rescoring each round.

    ``metric="neuron"`` (the papers') keeps ``(1 - p_i)`` of the initial units; ``"weight"``
    and ``"flops"`` stop the global ranking where the trainable parameters (forward FLOPs)
    have fallen by ``p_i``. Scores are computed on the first ``batches`` of the run's fixed
    score batches.
    """
    sizes = _Sizes(ctx, metric) if metric != "neuron" else None
    for p_i in iterative_targets(target):
        if sizes is None:
            keep = round((1 - p_i) * ctx.initial_units)
            if ctx.structure.num_units <= keep:
                continue
            scores = scorer(ctx.model, ctx.structure, ctx.score_batches(batches))
            remove_ranked(ctx, global_removal(scores, keep), scores)
            continue
        budget = sizes.budget(p_i)
        if budget <= 0:
            continue
        scores = scorer(ctx.model, ctx.structure, ctx.score_batches(batches))
        remove_ranked(ctx, budget_removal(scores, sizes.costs(), metric, budget), scores)


def prune_once(
    ctx: MethodContext, scores: dict[str, torch.Tensor], target: float, metric: Metric
) -> None:
    """Remove the worst-scored units down to ``target`` sparsity in ``metric``, at once."""
    if metric == "neuron":
        keep = round((1 - target) * ctx.initial_units)
        remove_ranked(ctx, global_removal(scores, keep), scores)
        return
    sizes = _Sizes(ctx, metric)  # the model is still whole here: its size now is the initial
    budget = sizes.budget(target)
    if budget > 0:
        remove_ranked(ctx, budget_removal(scores, sizes.costs(), metric, budget), scores)


def remove_ranked(
    ctx: MethodContext, request: dict[str, torch.Tensor], scores: dict[str, torch.Tensor]
) -> None:
    """Remove the units a ranking chose (bool masks per group) and tell the loop."""
    indices = {n: torch.nonzero(m).reshape(-1) for n, m in request.items() if bool(m.any())}
    if indices:
        remove_units(ctx.model, indices, ctx.optimizer, structure=ctx.structure, scores=scores)
        ctx.structure_changed()


class _Sizes:
    """The model's size in a metric now and before pruning, for budgeted rankings."""

    def __init__(self, ctx: MethodContext, metric: Metric) -> None:
        device, dtype = device_dtype(ctx.model)
        self.ctx, self.metric = ctx, metric
        self.example = to_device(take(next(iter(iterate_probe(ctx.probe, 1))), 1), device, dtype)
        self.initial = self.now()

    def now(self) -> float:
        if self.metric == "flops":
            return forward_flops(self.ctx.model, self.example)
        return float(sum(p.numel() for p in self.ctx.model.parameters() if p.requires_grad))

    def costs(self) -> CostModel:
        assert self.ctx.structure is not None
        return CostModel.measure(self.ctx.model, self.ctx.structure, self.example)

    def budget(self, sparsity: float) -> float:
        """What must still be saved to reach ``sparsity``."""
        return self.now() - (1.0 - sparsity) * self.initial
