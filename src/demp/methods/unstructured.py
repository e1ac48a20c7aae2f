"""What the unstructured baselines share: masks on the weights, set up, held and saved.

Each method (:mod:`.magnitude`, :mod:`.snip`, :mod:`.set`, :mod:`.rigl`) decides which
weights are masked; this base finds the maskable layers, turns the model-wide weight
target into per-layer counts (:mod:`demp.masks.distribution`), re-applies the masks after
every optimizer step (weights and their optimizer state), reports the zeros and the
sparse FLOPs to the run, and saves the masks with the checkpoint. Units are never removed:
dense hardware runs these models at full cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..accounting import count_trainable
from ..batches import take
from ..masks import WeightMasks, layer_counts, maskable_layers
from .base import Method, MethodContext
from .common import check_target, target_field


def distribution_field(default: str) -> Any:
    """The ``distribution`` option: how the zeros are spread over the layers."""
    return field(
        default=default,
        metadata={
            "help": "unstructured: zeros per layer (uniform, erk, or global: one ranking)",
            "choices": ("uniform", "erk", "global"),
        },
    )


def dense_first_last_field() -> Any:
    """The ``dense_first_last`` option (JaxPruner's default: the first and output layers)."""
    return field(
        default=True, metadata={"help": "unstructured: keep the first and output layers dense"}
    )


def fraction_field(default: float, help_text: str) -> Any:
    """A fraction-of-the-run option."""
    return field(default=default, metadata={"help": f"unstructured: {help_text}"})


def check_fraction(name: str, value: float, low: float = 0.0, high: float = 1.0) -> None:
    """A run fraction must lie in ``[low, high]``."""
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


@dataclass(frozen=True)
class MaskOptions:
    """Options every unstructured method shares (each sets its own defaults)."""

    target: float = target_field()
    distribution: str = distribution_field("uniform")
    dense_first_last: bool = dense_first_last_field()
    sparse_end: float = fraction_field(0.75, "end of the cubic schedule / of mask updates")
    update_every: float = fraction_field(0.02, "steps between mask updates (run fraction)")

    def __post_init__(self) -> None:
        check_target(self.target, "weight")
        check_fraction("sparse_end", self.sparse_end)
        check_fraction("update_every", self.update_every, 1e-9)


class MaskedMethod(Method):
    """Hold some weights at zero; subclasses set the masks (:meth:`start`, :meth:`update`).

    Args:
        target: Weight sparsity of the whole model (the fraction of its trainable
            parameters held at zero).
        distribution: ``uniform``, ``erk`` or ``global``.
        dense_first_last: Keep the first and the output layer dense.
        ctx: The run (the model and the probe give the layers and their output sizes).
    """

    def __init__(
        self, target: float, distribution: str, dense_first_last: bool, ctx: MethodContext
    ) -> None:
        self.target, self.distribution = target, distribution
        layers = maskable_layers(ctx.model, take(ctx.probe, 2), dense_first_last)
        self.params = count_trainable(ctx.model)
        self.masks = WeightMasks.dense(ctx.model, layers)
        layer_counts(layers, self.zeros_for(target), distribution)  # refuse a bad target now

    def zeros_for(self, sparsity: float) -> int:
        """The number of masked weights that makes the model ``sparsity`` sparse."""
        return round(sparsity * self.params)

    def counts(self, sparsity: float) -> dict[str, int] | None:
        """Zeros per layer at ``sparsity`` (None: one global ranking)."""
        return layer_counts(self.masks.layers, self.zeros_for(sparsity), self.distribution)

    # ----------------------------------------------------------------- hooks
    def before_training(self, ctx: MethodContext) -> None:
        """Set the first masks, apply them, and tell the run its FLOPs changed."""
        self.start(ctx)
        self._changed(ctx)

    def after_step(self, ctx: MethodContext, step: int) -> None:
        """Update the masks when due, then hold every masked weight (and state) at zero."""
        changed = self.update(ctx, step)
        if changed:
            self.masks.broadcast()
        self.masks.apply(ctx.model, ctx.optimizer)
        if changed:
            ctx.structure_changed()

    def start(self, ctx: MethodContext) -> None:
        """Set the masks before the first step (default: all kept)."""

    def update(self, ctx: MethodContext, step: int) -> bool:
        """Change the masks after ``step`` steps; True if they changed (default: never)."""
        return False

    def _changed(self, ctx: MethodContext) -> None:
        self.masks.broadcast()
        self.masks.apply(ctx.model, ctx.optimizer)
        ctx.structure_changed()

    # ----------------------------------------------------------------- reporting
    def zero_weights(self) -> int:
        """Masked weights (counted as removed in the weight sparsity)."""
        return self.masks.zeros()

    def flops_saved(self) -> float:
        """Forward FLOPs per example a sparse kernel would skip."""
        return self.masks.flops_saved()

    def summary_fields(self) -> dict[str, Any]:
        """The target weight sparsity and the masked weights per layer."""
        return {"target": self.target, "masked_per_layer": self.masks.layer_zeros()}

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
        """The masks."""
        return self.masks.state_dict(), {"zeros": self.masks.zeros()}

    def load_state_dict(
        self, tensors: dict[str, torch.Tensor], values: dict[str, Any] | None, step: int
    ) -> None:
        """Restore the masks."""
        self.masks.load_state_dict(tensors)
