"""The early-pruning trigger of EarlySNAP / EarlyCroP-S (Rachwan et al.; FACTS §2).

Train dense; at each epoch end compute ``d_t = ||w_t - w_ref|| / ||w_ref||`` and prune once
``|d_t - d_{t-1}| < eps``, or at a hard deadline epoch.

- ``"rachwan"`` (the original rule): ``w_ref`` = the weights after epoch 1,
  ``eps = d_2 * min(1 - p - 0.1, 0.99)`` fixed at epoch 2.
- ``"demp"`` (the DemP authors' variant): ``w_ref = w_0`` (initial weights), ``eps = 1 - p``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

Variant = Literal["rachwan", "demp"]


def flat_weights(model: nn.Module) -> torch.Tensor:
    """All trainable parameters as one detached CPU vector."""
    return torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters() if p.requires_grad])


@dataclass
class EarlyTrigger:
    """Decides, epoch by epoch, when to prune.

    Args:
        target: Target neuron sparsity ``p``.
        variant: ``"rachwan"`` or ``"demp"``.
        deadline: Prune at the end of this epoch at the latest.
    """

    target: float
    variant: Variant = "rachwan"
    deadline: int = 4
    reference: torch.Tensor | None = None
    distances: list[float] = field(default_factory=list)
    eps: float | None = None

    def start(self, model: nn.Module) -> None:
        """Record ``w_0`` (used as reference by the ``"demp"`` variant)."""
        if self.variant == "demp":
            self.reference = flat_weights(model)
            self.eps = 1.0 - self.target

    def epoch_end(self, epoch: int, weights: torch.Tensor) -> bool:
        """Feed the weights at the end of epoch ``epoch`` (1-based); True means prune now."""
        if self.reference is None:  # rachwan: the reference is the end of epoch 1
            self.reference = weights.clone()
            return epoch >= self.deadline
        d = float((weights - self.reference).norm() / self.reference.norm().clamp_min(1e-12))
        self.distances.append(d)
        if self.eps is None:  # rachwan: eps fixed from d_2
            self.eps = d * min(1.0 - self.target - 0.1, 0.99)
            return epoch >= self.deadline
        if len(self.distances) >= 2 and abs(self.distances[-1] - self.distances[-2]) < self.eps:
            return True
        return epoch >= self.deadline
