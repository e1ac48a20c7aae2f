"""Global ranking of units by score, and the iterative ("-it") sparsity schedule (FACTS §2).

Targets are NEURON sparsity (fraction of the monitored units removed), as in the papers;
the weight sparsity reached is reported, not targeted.
"""

from __future__ import annotations

import torch

from ..errors import DempError


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
