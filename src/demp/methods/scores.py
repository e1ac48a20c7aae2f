"""Node scores of the pruning-at-initialization baselines (FACTS §2).

- SNAP: ``|sum over batches of dL/dc_j|``.
- CroP-S (GraSP-like): ``|d z / d c_j|`` with ``z = <stopgrad(g_bar), g(c)>``, ``g`` the
  loss gradient with respect to the weights and ``g_bar`` its value at ``c = 1``; i.e. the
  Hessian-gradient product projected on the gates.

Scores are computed in eval mode (BatchNorm running statistics) on a few training batches;
the model's mode is restored and its gradients are left untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..batches import call_model, eval_mode
from ..structure.groups import Structure
from .gates import node_gates

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]


def _cross_entropy(output: Any, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(output, target)


def _summed_gate_grads(
    gates: dict[str, torch.Tensor],
    batches: Iterable[tuple[Any, torch.Tensor]],
    objective: Callable[[Any, torch.Tensor], torch.Tensor],
) -> dict[str, torch.Tensor]:
    """``|sum over batches of d objective(x, y) / d gates|`` per group, on the CPU."""
    names = list(gates)
    total = {n: torch.zeros_like(gates[n]) for n in names}
    for x, y in batches:
        grads = torch.autograd.grad(objective(x, y), [gates[n] for n in names])
        for n, g in zip(names, grads, strict=True):
            total[n] += g.detach()
    return {n: t.abs().cpu() for n, t in total.items()}


def snap_scores(
    model: nn.Module,
    structure: Structure,
    batches: Iterable[tuple[Any, torch.Tensor]],
    loss_fn: LossFn = _cross_entropy,
) -> dict[str, torch.Tensor]:
    """SNAP node scores per group (same order as the group's units)."""
    with eval_mode(model), node_gates(model, structure) as gates:
        return _summed_gate_grads(gates, batches, lambda x, y: loss_fn(call_model(model, x), y))


def crops_scores(
    model: nn.Module,
    structure: Structure,
    batches: Iterable[tuple[Any, torch.Tensor]],
    loss_fn: LossFn = _cross_entropy,
) -> dict[str, torch.Tensor]:
    """CroP-S node scores per group: the Hessian-gradient product projected on the gates."""
    batches = list(batches)
    weights = [p for p in model.parameters() if p.requires_grad]
    with eval_mode(model), node_gates(model, structure) as gates:
        g_bar = [torch.zeros_like(w) for w in weights]
        for x, y in batches:
            grads = torch.autograd.grad(loss_fn(call_model(model, x), y), weights)
            for acc, g in zip(g_bar, grads, strict=True):
                acc += g.detach()

        def z(x: Any, y: torch.Tensor) -> torch.Tensor:
            loss = loss_fn(call_model(model, x), y)
            grads = torch.autograd.grad(loss, weights, create_graph=True)
            return sum((g * gb).sum() for g, gb in zip(grads, g_bar, strict=True))

        return _summed_gate_grads(gates, batches, z)
