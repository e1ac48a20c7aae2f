"""Removing units in place: the model and the optimizer state, all or nothing.

``remove_units`` validates the whole plan (structure still matches, groups cuttable,
indices in range, optimizer supported) and computes every new tensor before assigning
any, so that an error leaves the model and the optimizer exactly as they were.
Parameters keep their identity (``param.data`` is replaced), so the same optimizer keeps
training them; gradients, BatchNorm running statistics and optimizer moments are sliced
alike; ``requires_grad`` is untouched.

Surgery never imports the code that decides: a decision is anything that has a
``structure`` and says which units to remove (:class:`Decision`, which
:class:`demp.DeadUnits` satisfies), or a plain mapping of group name -> unit indices.
Each removal is appended to ``structure.history``; nothing is kept anywhere else.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from .accounting import count_trainable
from .errors import DempError
from .ops.optim_state import check_optimizer
from .ops.slicing import apply_cuts
from .structure.groups import Structure, keep_indices, module_cuts


@runtime_checkable
class Decision(Protocol):
    """What a decision on which units to remove must provide (e.g. :class:`demp.DeadUnits`)."""

    structure: Structure

    def removal_masks(self) -> dict[str, torch.Tensor]:
        """Group name -> bool mask (of the group's current width) of the units to remove."""
        ...

    def unit_scores(self) -> dict[str, torch.Tensor]:
        """Group name -> score of each unit; the guards keep the highest first."""
        ...


@dataclass
class GroupCut:
    """What one removal did to one group."""

    name: str
    removed: int
    width_before: int
    width_after: int


@dataclass
class SurgeryReport:
    """Summary of one removal: per group, units and trainable parameters before/after."""

    groups: list[GroupCut] = field(default_factory=list)
    units_before: int = 0
    units_after: int = 0
    params_before: int = 0
    params_after: int = 0
    seconds: float = 0.0

    @property
    def removed(self) -> int:
        """Units removed in total."""
        return self.units_before - self.units_after

    def __str__(self) -> str:
        return (
            f"removed {self.removed} units ({self.units_before} -> {self.units_after}), "
            f"trainable params {self.params_before} -> {self.params_after}, "
            f"{self.seconds * 1e3:.1f} ms"
        )


Request = Decision | Mapping[str, Sequence[int] | torch.Tensor]


def remove_units(
    model: nn.Module,
    dead: Request,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    structure: Structure | None = None,
    min_units: int = 1,
    round_to: int | None = None,
    scores: Mapping[str, torch.Tensor] | None = None,
    floors: Mapping[str, int] | None = None,
) -> SurgeryReport:
    """Remove units from ``model`` (and ``optimizer``'s state) in place.

    Example:
        >>> dead = demp.find_dead(model, probe)
        >>> report = demp.remove_units(model, dead, optimizer=opt)

    Args:
        model: The model to shrink.
        dead: A :class:`DeadUnits` from :func:`find_dead`, or a mapping group name ->
            unit indices (then ``structure`` is required).
        optimizer: Its per-parameter state is sliced alike (SGD, Adam, AdamW, RMSprop,
            Adagrad); anything else is refused before any change.
        structure: The structure ``dead`` refers to (default: ``dead.structure``). It is
            renumbered in place, so it can be reused for the next call.
        min_units: Never leave a group with fewer units; the most active are kept.
        round_to: Keep group widths at multiples of this (most active dead units kept).
        scores: For a mapping request, each unit's score (the guards keep the best);
            a :class:`DeadUnits` brings its own activity scores.
        floors: Group name -> fewest units to leave there (on top of ``min_units``).

    Returns:
        A :class:`SurgeryReport`.
    """
    start = time.perf_counter()
    structure, request, own_scores = _resolve(dead, structure)
    scores = dict(scores or {}) if isinstance(dead, Mapping) else own_scores
    structure.check_matches(model)
    check_optimizer(optimizer)
    removed = plan_removal(structure, request, scores, min_units, round_to, floors)
    units_before, params_before = structure.num_units, count_trainable(model)
    widths = structure.widths()
    cuts = {
        key: keep_indices(gone, structure.sizes[key])
        for key, gone in module_cuts(structure, removed).items()
    }
    apply_cuts(model, cuts, optimizer, rules=structure.rules)
    structure.renumber(removed)
    structure.history.append({n: idx.tolist() for n, idx in removed.items() if idx.numel()})
    return SurgeryReport(
        groups=[
            GroupCut(n, int(i.numel()), widths[n], widths[n] - int(i.numel()))
            for n, i in removed.items()
        ],
        units_before=units_before,
        units_after=structure.num_units,
        params_before=params_before,
        params_after=count_trainable(model),
        seconds=time.perf_counter() - start,
    )


def _resolve(
    dead: Request, structure: Structure | None
) -> tuple[Structure, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    if not isinstance(dead, Mapping):
        if not isinstance(dead, Decision):
            raise DempError(
                f"remove_units takes a DeadUnits (or another Decision) or a mapping of group "
                f"name -> unit indices, not a {type(dead).__name__}"
            )
        structure = structure or dead.structure
        masks = dead.removal_masks()
        for name, mask in masks.items():
            group = structure.groups.get(name)
            if group is None or group.width != len(mask):
                raise DempError(
                    f"this decision is stale: group {name!r} had {len(mask)} units when it was "
                    "made; call find_dead again after each removal"
                )
        return structure, masks, dead.unit_scores()
    if structure is None:
        raise DempError("remove_units with a mapping of indices needs structure=")
    request = {}
    for name, idx in dead.items():
        group = structure.group(name)  # raises for skipped / unknown groups
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= group.width):
            raise DempError(f"unit index out of range for group {name!r} of width {group.width}")
        mask = torch.zeros(group.width, dtype=torch.bool)
        mask[idx] = True
        request[name] = mask
    return structure, request, {}


def plan_removal(
    structure: Structure,
    request: Mapping[str, torch.Tensor],
    scores: Mapping[str, torch.Tensor],
    min_units: int,
    round_to: int | None,
    floors: Mapping[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Apply the guards to a request (group name -> bool mask) and return removed indices.

    Units kept beyond the live ones (for ``min_units`` / ``floors`` / ``round_to``) are the
    dead units with the highest ``scores`` (ties: lowest index).
    """
    if min_units < 1:
        raise DempError(f"min_units must be >= 1 (a group is never emptied), got {min_units}")
    if round_to is not None and round_to < 1:
        raise DempError(f"round_to must be a positive integer, got {round_to}")
    removed = {}
    for name, mask in request.items():
        width = structure.group(name).width
        if mask.shape != (width,):
            raise DempError(
                f"mask for group {name!r} has shape {tuple(mask.shape)}, need ({width},)"
            )
        live = int((~mask).sum())
        target = max(live, min_units, (floors or {}).get(name, 0))
        if round_to:
            target = -(-target // round_to) * round_to
        target = min(target, width)
        score = scores.get(name, torch.zeros(width, dtype=torch.float64))
        order = sorted(range(width), key=lambda j: (not bool(~mask[j]), -float(score[j]), j))
        keep = torch.tensor(sorted(order[:target]), dtype=torch.long)
        removed[name] = keep_indices(keep, width)
    return removed
