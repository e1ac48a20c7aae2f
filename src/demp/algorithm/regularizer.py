"""The DemP regularizer, applied as a gradient before the optimizer step.

``reg="l1"`` adds ``lambda_t * sign(p)`` (the gradient of ``lambda * ||p||_1``), ``reg="l2"``
adds ``lambda_t * p`` (the gradient of ``0.5 * lambda * ||p||^2``). Added to ``.grad`` before
``optimizer.step()``, it goes through Adam's preconditioner like a loss term (paper §F.5;
not decoupled weight decay). Targets: the scales of every normalization layer
(``"norm_scale"``, the paper's Lasso(gamma)) or every trainable parameter (``"all"``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

RegKind = Literal["l1", "l2", "off"]
RegTarget = Literal["norm_scale", "all"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def regularized_parameters(model: nn.Module, target: RegTarget) -> list[nn.Parameter]:
    """Return the trainable parameters the regularizer acts on."""
    if target == "all":
        return [p for p in model.parameters() if p.requires_grad]
    params = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, _NORMS) and isinstance(weight, nn.Parameter) and weight.requires_grad:
            params.append(weight)
    return params


def add_penalty_gradient(params: list[nn.Parameter], kind: RegKind, strength: float) -> None:
    """Add ``strength * d R / d p`` to each parameter's ``.grad`` (skipping None grads)."""
    if kind == "off" or strength == 0.0:
        return
    grads = [p.grad for p in params if p.grad is not None]
    values = [p.detach() for p in params if p.grad is not None]
    if not grads:
        return
    terms = torch._foreach_sign(values) if kind == "l1" else values
    torch._foreach_add_(grads, terms, alpha=strength)


def penalty(params: list[nn.Parameter], kind: RegKind, strength: float) -> float:
    """Return ``strength * R(params)``: ``sum |p|`` (l1) or ``0.5 * sum p^2`` (l2)."""
    if kind == "off" or not params:
        return 0.0
    with torch.no_grad():
        if kind == "l1":
            total = sum(float(p.abs().sum()) for p in params)
        else:
            total = 0.5 * sum(float(p.pow(2).sum()) for p in params)
    return strength * total
