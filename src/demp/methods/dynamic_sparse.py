"""What SET and RigL share: a fixed number of zeros per layer, moved during training.

The masks start random (per-layer counts from ``uniform`` or ``erk``). Every
``update_every`` of the run until ``sparse_end``, each layer drops the
``round(f_t * active)`` smallest-magnitude active weights (``f_t`` the cosine-decayed
``drop_fraction``, :func:`demp.masks.cosine_fraction`) and grows as many among the
inactive ones (the just-dropped included) by the method's grow score; grown weights start
at zero, with zero optimizer state. The random draws come from a generator seeded from the
run's seed and the step, so every rank and every resume draws the same.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch

from ..masks import cosine_fraction, zero_entries
from .base import MethodContext
from .unstructured import (
    MaskedMethod,
    MaskOptions,
    check_fraction,
    distribution_field,
    fraction_field,
)


@dataclass(frozen=True)
class DynamicOptions(MaskOptions):
    """Options of SET and RigL."""

    distribution: str = distribution_field("erk")
    drop_fraction: float = fraction_field(0.3, "set/rigl: fraction moved at the first update")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distribution == "global":
            raise ValueError(
                "set / rigl keep a number of zeros per layer: --distribution must be uniform "
                f"or erk, got {self.distribution!r}"
            )
        check_fraction("drop_fraction", self.drop_fraction)


class DynamicSparse(MaskedMethod, abc.ABC):
    """Drop the smallest active weights and grow as many by :meth:`grow_scores`."""

    def __init__(self, options: DynamicOptions, ctx: MethodContext) -> None:
        super().__init__(options.target, options.distribution, options.dense_first_last, ctx)
        self.options = options
        self.end_step = round(options.sparse_end * ctx.total_steps)
        self.every = max(1, round(options.update_every * ctx.total_steps))
        self.seed = int(torch.randint(0, 2**62, (1,)))  # from the run's seeded generator
        self.moved: list[dict[str, Any]] = []

    def generator(self, step: int) -> torch.Generator:
        """The generator of the draws at ``step`` (the same on every rank and resume)."""
        return torch.Generator().manual_seed((self.seed + 7919 * step) % 2**62)

    def start(self, ctx: MethodContext) -> None:
        """Random masks with each layer's count of zeros."""
        g = self.generator(0)
        scores = {layer.path: torch.rand(layer.shape, generator=g) for layer in self.masks.layers}
        self.masks.mask_lowest(scores, self.counts(self.target), self.zeros_for(self.target))

    def update(self, ctx: MethodContext, step: int) -> bool:
        """Move ``round(f_t * active)`` weights of every layer at each update step."""
        if step % self.every or step >= self.end_step:
            return False
        fraction = cosine_fraction(step, self.end_step, self.options.drop_fraction)
        g = self.generator(step)
        moved = 0
        for layer in self.masks.layers:
            weight = ctx.model.get_submodule(layer.path).weight
            kept = self.masks.kept[layer.path]
            n = round(fraction * int(kept.sum()))
            if n == 0:
                continue
            grow = self.grow_scores(ctx, layer.path, weight, g)
            self.masks.kept[layer.path] = move(kept, weight.detach().abs(), grow, n)
            grown = self.masks.kept[layer.path] & ~kept
            zero_entries(weight, grown, ctx.optimizer)  # grown: zero weight, zero state
            moved += n
        self.moved.append({"step": step, "fraction": fraction, "moved": moved})
        return moved > 0

    @abc.abstractmethod
    def grow_scores(
        self, ctx: MethodContext, path: str, weight: torch.Tensor, g: torch.Generator
    ) -> torch.Tensor:
        """Scores of the inactive weights; the highest are grown (SET: random, RigL: |grad|)."""

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
        """The masks, the seed of the draws and the moves so far."""
        tensors, values = super().state_dict()
        return tensors, {**(values or {}), "seed": self.seed, "moved": self.moved}

    def load_state_dict(
        self, tensors: dict[str, torch.Tensor], values: dict[str, Any] | None, step: int
    ) -> None:
        """Restore the masks, the seed and the moves."""
        super().load_state_dict(tensors, values, step)
        if values:
            self.seed, self.moved = int(values["seed"]), list(values["moved"])

    def summary_fields(self) -> dict[str, Any]:
        """The target, the masked weights per layer, and how many weights each update moved."""
        return {**super().summary_fields(), "mask_updates": self.moved}


def move(kept: torch.Tensor, magnitude: torch.Tensor, grow: torch.Tensor, n: int) -> torch.Tensor:
    """Return the new mask: ``n`` weights dropped, then ``n`` grown.

    The ``n`` smallest-magnitude kept weights are dropped, then the ``n`` highest-scored
    weights among those not kept (the dropped ones included) are grown; ties by position.
    """
    flat_kept = kept.reshape(-1).cpu()
    drop_score = torch.where(flat_kept, magnitude.reshape(-1).double().cpu(), torch.inf)
    after = flat_kept.clone().cpu()
    after[torch.argsort(drop_score, stable=True)[:n]] = False
    grow_score = torch.where(after, -torch.inf, grow.reshape(-1).double().cpu())
    after[torch.argsort(grow_score, descending=True, stable=True)[:n]] = True
    return after.reshape(kept.shape).to(kept.device)
