"""What the score-and-rank baselines share: the iterative schedule applied to a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any

import torch
from torch import nn

from ..structure import Structure
from ..surgery import remove_units
from .base import MethodContext
from .ranking import global_removal, iterative_targets

Scorer = Callable[[nn.Module, Structure, Any], dict[str, torch.Tensor]]


def target_field() -> Any:
    """The ``target`` option shared by the baselines (neuron sparsity, as in their papers)."""
    return field(default=0.5, metadata={"help": "baselines: target neuron sparsity"})


def check_target(target: float) -> None:
    """A neuron-sparsity target must lie in [0, 1)."""
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target neuron sparsity must be in [0, 1), got {target}")


def prune_iteratively(ctx: MethodContext, scorer: Scorer, target: float, batches: int) -> None:
    """Prune to ``target`` neuron sparsity along the "-it" schedule, rescoring each round.

    Scores are computed on the first ``batches`` of the run's fixed score batches.
    """
    for p_i in iterative_targets(target):
        keep = round((1 - p_i) * ctx.initial_units)
        if ctx.structure.num_units <= keep:
            continue
        scores = scorer(ctx.model, ctx.structure, ctx.score_batches(batches))
        remove_ranked(ctx, global_removal(scores, keep), scores)


def remove_ranked(
    ctx: MethodContext, request: dict[str, torch.Tensor], scores: dict[str, torch.Tensor]
) -> None:
    """Remove the units a ranking chose (bool masks per group) and tell the loop."""
    indices = {n: torch.nonzero(m).reshape(-1) for n, m in request.items() if bool(m.any())}
    if indices:
        remove_units(ctx.model, indices, ctx.optimizer, structure=ctx.structure, scores=scores)
        ctx.structure_changed()
