"""``set``: Sparse Evolutionary Training (Mocanu et al. 2018), unstructured.

Random sparse masks (``erk`` by default); at each update the smallest-magnitude active
weights are dropped and as many inactive ones grown at random (:mod:`.dynamic_sparse`).
"""

from __future__ import annotations

import torch

from .base import Method, MethodContext
from .dynamic_sparse import DynamicOptions, DynamicSparse
from .registry import register_method


class Set(DynamicSparse):
    """Grow at random."""

    def grow_scores(
        self, ctx: MethodContext, path: str, weight: torch.Tensor, g: torch.Generator
    ) -> torch.Tensor:
        """Uniform random scores."""
        return torch.rand(weight.shape, generator=g)


@register_method(
    "set", options=DynamicOptions, family="unstructured",
    summary="SET: drop the smallest, regrow at random, unstructured masks",
)  # fmt: skip
def set_method(options: DynamicOptions, ctx: MethodContext) -> Method:
    """SET."""
    return Set(options, ctx)
