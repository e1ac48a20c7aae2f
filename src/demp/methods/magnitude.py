"""``magnitude``: gradual magnitude pruning (Zhu & Gupta 2017), unstructured.

From ``sparse_start`` to ``sparse_end`` (fractions of the run), every ``update_every`` of
the run, the smallest-magnitude weights are masked up to the cubic schedule's sparsity
(:func:`demp.masks.cubic_sparsity`), per layer (``uniform`` / ``erk``) or over all maskable
layers at once (``global``). Masked weights stay masked (their magnitude is zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..masks import at_least, cubic_sparsity
from .base import Method, MethodContext
from .registry import register_method
from .unstructured import MaskedMethod, MaskOptions, check_fraction, fraction_field


@dataclass(frozen=True)
class MagnitudeOptions(MaskOptions):
    """Options of gradual magnitude pruning."""

    sparse_start: float = fraction_field(0.1, "magnitude: start of the cubic schedule (run frac)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fraction("sparse_start", self.sparse_start, 0.0, self.sparse_end)


class Magnitude(MaskedMethod):
    """Mask the smallest weights along the cubic schedule."""

    def __init__(self, options: MagnitudeOptions, ctx: MethodContext) -> None:
        super().__init__(options.target, options.distribution, options.dense_first_last, ctx)
        total = ctx.total_steps
        self.start_step = round(options.sparse_start * total)
        self.end_step = max(self.start_step, round(options.sparse_end * total))
        self.every = max(1, round(options.update_every * total))

    def sparsity_at(self, step: int) -> float:
        """The schedule's weight sparsity after ``step`` steps."""
        return cubic_sparsity(step, self.start_step, self.end_step, self.target)

    def update(self, ctx: MethodContext, step: int) -> bool:
        """Mask up to the schedule's sparsity at every update step of the schedule."""
        due = (step - self.start_step) % self.every == 0 or step == self.end_step
        if not self.start_step <= step <= self.end_step or not due:
            return False
        sparsity = self.sparsity_at(step)
        scores = {}
        for layer in self.masks.layers:
            weight = ctx.model.get_submodule(layer.path).weight.detach().abs()
            kept = self.masks.kept[layer.path]
            scores[layer.path] = torch.where(kept, weight, torch.full_like(weight, -1.0))
        counts = self.counts(sparsity)
        if counts is not None:  # masked weights stay masked: no layer gives a zero back
            counts = at_least(counts, self.masks.layer_zeros())
        self.masks.mask_lowest(scores, counts, self.zeros_for(sparsity))
        return True


@register_method(
    "magnitude", options=MagnitudeOptions, family="unstructured",
    summary="gradual magnitude pruning (Zhu & Gupta), unstructured masks",
)  # fmt: skip
def magnitude(options: MagnitudeOptions, ctx: MethodContext) -> Method:
    """Gradual magnitude pruning."""
    return Magnitude(options, ctx)
