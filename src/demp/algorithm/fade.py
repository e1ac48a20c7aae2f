"""DemP+'s fade: when deaths stall at a safe strength, the weakest units are faded out.

What the measurements showed (benchmarks/RESULTS-demp.md): at the strength a model
tolerates (the controller's ceiling) deaths slow down and stop short of high targets: 80-84 %
weight sparsity when told 90 % on the long preset, 76 % on cnn1d / MNIST-1D. Above that
strength an L1 term through Adam shrinks every scale at the learning rate's pace, useful
units included, and the model collapses. Raising the penalty on every unit to kill a few
more is the problem; the fade puts the extra push on the few.

At a check where the controller is at its ceiling and the last interval's deaths closed
less than half the lag to its reference, the units whose normalization scales are the
smallest relative to their layer's (root mean square; the ones the penalty has made the
least important) are chosen, fewest first, until removing them would close the lag (the
exact saving, :class:`~demp.structure.costs.CostModel`), never below a group's floor. Over
the next ``length`` steps, after every optimizer step (and its noise), their scale and
shift are multiplied down linearly to exactly zero and then held there. A unit whose scale
and shift are zero outputs exactly zero after its norm, whatever the statistics: dead, so
the next death check removes it exactly. The change to the function is spread over the
interval and the network trains through it, as in gradual pruning. A group whose faded
units did not all die (its norm is not their only source) is never faded again.

Example:
    >>> fade = Fade(length=57)
    >>> fade.plan(model, structure, costs, floors, budget=1e4, metric="weight", step=400)
    >>> fade.apply(model, structure, completed=401)     # after each optimizer step
    >>> fade.settle(dead.removal_masks())               # at the next check
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..structure import Structure
from ..structure.costs import CostModel, Metric


@dataclass
class Fade:
    """Units chosen to fade to zero, and the groups where fading did not kill.

    Attributes:
        length: Steps over which the chosen units go to zero (at least 1).
        chosen: Group name -> unit indices being faded (empty: no fade running).
        start: Completed steps when they were chosen.
        unfadeable: Groups whose faded units did not all die: never chosen again.
    """

    length: int
    chosen: dict[str, list[int]] = field(default_factory=dict)
    start: int = 0
    unfadeable: set[str] = field(default_factory=set)

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
    ) -> int:
        """Choose the weakest units whose removal saves at least ``budget``; return how many.

        Args:
            model: The model.
            structure: Its channel groups (current numbering).
            costs: Exact savings of removals.
            floors: Fewest units each group keeps.
            budget: What the removal of the chosen units should save, in ``metric``.
            step: Completed steps now (the fade starts after the next one).
        """
        self.chosen, self.start = {}, int(step)
        if budget <= 0:
            return 0
        ranked = _candidates(model, structure, floors, self.unfadeable)
        if not ranked:
            return 0
        low, high = 1, len(ranked)  # fewest units whose saving reaches the budget
        if costs.saving(_grouped(ranked), metric) > budget:
            while low < high:
                mid = (low + high) // 2
                if costs.saving(_grouped(ranked[:mid]), metric) >= budget:
                    high = mid
                else:
                    low = mid + 1
        else:
            low = len(ranked)
        chosen = _grouped(ranked[:low])
        self.chosen = {name: idx.tolist() for name, idx in chosen.items()}
        return low

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
            for module, rows in _norm_rows(model, structure, name, units):
                for tensor in (module.weight, getattr(module, "bias", None)):
                    if isinstance(tensor, torch.Tensor):
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
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.chosen = {str(n): [int(i) for i in u] for n, u in state.get("chosen", {}).items()}
        self.start = int(state.get("start", 0))
        self.unfadeable = {str(n) for n in state.get("unfadeable", [])}


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


def _norm_rows(
    model: nn.Module, structure: Structure, name: str, units: list[int]
) -> list[tuple[nn.Module, torch.Tensor]]:
    """Each norm module of the group with the channel rows of ``units``."""
    picked = torch.tensor(units, dtype=torch.long)
    return [
        (module, slot.index[picked].reshape(-1))
        for module, slot in _norm_modules(model, structure, name)
    ]


def _candidates(
    model: nn.Module, structure: Structure, floors: Mapping[str, int], unfadeable: set[str]
) -> list[tuple[str, int]]:
    """(group, unit) above each group's floor, weakest relative scale first."""
    scored: list[tuple[float, str, int]] = []
    for name, group in structure.groups.items():
        norms = _norm_modules(model, structure, name)
        spare = group.width - max(1, floors.get(name, 1))
        if name in unfadeable or not norms or spare <= 0:
            continue
        score = torch.zeros(group.width, dtype=torch.float64)
        for module, slot in norms:
            size = module.weight.detach().abs().double().cpu()
            rms = float(size.pow(2).mean().sqrt()) or 1.0
            score = torch.maximum(score, (size[slot.index] / rms).amax(dim=1))
        order = torch.argsort(score, stable=True)[:spare]
        scored += [(float(score[i]), name, int(i)) for i in order]
    scored.sort(key=lambda s: (s[0], s[1], s[2]))
    return [(name, unit) for _, name, unit in scored]


def _grouped(units: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
    """Group name -> sorted unit indices."""
    out: dict[str, list[int]] = {}
    for name, unit in units:
        out.setdefault(name, []).append(unit)
    return {n: torch.tensor(sorted(u), dtype=torch.long) for n, u in out.items()}
