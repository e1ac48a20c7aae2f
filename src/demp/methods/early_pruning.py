"""EarlySNAP and EarlyCroP-S: train dense, prune once the weights settle, keep training.

The trigger (:mod:`demp.methods.early`) fires on the weight-distance rule or at a deadline
epoch; then the units are pruned as SNAP / CroPit-S do, on the same total step budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .at_init import AtInitOptions
from .base import Method, MethodContext
from .common import Scorer, prune_iteratively
from .early import EarlyTrigger, flat_weights
from .registry import register_method
from .scores import crops_scores, snap_scores


@dataclass(frozen=True)
class EarlyOptions(AtInitOptions):
    """Options of the early baselines."""

    early_variant: str = field(
        default="rachwan",
        metadata={"help": "early baselines: trigger rule", "choices": ("rachwan", "demp")},
    )
    early_deadline: int | None = field(
        default=None,
        metadata={
            "help": "early baselines: prune at this epoch at the latest (default: 10%% of "
            "the run's epochs, at least 2)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.early_variant not in ("rachwan", "demp"):
            raise ValueError(f"early_variant must be rachwan or demp, got {self.early_variant!r}")
        if self.early_deadline is not None and self.early_deadline < 1:
            raise ValueError(f"early_deadline must be >= 1 epoch, got {self.early_deadline}")


DEADLINE_FRACTION = 0.1


def default_deadline(total_steps: int, steps_per_epoch: int) -> int:
    """The latest epoch to prune at, scaled to the budget: 10 % of the run, at least 2.

    Two epochs are the fewest the weight-distance rule needs (its reference and eps are
    set at epochs 1 and 2); a run shorter than that prunes at its last epoch end.
    """
    epochs = total_steps / max(steps_per_epoch, 1)
    return max(2, round(DEADLINE_FRACTION * epochs))


class Early(Method):
    """Prune once the weight-distance trigger fires."""

    def __init__(self, options: EarlyOptions, scorer: Scorer) -> None:
        self.options, self.scorer = options, scorer
        deadline = options.early_deadline or 1  # set from the budget at the first epoch end
        self.trigger = EarlyTrigger(options.target, options.early_variant, deadline)  # type: ignore[arg-type]
        self.done = False

    def before_training(self, ctx: MethodContext) -> None:
        """Record the initial weights."""
        self.trigger.start(ctx.model)

    def epoch_end(self, ctx: MethodContext, epoch: int, step: int) -> None:
        """Test the trigger; prune when it fires."""
        if self.done:
            return
        self.trigger.deadline = self.options.early_deadline or default_deadline(
            ctx.total_steps, ctx.steps_per_epoch
        )
        if self.trigger.epoch_end(epoch, flat_weights(ctx.model)):
            o = self.options
            prune_iteratively(ctx, self.scorer, o.target, o.score_batches, o.target_metric)  # type: ignore[arg-type]
            ctx.note(f"pruned at the end of epoch {epoch} (step {step})")
            self.done = True

    def summary_fields(self) -> dict[str, float]:
        """The target sparsity."""
        return {"target": self.options.target}

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The trigger's reference weights, distances and threshold, and whether it fired."""
        t = self.trigger
        tensors = {"reference": t.reference} if t.reference is not None else {}
        return tensors, {"done": self.done, "distances": t.distances, "eps": t.eps}

    def load_state_dict(
        self, tensors: dict[str, torch.Tensor], values: dict[str, Any] | None, step: int
    ) -> None:
        """Restore the trigger."""
        values = values or {}
        self.trigger.reference = tensors.get("reference")
        self.trigger.distances = list(values.get("distances", []))
        self.trigger.eps = values.get("eps")
        self.done = bool(values.get("done", False))


@register_method("earlysnap", options=EarlyOptions, summary="EarlySNAP: SNAP once weights settle")
def earlysnap(options: EarlyOptions, ctx: MethodContext) -> Method:
    """EarlySNAP (FACTS §2)."""
    return Early(options, snap_scores)


@register_method("earlycrop-s", options=EarlyOptions, summary="EarlyCroP-S: CroP-S, early")
def earlycrop_s(options: EarlyOptions, ctx: MethodContext) -> Method:
    """EarlyCroP-S (FACTS §2)."""
    return Early(options, crops_scores)
