"""DemP+'s fade: when deaths stall at a safe strength, the weakest units are faded out.

What the measurements showed (benchmarks/RESULTS-demp.md): at the strength a model
tolerates (the controller's ceiling) deaths slow down and stop short of high targets: 80-84 %
weight sparsity when told 90 % on the long preset, 76 % on cnn1d / MNIST-1D. Above that
strength an L1 term through Adam shrinks every scale at the learning rate's pace, useful
units included, and the model collapses. Raising the penalty on every unit to kill a few
more is the problem; the fade puts the extra push on the few.

At a check where the controller is at its ceiling and the last interval's deaths closed
less than half the lag to its reference (below the ceiling, raising the strength is the
controller's answer; fading there too cost 1.5 points at 80 % on the long preset, where
deaths were still coming: RESULTS-demp.md), and once at the check where the target is
given up (the deadline: on cnn1d the strength was still below its ceiling there), the
units that tell the next layer the least are chosen: the smallest standard deviation of
the unit's output over the probe relative to its layer's (root mean square; measured by
a death check when the fade is planned; ``fade_score="output"``, the default), or the
smallest normalization scales relative to their layer's (``"scale"``, the first form:
1.9 points worse at 90 % on the long preset over 3 seeds, RESULTS.md). Weakest first, as many as
close the lag without passing it (the exact saving,
:class:`~demp.structure.costs.CostModel`), never below a group's floor. Over the next
``length`` steps, after every optimizer step (and its noise), their scale and
shift are multiplied down linearly to exactly zero and then held there. A unit whose scale
and shift are zero outputs exactly zero after its norm, whatever the statistics: dead, so
the next death check removes it exactly. A unit after an identity residual add made
cuttable (:func:`demp.decouple_residuals`: the shortcut is a
:class:`~demp.ops.select.ChannelSelect`) also gets its skip input: the shortcut's row for
the unit fades with the norm, and ``relu(0 + 0)`` is dead too (without it, two thirds of
the 95 % model's weights sat in the last block's post-add units and the classifier, which
could not be faded; seed 0 of the long preset: 66.9 -> 76.7 %). The change to the
function is spread over the interval and the network trains through it, as in gradual
pruning. Before the first fade each group in turn is zeroed for one death check (then
restored): a group whose zeroed units do not all die (e.g. a squashing activation:
sigmoid(0) = 1/2) is never faded, and neither is a group whose faded units did not all
die. Measured: benchmarks/RESULTS.md and RESULTS-demp.md.

Example:
    >>> fade = Fade(length=57)
    >>> fade.plan(model, structure, costs, floors, budget=1e4, metric="weight", step=400)
    >>> fade.apply(model, structure, completed=401)     # after each optimizer step
    >>> fade.settle(dead.removal_masks())               # at the next check
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..ops.select import ChannelSelect
from ..structure import Structure
from ..structure.costs import CostModel, Metric
from ..surgery import Decision


@dataclass
class Fade:
    """Units chosen to fade to zero, and the groups where fading did not kill.

    Attributes:
        length: Steps over which the chosen units go to zero (at least 1).
        chosen: Group name -> unit indices being faded (empty: no fade running).
        start: Completed steps when they were chosen.
        unfadeable: Groups a fade cannot kill (the probe, or faded units that did not all
            die): never chosen again.
        probed: Whether :meth:`probe` has run.
        per_cost: Rank units by their score over their cost in the target's metric: the
            greedy answer to "lose the least per unit of saving", which spares cheap layers.
    """

    length: int
    per_cost: bool = False
    chosen: dict[str, list[int]] = field(default_factory=dict)
    start: int = 0
    unfadeable: set[str] = field(default_factory=set)
    probed: bool = False

    def __post_init__(self) -> None:
        self.length = max(1, int(self.length))

    def plan(
        self,
        model: nn.Module,
        structure: Structure,
        costs: CostModel,
        floors: Mapping[str, int],
        budget: float,
        metric: Metric,
        step: int,
        spread: Mapping[str, torch.Tensor] | None = None,
        relative: bool = True,
    ) -> int:
        """Choose the weakest units whose removal saves at most ``budget``; return how many.

        The longest prefix of the units ranked weakest first whose exact saving fits the
        budget, then each next unit that still fits (a group whose unit did not fit is
        passed over): the saving falls short of the budget by less than any unit left.

        Args:
            model: The model.
            structure: Its channel groups (current numbering).
            costs: Exact savings of removals.
            floors: Fewest units each group keeps.
            budget: The most the removal of the chosen units may save, in ``metric``.
            metric: ``"weight"``, ``"neuron"`` or ``"flops"``.
            step: Completed steps now (the fade starts after the next one).
            spread: Group name -> each unit's standard deviation over the probe (a death
                check's :meth:`~demp.death.DeadUnits.unit_spreads`, current numbering), or
                any per-unit score: rank by it instead of by the norm scales.
            relative: Rank ``spread`` relative to its group's root mean square (False: as
                it is, e.g. :class:`~demp.algorithm.taylor.TaylorMeter`'s loss estimates).
        """
        self.chosen, self.start = {}, int(step)
        if budget <= 0:
            return 0
        cost = costs.unit_costs(metric) if self.per_cost else None
        ranked = _candidates(model, structure, floors, self.unfadeable, spread, cost, relative)
        if not ranked:
            return 0
        picked = _within(ranked, lambda units: costs.saving(_grouped(units), metric) <= budget)
        chosen = _grouped(picked)
        self.chosen = {name: idx.tolist() for name, idx in chosen.items()}
        return len(picked)

    def probe(
        self, model: nn.Module, structure: Structure, find: Callable[[], Decision]
    ) -> list[str]:
        """Mark the groups where units with zero scale and shift are not all dead unfadeable.

        For each group with a norm in turn (one at a time: a unit's input may be another
        group's unit), every unit is zeroed, ``find`` (a death check) runs, and the values
        are put back exactly (a post-add group's shortcut rows too). A unit whose input
        happens to be dead would pass alone; the whole group does not. Returns the groups
        newly marked.
        """
        failed = []
        for name, group in structure.groups.items():
            units = list(range(group.width))
            rows = faded_rows(model, structure, name, units) if units else []
            if name in self.unfadeable or not rows:
                continue
            with _zeroed(rows):
                dead = find().removal_masks()
            if name not in dead or not bool(dead[name].all()):
                failed.append(name)
        self.unfadeable.update(failed)
        self.probed = True
        return failed

    @torch.no_grad()
    def apply(self, model: nn.Module, structure: Structure, completed: int) -> None:
        """Scale the chosen units' norm scale and shift down after an optimizer step.

        After step ``start + t`` they have ``(length - t) / length`` of their size at the
        plan (up to what the optimizer changed meanwhile); from ``t = length`` on, exactly 0.
        """
        if not self.chosen:
            return
        t = completed - self.start
        if t <= 0:
            return
        left = self.length - t
        factor = left / (left + 1) if left > 0 else 0.0
        for name, units in self.chosen.items():
            for tensor, rows in faded_rows(model, structure, name, units):
                tensor[rows.to(tensor.device)] *= factor

    def settle(self, dead: Mapping[str, torch.Tensor]) -> list[str]:
        """End the fade at a check: groups whose chosen units are not all dead become unfadeable.

        Args:
            dead: Group name -> bool mask of the dead units (the check's, before removal).

        Returns:
            The groups newly marked unfadeable.
        """
        failed = []
        for name, units in self.chosen.items():
            mask = dead.get(name)
            if mask is None or not bool(mask[torch.tensor(units, dtype=torch.long)].all()):
                failed.append(name)
        self.unfadeable.update(failed)
        self.chosen = {}
        return failed

    def state_dict(self) -> dict[str, Any]:
        """The chosen units, the step they were chosen at, the unfadeable groups (JSON)."""
        return {
            "chosen": {n: list(u) for n, u in self.chosen.items()},
            "start": self.start,
            "unfadeable": sorted(self.unfadeable),
            "probed": self.probed,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.chosen = {str(n): [int(i) for i in u] for n, u in state.get("chosen", {}).items()}
        self.start = int(state.get("start", 0))
        self.unfadeable = {str(n) for n in state.get("unfadeable", [])}
        self.probed = bool(state.get("probed", False))


@contextmanager
def _zeroed(rows: list[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Zero the entries ``rows`` (tensor, row indices) inside the block, then put them back."""
    saved = []
    with torch.no_grad():
        for tensor, index in rows:
            at = index.to(tensor.device)
            saved.append((tensor, at, tensor[at].clone()))
            tensor[at] = 0
    try:
        yield
    finally:
        with torch.no_grad():
            for tensor, at, value in reversed(saved):
                tensor[at] = value


def _norm_modules(model: nn.Module, structure: Structure, name: str) -> list[tuple[nn.Module, Any]]:
    """The group's norm slots whose module has a per-channel scale parameter."""
    out = []
    for slot in structure.groups[name].slots:
        if slot.role != "norm":
            continue
        module = model.get_submodule(slot.path)
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and weight.dim() == 1:
            out.append((module, slot))
    return out


def faded_rows(
    model: nn.Module, structure: Structure, name: str, units: list[int]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """What fading ``units`` scales down: (tensor, its rows of the units).

    Each norm's scale and shift and, where the group's units come out of an identity
    residual add with a :class:`~demp.ops.select.ChannelSelect` shortcut, the shortcut's
    selection rows: with both at zero the unit is ``relu(0 + 0)``, dead. Empty if the
    group has no norm.
    """
    picked = torch.tensor(units, dtype=torch.long)
    norms = _norm_modules(model, structure, name)
    out = []
    for module, slot in norms:
        for tensor in (module.weight, getattr(module, "bias", None)):
            if isinstance(tensor, torch.Tensor):
                out.append((tensor, slot.index[picked].reshape(-1)))
    for slot in structure.groups[name].slots if norms else ():
        module = model.get_submodule(slot.path)
        if slot.role == "producer" and isinstance(module, ChannelSelect):
            out.append((module.selection, slot.index[picked].reshape(-1)))
    return out


def _candidates(
    model: nn.Module,
    structure: Structure,
    floors: Mapping[str, int],
    unfadeable: set[str],
    spread: Mapping[str, torch.Tensor] | None = None,
    cost: Mapping[str, float] | None = None,
    relative: bool = True,
) -> list[tuple[str, int]]:
    """(group, unit) above each group's floor, weakest relative score (per cost) first."""
    scored: list[tuple[float, str, int]] = []
    for name, group in structure.groups.items():
        norms = _norm_modules(model, structure, name)
        spare = group.width - max(1, floors.get(name, 1))
        if name in unfadeable or not norms or spare <= 0:
            continue
        if spread is not None and name in spread:
            score = spread[name].double().cpu()
            score = _relative(score) if relative else score
        else:
            score = torch.zeros(group.width, dtype=torch.float64)
            for module, slot in norms:
                size = module.weight.detach().abs().double().cpu()
                score = torch.maximum(score, _relative(size)[slot.index].amax(dim=1))
        order = torch.argsort(score, stable=True)[:spare]
        per = 1.0 / cost[name] if cost is not None and cost.get(name, 0.0) > 0 else 1.0
        scored += [(float(score[i]) * per, name, int(i)) for i in order]
    scored.sort(key=lambda s: (s[0], s[1], s[2]))
    return [(name, unit) for _, name, unit in scored]


def _relative(values: torch.Tensor) -> torch.Tensor:
    """``values`` over their root mean square (finite ones; 1 where all are zero)."""
    finite = values[torch.isfinite(values)]
    rms = float(finite.pow(2).mean().sqrt()) if finite.numel() else 0.0
    return values / (rms or 1.0)


def _within(
    ranked: list[tuple[str, int]], fits: Callable[[list[tuple[str, int]]], bool]
) -> list[tuple[str, int]]:
    """The longest prefix of ``ranked`` that ``fits``, then each next unit that still fits.

    A group whose unit did not fit is passed over (its other units cost as much).
    """
    low, high = 0, len(ranked)  # savings grow with the prefix: bisect its length
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(ranked[:mid]) else (low, mid - 1)
    picked, blocked = ranked[:low], set()
    for unit in ranked[low:]:
        if unit[0] in blocked:
            continue
        if fits([*picked, unit]):
            picked.append(unit)
        else:
            blocked.add(unit[0])
    return picked


def _grouped(units: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
    """Group name -> sorted unit indices."""
    out: dict[str, list[int]] = {}
    for name, unit in units:
        out.setdefault(name, []).append(unit)
    return {n: torch.tensor(sorted(u), dtype=torch.long) for n, u in out.items()}
