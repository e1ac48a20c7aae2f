"""SNAP and CroPit-S: score the units at initialization, prune iteratively, then train.

The "-it" schedule rescoring on the shrunken net at every round (FACTS §2); targets are
neuron sparsity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Method, MethodContext
from .common import Scorer, check_target, prune_iteratively, target_field, target_metric_field
from .registry import register_method
from .scores import crops_scores, snap_scores


@dataclass(frozen=True)
class AtInitOptions:
    """Options of the pruning-at-initialization baselines."""

    target: float = target_field()
    target_metric: str = target_metric_field()
    score_batches: int = field(
        default=10, metadata={"help": "baselines: training batches for SNAP/CroP-S scores"}
    )

    def __post_init__(self) -> None:
        check_target(self.target, self.target_metric)
        if self.score_batches < 1:
            raise ValueError(f"score_batches must be >= 1, got {self.score_batches}")


class AtInit(Method):
    """Prune once, before the first step, with a node scorer."""

    def __init__(self, options: AtInitOptions, scorer: Scorer) -> None:
        self.options, self.scorer = options, scorer

    def before_training(self, ctx: MethodContext) -> None:
        """Prune before training."""
        o = self.options
        prune_iteratively(ctx, self.scorer, o.target, o.score_batches, o.target_metric)  # type: ignore[arg-type]

    def summary_fields(self) -> dict[str, float]:
        """The target sparsity."""
        return {"target": self.options.target}


@register_method("snap", options=AtInitOptions, summary="SNAP: node saliency at init, iterative")
def snap(options: AtInitOptions, ctx: MethodContext) -> Method:
    """SNAP (FACTS §2)."""
    return AtInit(options, snap_scores)


@register_method("cropit-s", options=AtInitOptions, summary="CroPit-S: Hessian-gradient at init")
def cropit_s(options: AtInitOptions, ctx: MethodContext) -> Method:
    """CroPit-S (FACTS §2)."""
    return AtInit(options, crops_scores)
