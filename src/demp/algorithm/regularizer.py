"""The DemP regularizer, applied as a gradient before the optimizer step.

``reg="l1"`` adds ``lambda_t * sign(p)`` (the gradient of ``lambda * ||p||_1``), ``reg="l2"``
adds ``lambda_t * p`` (the gradient of ``0.5 * lambda * ||p||^2``), ``reg="polarization"``
the gradient of ``lambda * sum_k w_k (t |p_k| - |p_k - mean(p)|)`` over each layer's scales
(Zhuang et al., NeurIPS 2020, with the mean taken per layer: below their layer's mean the
scales are pushed down with ``t + 1``, above it with ``t - 1``, so the penalty selects units
inside a layer instead of shrinking the whole layer). Added to ``.grad`` before
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

RegKind = Literal["l1", "l2", "polarization", "off"]
REG_KINDS: tuple[str, ...] = ("l1", "l2", "polarization", "off")
POLARIZATION_T = 1.2  # Zhuang et al.'s t (> 1: every scale still shrinks)
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
    t: float = POLARIZATION_T,
) -> None:
    """Add ``strength * d R / d p`` to each parameter's ``.grad`` (skipping None grads).

    ``weights`` (one tensor per parameter, or None for weight 1) make the penalty
    ``sum w |p|`` (l1) or ``0.5 * sum w p^2`` (l2); ``gates`` (:mod:`.finite`) multiply it
    by the step's verdict on its gradients, on the device; ``t`` is polarization's.
    """
    if kind == "off" or strength == 0.0:
        return
    chosen = [i for i, p in enumerate(params) if p.grad is not None]
    if not chosen:
        return
    grads = [params[i].grad for i in chosen]
    if kind == "polarization":
        terms = [
            polarization_grad(params[i].detach(), None if weights is None else weights[i], t)
            for i in chosen
        ]
        if gates is not None:
            terms = gated(terms, gates)
        torch._foreach_add_(grads, terms, alpha=strength)  # type: ignore[arg-type]
        return
    values = [params[i].detach() for i in chosen]
    terms = list(torch._foreach_sign(values)) if kind == "l1" else list(values)
    if gates is not None:
        terms = gated(terms, gates)
    if weights is not None:
        for k, i in enumerate(chosen):
            if weights[i] is not None:
                terms[k] = terms[k] * weights[i]
    torch._foreach_add_(grads, terms, alpha=strength)  # type: ignore[arg-type]


def polarization_grad(p: torch.Tensor, w: torch.Tensor | None, t: float) -> torch.Tensor:
    """Gradient of ``sum_k w_k (t |p_k| - |p_k - mean(p)|)`` with respect to ``p``.

    ``d/dp_k = w_k (t sign(p_k) - s_k) + mean_i(w_i s_i)`` with ``s = sign(p - mean(p))``
    (the last term is the mean's own derivative).
    """
    w = torch.ones_like(p) if w is None else w.to(p.dtype)
    s = torch.sign(p - p.mean())
    return w * (t * torch.sign(p) - s) + (w * s).mean()


def polarization_value(p: torch.Tensor, w: torch.Tensor | None, t: float) -> torch.Tensor:
    """``sum_k w_k (t |p_k| - |p_k - mean(p)|)`` (one layer's polarization penalty)."""
    w = torch.ones_like(p) if w is None else w.to(p.dtype)
    return (w * (t * p.abs() - (p - p.mean()).abs())).sum()


def proximal_l1(
    params: list[nn.Parameter],
    thresholds: list[float],
    weights: Weights = None,
    gates: Gates | None = None,
) -> None:
    """Soft-threshold each parameter in place: ``p <- sign(p) max(|p| - tau w, 0)``.

    The proximal step of ``tau * sum w |p|`` (Ye et al., ICLR 2018): applied after the
    optimizer step it is decoupled from Adam's normalization (a scale moves by
    ``lr * lambda_t * w`` a step, not by about ``lr``) and it lands scales on exact zeros.
    ``thresholds`` holds one ``tau`` per parameter (its group's lr times lambda_t).
    """
    with torch.no_grad():
        for i, (p, tau) in enumerate(zip(params, thresholds, strict=True)):
            if tau == 0.0:
                continue
            shrink = torch.full_like(p, tau)
            if weights is not None and weights[i] is not None:
                shrink = shrink * weights[i].to(p.dtype)
            if gates is not None:
                shrink = shrink * gates[p.device].to(p.dtype)
            p.copy_(torch.sign(p) * (p.abs() - shrink).clamp_min(0.0))


def penalty(
    params: list[nn.Parameter],
    kind: RegKind,
    strength: float,
    weights: Weights = None,
    t: float = POLARIZATION_T,
) -> float:
    """Return ``strength * R(params)`` (see the module doc for each ``kind``).

    ``sum w |p|`` (l1), ``0.5 * sum w p^2`` (l2), or polarization's
    ``sum w (t |p| - |p - mean(p)|)`` per layer.
    """
    if kind == "off" or not params:
        return 0.0
    total = 0.0
    with torch.no_grad():
        for i, p in enumerate(params):
            if kind == "polarization":
                total += float(polarization_value(p, None if weights is None else weights[i], t))
                continue
            term = p.abs() if kind == "l1" else 0.5 * p.pow(2)
            w = weights[i] if weights is not None else None
            total += float((term * w).sum() if w is not None else term.sum())
    return strength * total
