"""The shift push: turn units the penalty has shrunk into dead units, not linear ones.

With a BatchNorm before a ReLU a unit computes ``relu(gamma * x_hat + beta)``. The L1 penalty
drives ``gamma`` toward zero, but the unit dies only if ``beta`` is negative: with
``beta > 0`` it becomes positive on every input (its ReLU the identity) and outputs a
near-constant, alive forever (FACTS §10: 43-63 % of DemP's surviving units, 99-100 % in the
collapsed runs). The push adds ``strength * w`` to ``beta``'s gradient for every unit whose
scale is small (``|gamma| < below``) and whose shift is not yet safely negative
(``beta > -(10 |gamma| + 1e-3)``): the optimizer then lowers ``beta`` until the unit is
zero on every input ten standard deviations out, and the death check removes it. ``w`` is
the unit's penalty weight (0 for a group held at its floor); ``strength`` is the scheduled
lambda_t times ``DemPConfig.shift_push``.

Example:
    >>> pairs = shift_pairs(model, regularized)      # (scale, shift) per regularized scale
    >>> add_shift_push(pairs, strength=1e-2, below=1e-3)
"""

from __future__ import annotations

import torch
from torch import nn

from .finite import Gates

MARGIN_SCALE = 10.0  # beta must sit this many |gamma| below zero (x_hat beyond 10 sigma)
MARGIN_FLOOR = 1e-3  # ... and at least this far below
Pairs = list[tuple[nn.Parameter, nn.Parameter | None]]


def shift_pairs(model: nn.Module, scales: list[nn.Parameter]) -> Pairs:
    """Pair each normalization scale with its layer's shift (None where it has none)."""
    wanted = {id(p) for p in scales}
    bias_of: dict[int, nn.Parameter | None] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and id(weight) in wanted:
            bias = getattr(module, "bias", None)
            ok = isinstance(bias, nn.Parameter) and bias.shape == weight.shape
            bias_of[id(weight)] = bias if ok and bias.requires_grad else None
    return [(p, bias_of.get(id(p))) for p in scales]


def push_mask(
    scale: torch.Tensor, shift: torch.Tensor, below: float, relative: float = 0.0
) -> torch.Tensor:
    """Units whose scale is small and whose shift is not yet safely negative.

    Small: ``|gamma| < below``, or ``|gamma| < relative * rms(gamma of the layer)``.
    """
    scale, shift = scale.detach(), shift.detach()
    size = scale.abs()
    small = size < below
    if relative > 0.0:
        small |= size < relative * scale.float().pow(2).mean().sqrt().to(size.dtype)
    return small & (shift > -(MARGIN_SCALE * size + MARGIN_FLOOR))


def add_shift_push(
    pairs: Pairs,
    strength: float,
    below: float,
    weights: list[torch.Tensor | None] | None = None,
    gates: Gates | None = None,
    relative: float = 0.0,
) -> None:
    """Add ``strength * w`` to the shift's gradient of every unit :func:`push_mask` picks.

    Args:
        pairs: (scale, shift) parameters from :func:`shift_pairs`.
        strength: lambda_t times the push factor.
        below: The scale below which a unit is pushed.
        weights: Per-entry penalty weights aligned with ``pairs`` (None: 1).
        gates: The step's verdict on its gradients (:mod:`.finite`): 0 skips the push.
        relative: Also push units below this fraction of their layer's RMS scale.
    """
    if strength == 0.0:
        return
    with torch.no_grad():
        for i, (scale, shift) in enumerate(pairs):
            if shift is None or shift.grad is None:
                continue
            mask = push_mask(scale, shift, below, relative)
            term = mask.to(shift.dtype) * strength
            if weights is not None and weights[i] is not None:
                term = term * weights[i].to(shift.dtype)
            if gates is not None:
                term = term * gates[shift.grad.device].to(shift.dtype)
            shift.grad.add_(term)
