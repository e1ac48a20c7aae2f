"""Counting what a model costs: forward FLOPs per example and trainable parameters."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .batches import Batch, batch_size, call_model, eval_mode


def forward_flops(model: nn.Module, example: Batch) -> float:
    """Return the forward FLOPs per example, counted by ``torch.utils.flop_counter``.

    The model runs once in eval mode under ``no_grad`` (its mode is restored). FLOPs are
    those PyTorch's counter attributes to matmuls and convolutions (2 per multiply-add).
    """
    from torch.utils.flop_counter import FlopCounterMode

    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        call_model(model, example)
    return counter.get_total_flops() / batch_size(example)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Count parameter entries (only ``requires_grad`` ones by default)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def describe(model: nn.Module, example: Batch) -> dict[str, Any]:
    """Return trainable parameters and forward FLOPs per example, for reports."""
    return {"params": count_parameters(model), "flops": forward_flops(model, example)}


def count_trainable(model: nn.Module) -> int:
    """Count the trainable (``requires_grad``) parameter entries."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
