"""Global ranking of units by score, and the iterative ("-it") sparsity schedule (FACTS §2).

Targets are NEURON sparsity (fraction of the monitored units removed) by default, as in
the papers; :func:`budget_removal` instead stops the ranking where a weight or FLOPs
saving is reached, so that every method can be compared at the same weight sparsity.
"""

from __future__ import annotations

import torch

from ..errors import DempError
from ..structure.costs import CostModel, Metric


def iterative_targets(p: float, rounds: int = 6) -> list[float]:
    """The "-it" schedule: ``p_i = p - (p - low) * 0.5**i`` for ``i < rounds``, then ``p``.

    ``low`` is 0.5 (FACTS §2); for ``p <= 0.5`` it is ``min(0.25, p)``, as one version of
    the baselines' code does, so that the schedule still rises towards ``p``.

    Example:
        >>> iterative_targets(0.9)[:3]
        [0.5, 0.7, 0.8]
    """
    if not 0.0 <= p < 1.0:
        raise DempError(f"target neuron sparsity must be in [0, 1), got {p}")
    low = 0.5 if p > 0.5 else min(0.25, p)
    return [p - (p - low) * 0.5**i for i in range(rounds)] + [p]


def global_removal(scores: dict[str, torch.Tensor], keep_total: int) -> dict[str, torch.Tensor]:
    """Choose units to remove: keep the ``keep_total`` best-scored units over all groups.

    A group that would lose every unit keeps its best one (so slightly more may be kept).

    Returns:
        Group name -> bool mask of units to remove.
    """
    names = list(scores)
    flat = torch.cat([scores[n].double() for n in names])
    if keep_total >= len(flat):
        return {n: torch.zeros(len(scores[n]), dtype=torch.bool) for n in names}
    order = torch.argsort(flat, descending=True, stable=True)
    keep = torch.zeros(len(flat), dtype=torch.bool)
    keep[order[: max(keep_total, 0)]] = True
    out, start = {}, 0
    for n in names:
        width = len(scores[n])
        mask = ~keep[start : start + width]
        if bool(mask.all()):
            mask[int(torch.argmax(scores[n]))] = False
        out[n] = mask
        start += width
    return out


def budget_removal(
    scores: dict[str, torch.Tensor], costs: CostModel, metric: Metric, budget: float
) -> dict[str, torch.Tensor]:
    """Remove the worst-scored units until the exact saving in ``metric`` reaches ``budget``.

    The shortest prefix of the global ranking (lowest score first) that saves at least
    ``budget`` (or the whole ranking); each group keeps its best-scored unit.

    Returns:
        Group name -> bool mask of units to remove.
    """
    names = list(scores)
    flat = torch.cat([scores[n].double() for n in names])
    owner = torch.cat([torch.full((len(scores[n]),), i) for i, n in enumerate(names)])
    local = torch.cat([torch.arange(len(scores[n])) for n in names])
    best = {i: int(torch.argmax(scores[n])) for i, n in enumerate(names) if len(scores[n])}
    order = [
        int(j) for j in torch.argsort(flat, stable=True) if best.get(int(owner[j])) != int(local[j])
    ]

    def removal(k: int) -> dict[str, torch.Tensor]:
        masks = {n: torch.zeros(len(scores[n]), dtype=torch.bool) for n in names}
        for j in order[:k]:
            masks[names[int(owner[j])]][int(local[j])] = True
        return masks

    def saving(k: int) -> float:
        chosen = {n: torch.nonzero(m).reshape(-1) for n, m in removal(k).items()}
        return costs.saving(chosen, metric)

    low, high = 0, len(order)  # the shortest prefix whose saving reaches the budget
    while low < high:
        mid = (low + high) // 2
        if saving(mid) >= budget:
            high = mid
        else:
            low = mid + 1
    return removal(low)
