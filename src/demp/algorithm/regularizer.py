"""The DemP regularizer, applied as a gradient before the optimizer step.

``reg="l1"`` adds ``lambda_t * sign(p)`` (the gradient of ``lambda * ||p||_1``), ``reg="l2"``
adds ``lambda_t * p`` (the gradient of ``0.5 * lambda * ||p||^2``). Added to ``.grad`` before
``optimizer.step()``, it goes through Adam's preconditioner like a loss term (paper §F.5;
not decoupled weight decay). Targets: the scales of every normalization layer
(``"norm_scale"``, the paper's Lasso(gamma); which layers these are is read from the layer
table, :meth:`demp.ops.rules.LayerRules.scale_types`) or every trainable parameter (``"all"``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..ops.rules import DEFAULT_RULES, LayerRules
from .finite import Gates, gated

RegKind = Literal["l1", "l2", "off"]
RegTarget = Literal["norm_scale", "all"]
RegWeighting = Literal["auto", "uniform", "params", "flops"]
Weights = list[torch.Tensor | None] | None


def regularized_parameters(
    model: nn.Module, target: RegTarget, rules: LayerRules | None = None
) -> list[nn.Parameter]:
    """Return the trainable parameters the regularizer acts on.

    Args:
        model: The model.
        target: ``"all"`` trainable parameters, or the ``"norm_scale"`` weights.
        rules: The layer table whose scale types ``"norm_scale"`` means (default: built-in).
    """
    if target == "all":
        return [p for p in model.parameters() if p.requires_grad]
    norms = (DEFAULT_RULES if rules is None else rules).scale_types()
    params = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, norms) and isinstance(weight, nn.Parameter) and weight.requires_grad:
            params.append(weight)
    return params


def add_penalty_gradient(
    params: list[nn.Parameter],
    kind: RegKind,
    strength: float,
    weights: Weights = None,
    gates: Gates | None = None,
) -> None:
    """Add ``strength * d R / d p`` to each parameter's ``.grad`` (skipping None grads).

    ``weights`` (one tensor per parameter, or None for weight 1) make the penalty
    ``sum w |p|`` (l1) or ``0.5 * sum w p^2`` (l2); ``gates`` (:mod:`.finite`) multiply it
    by the step's verdict on its gradients, on the device.
    """
    if kind == "off" or strength == 0.0:
        return
    chosen = [i for i, p in enumerate(params) if p.grad is not None]
    if not chosen:
        return
    grads = [params[i].grad for i in chosen]
    values = [params[i].detach() for i in chosen]
    terms = list(torch._foreach_sign(values)) if kind == "l1" else list(values)
    if gates is not None:
        terms = gated(terms, gates)
    if weights is not None:
        for k, i in enumerate(chosen):
            if weights[i] is not None:
                terms[k] = terms[k] * weights[i]
    torch._foreach_add_(grads, terms, alpha=strength)  # type: ignore[arg-type]


def penalty(
    params: list[nn.Parameter], kind: RegKind, strength: float, weights: Weights = None
) -> float:
    """Return ``strength * R(params)``: ``sum w |p|`` (l1) or ``0.5 * sum w p^2`` (l2)."""
    if kind == "off" or not params:
        return 0.0
    total = 0.0
    with torch.no_grad():
        for i, p in enumerate(params):
            term = p.abs() if kind == "l1" else 0.5 * p.pow(2)
            w = weights[i] if weights is not None else None
            total += float((term * w).sum() if w is not None else term.sum())
    return strength * total
