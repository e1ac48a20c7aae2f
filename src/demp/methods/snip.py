"""``snip``: connection sensitivity at initialization (Lee et al. 2019), unstructured, one shot.

Before the first step, each maskable weight is scored by ``|dL/dw * w|`` (the gradient of
the mean cross-entropy over ``score_batches`` fixed training batches) and the lowest are
masked, globally (the paper's) or per layer (``uniform`` / ``erk``); the masks then stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .base import Method, MethodContext
from .common import check_target, target_field
from .registry import register_method
from .unstructured import MaskedMethod, dense_first_last_field, distribution_field


@dataclass(frozen=True)
class SnipOptions:
    """Options of SNIP."""

    target: float = target_field()
    distribution: str = distribution_field("global")
    dense_first_last: bool = dense_first_last_field()
    score_batches: int = field(
        default=10, metadata={"help": "baselines: training batches for SNAP/CroP-S/SNIP scores"}
    )

    def __post_init__(self) -> None:
        check_target(self.target, "weight")
        if self.score_batches < 1:
            raise ValueError(f"score_batches must be >= 1, got {self.score_batches}")


def snip_scores(
    model: nn.Module, paths: list[str], batches: list[tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Return ``|g * w|`` per weight of the layers at ``paths``.

    ``g`` is the gradient of the batches' mean loss, in training mode; the model's
    parameters, gradients and buffers are left as they were.
    """
    weights = [model.get_submodule(p).weight for p in paths]
    was, buffers = model.training, {n: b.clone() for n, b in model.named_buffers()}
    model.train()
    try:
        grads = [torch.zeros_like(w) for w in weights]
        for x, y in batches:
            loss = nn.functional.cross_entropy(model(x), y) / len(batches)
            for acc, g in zip(grads, torch.autograd.grad(loss, weights), strict=True):
                acc += g
    finally:
        model.train(was)
        with torch.no_grad():  # the batch-norm statistics the scoring passes moved
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
    return {p: (g * w.detach()).abs() for p, g, w in zip(paths, grads, weights, strict=True)}


class Snip(MaskedMethod):
    """Mask the least sensitive connections once, before training."""

    def __init__(self, options: SnipOptions, ctx: MethodContext) -> None:
        super().__init__(options.target, options.distribution, options.dense_first_last, ctx)
        self.batches = options.score_batches

    def start(self, ctx: MethodContext) -> None:
        """Score at initialization and mask."""
        paths = [layer.path for layer in self.masks.layers]
        scores = snip_scores(ctx.model, paths, ctx.score_batches(self.batches))
        self.masks.mask_lowest(scores, self.counts(self.target), self.zeros_for(self.target))


@register_method(
    "snip", options=SnipOptions, family="unstructured",
    summary="SNIP: connection sensitivity at init, unstructured masks",
)  # fmt: skip
def snip(options: SnipOptions, ctx: MethodContext) -> Method:
    """SNIP."""
    return Snip(options, ctx)
