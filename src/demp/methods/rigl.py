"""``rigl``: Rigging the Lottery (Evci et al. 2020), unstructured.

Random sparse masks (``erk`` by default); at each update the smallest-magnitude active
weights are dropped and as many inactive ones grown where the dense gradient of the
step's batch is largest in magnitude (:mod:`.dynamic_sparse`). The masked weights'
gradients are computed by every backward pass (the forward uses their zeros), so the
dense gradient is the one the optimizer step just used.
"""

from __future__ import annotations

import torch

from ..errors import DempError
from .base import Method, MethodContext
from .dynamic_sparse import DynamicOptions, DynamicSparse
from .registry import register_method


class RigL(DynamicSparse):
    """Grow by the magnitude of the dense gradient."""

    def grow_scores(
        self, ctx: MethodContext, path: str, weight: torch.Tensor, g: torch.Generator
    ) -> torch.Tensor:
        """``|grad|`` of the last step."""
        if weight.grad is None:
            raise DempError(f"rigl: {path}.weight has no gradient after the step to grow by")
        return weight.grad.detach().abs()


@register_method(
    "rigl", options=DynamicOptions, family="unstructured",
    summary="RigL: drop the smallest, regrow by dense gradient, unstructured masks",
)  # fmt: skip
def rigl(options: DynamicOptions, ctx: MethodContext) -> Method:
    """RigL."""
    return RigL(options, ctx)
