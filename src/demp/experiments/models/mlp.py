"""Multi-layer perceptrons (the paper's MNIST MLP is 784-100-300-10)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten, then Linear + activation per hidden width, then a linear classifier.

    Args:
        input_shape: Shape of one example (flattened on entry).
        widths: Hidden widths.
        num_classes: Outputs.
        act: Activation class.
        norm: Put a BatchNorm1d between each hidden Linear and its activation (gives the
            normalization scales that Lasso(gamma) / L2(gamma) regularize).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        widths: Sequence[int] = (100, 300),
        num_classes: int = 10,
        act: type[nn.Module] = nn.ReLU,
        norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = math.prod(input_shape)
        for width in widths:
            layers += [nn.Linear(prev, width), *([nn.BatchNorm1d(width)] if norm else []), act()]
            prev = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch."""
        return self.head(self.body(x))
