"""Removing units in place: the model and the optimizer state, all or nothing.

``remove_units`` validates the whole plan (structure still matches, groups cuttable,
indices in range, optimizer supported) and computes every new tensor before assigning
any, so that an error leaves the model and the optimizer exactly as they were.
Parameters keep their identity (``param.data`` is replaced), so the same optimizer keeps
training them; gradients, BatchNorm running statistics and optimizer moments are sliced
alike; ``requires_grad`` is untouched.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .criteria import DeadUnits, find_dead
from .errors import DempError
from .layers import Side, replace_data, sync_attributes, tensors_on_side
from .optim_state import check_optimizer, sliced_state
from .records import record_of
from .structure import Structure, keep_indices, module_cuts


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


Request = DeadUnits | Mapping[str, Sequence[int] | torch.Tensor]


def remove_units(
    model: nn.Module,
    dead: Request,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    structure: Structure | None = None,
    min_units: int = 1,
    round_to: int | None = None,
    scores: Mapping[str, torch.Tensor] | None = None,
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

    Returns:
        A :class:`SurgeryReport`.

    """
    start = time.perf_counter()
    structure, request, own_scores = _resolve(dead, structure)
    scores = own_scores if isinstance(dead, DeadUnits) else dict(scores or {})
    structure.check_matches(model)
    check_optimizer(optimizer)
    removed = plan_removal(structure, request, scores, min_units, round_to)
    units_before, params_before = structure.num_units, count_trainable(model)
    widths = structure.widths()
    cuts = {
        key: keep_indices(gone, structure.sizes[key])
        for key, gone in module_cuts(structure, removed).items()
    }
    record = record_of(model)  # created before the first cut: it keeps the original shapes
    apply_cuts(model, cuts, optimizer)
    structure.renumber(removed)
    record.history.append({n: idx.tolist() for n, idx in removed.items() if idx.numel()})
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


def prune_dead(
    model: nn.Module,
    probe: Any,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    min_units: int = 1,
    round_to: int | None = None,
    **find_kwargs: Any,
) -> SurgeryReport:
    """Find the dead units on ``probe`` and remove them: :func:`find_dead` + :func:`remove_units`.

    Extra keyword arguments go to :func:`find_dead`.
    """
    dead = find_dead(model, probe, **find_kwargs)
    return remove_units(model, dead, optimizer, min_units=min_units, round_to=round_to)


def count_trainable(model: nn.Module) -> int:
    """Count the trainable (``requires_grad``) parameter entries."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _resolve(
    dead: Request, structure: Structure | None
) -> tuple[Structure, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    if isinstance(dead, DeadUnits):
        structure = structure or dead.structure
        for name, g in dead.groups.items():
            if structure.groups.get(name) is None or structure.groups[name].width != g.width:
                raise DempError(
                    f"this decision is stale: group {name!r} had {g.width} units when it was "
                    "made; call find_dead again after each removal"
                )
        return (
            structure,
            {n: g.dead for n, g in dead.groups.items()},
            {n: g.score for n, g in dead.groups.items()},
        )
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
) -> dict[str, torch.Tensor]:
    """Apply the guards to a request (group name -> bool mask) and return removed indices.

    Units kept beyond the live ones (for ``min_units`` / ``round_to``) are the dead units
    with the highest ``scores`` (ties: lowest index).
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
        target = max(live, min_units)
        if round_to:
            target = -(-target // round_to) * round_to
        target = min(target, width)
        score = scores.get(name, torch.zeros(width, dtype=torch.float64))
        order = sorted(range(width), key=lambda j: (not bool(~mask[j]), -float(score[j]), j))
        keep = torch.tensor(sorted(order[:target]), dtype=torch.long)
        removed[name] = keep_indices(keep, width)
    return removed


def apply_cuts(
    model: nn.Module,
    cuts: Mapping[tuple[str, Side], torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    *,
    trial: bool = False,
) -> None:
    """Slice the modules (and optimizer state) named in ``cuts``: (path, side) -> kept indices.

    Every new tensor is computed first; assignment starts only once all succeeded.
    ``trial=True`` (a cut undone before any backward, see :mod:`demp.verify`) leaves
    autograd's cached gradient accumulators alone, so hooks on them (DDP's) survive.
    """
    per_tensor: dict[tuple[str, str], list[tuple[int, torch.Tensor]]] = {}
    for (path, side), keep in cuts.items():
        module = model.get_submodule(path)
        for name, dim in tensors_on_side(module, side):
            per_tensor.setdefault((path, name), []).append((dim, keep))
    staged = []
    for (path, name), dims in per_tensor.items():
        module = model.get_submodule(path)
        tensor = getattr(module, name)
        data, grad = tensor.data, tensor.grad if isinstance(tensor, nn.Parameter) else None
        for dim, keep in dims:
            keep = keep.to(data.device)
            data = data.index_select(dim, keep)
            grad = grad.index_select(dim, keep) if grad is not None else None
        state = sliced_state(optimizer, tensor, dims) if isinstance(tensor, nn.Parameter) else {}
        staged.append((module, name, tensor, data, grad, state))
    for module, name, tensor, data, grad, state in staged:
        if isinstance(tensor, nn.Parameter):
            if trial:
                tensor.data = data
            else:
                replace_data(tensor, data)
            tensor.grad = grad
            if state:
                optimizer.state[tensor].update(state)
        else:
            module._buffers[name] = data
    for path in {p for p, _ in cuts}:
        sync_attributes(model.get_submodule(path))
