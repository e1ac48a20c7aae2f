"""DemP+'s removal budget: per-group floors, and never cutting past a target sparsity.

A death check can find more dead units than the target allows (deaths come in waves).
:func:`cap_removal` then removes a subset whose exact saving stays within the budget:
first greedily, most expensive units first, with each unit's marginal cost (an upper
bound of its share of a joint removal, so the greedy set never overshoots), then filling
with the exact count. The units left are dead: they output zero, so keeping them changes
nothing the model computes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..structure import Structure
from ..structure.costs import CostModel, Metric


def group_floors(
    initial_widths: Mapping[str, int], min_units: int, min_fraction: float
) -> dict[str, int]:
    """Fewest units each group may keep: ``max(min_units, ceil(min_fraction * initial))``."""
    return {
        name: max(min_units, math.ceil(min_fraction * width - 1e-9))
        for name, width in initial_widths.items()
    }


def largest_removal(
    structure: Structure, floors: Mapping[str, int], round_to: int | None
) -> dict[str, torch.Tensor]:
    """Every unit above each group's floor (rounded up to ``round_to``): the most that can go."""
    removed = {}
    for name, group in structure.groups.items():
        keep = max(1, floors.get(name, 1))
        if round_to:
            keep = -(-keep // round_to) * round_to
        removed[name] = torch.arange(min(keep, group.width), group.width)
    return removed


def cap_removal(
    costs: CostModel,
    removed: Mapping[str, torch.Tensor],
    budget: float,
    metric: Metric,
    chunk: int | None = None,
) -> dict[str, torch.Tensor]:
    """Return the part of ``removed`` whose exact saving in ``metric`` is at most ``budget``.

    Args:
        costs: The model's cost model (its structure is the one ``removed`` refers to).
        removed: Group name -> sorted unit indices the guards allow to remove.
        budget: The most that may be saved.
        metric: ``"weight"``, ``"neuron"`` or ``"flops"``.
        chunk: Units go ``chunk`` at a time within a group (``round_to``); the first chunk
            also takes the remainder, so widths stay multiples of ``chunk``.
    """
    removed = {n: idx for n, idx in removed.items() if idx.numel()}
    if costs.saving(removed, metric) <= budget:
        return dict(removed)
    unit = costs.unit_costs(metric)
    pieces = _pieces(removed, chunk or 1)
    pieces.sort(key=lambda p: (-unit[p[0]], p[0], p[1]))
    chosen: dict[str, list[torch.Tensor]] = {}
    spent, blocked = 0.0, set()
    for name, _pos, idx in pieces:  # greedy on marginal costs: never above the budget
        cost = unit[name] * idx.numel()
        if name in blocked or spent + cost > budget:
            blocked.add(name)
            continue
        chosen.setdefault(name, []).append(idx)
        spent += cost
    for name, pos, idx in pieces:  # fill with exact counts (a group's pieces in order)
        if pos != len(chosen.get(name, [])):
            continue
        trial = _joined({**chosen, name: [*chosen.get(name, []), idx]})
        if costs.saving(trial, metric) <= budget:
            chosen.setdefault(name, []).append(idx)
    return _joined(chosen)


def _pieces(removed: Mapping[str, torch.Tensor], chunk: int) -> list[tuple[str, int, torch.Tensor]]:
    """Split each group's removal into chunks, the remainder joining the first."""
    out = []
    for name, idx in removed.items():
        first = idx.numel() % chunk or chunk
        parts = [idx[:first], *torch.split(idx[first:], chunk)] if idx.numel() else []
        out += [(name, pos, part) for pos, part in enumerate(parts) if part.numel()]
    return out


def _joined(chosen: Mapping[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {n: torch.cat(parts).sort().values for n, parts in chosen.items() if parts}
