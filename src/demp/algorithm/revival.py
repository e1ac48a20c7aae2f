"""Reviving dead units that a target keeps: live again, with zero fan-out, exactly.

With a target sparsity, a wave of deaths can go past the target; the removal stops at it
(:mod:`demp.algorithm.budget`) and the surplus units stay in the model, dead: capacity the
model pays for in parameters and FLOPs but cannot use. Reviving one sets its
normalization scale to the median |scale| of the live units of the same layer and its
shift to 0 (so it outputs ``relu(scale * x_hat)`` again), and zeroes the input columns of
every consumer that reads it (so the model's output does not change: the revival is
exact), with the optimizer state of those entries. The consumers' gradients on the zeroed
columns are not zero, so the unit learns a use again, like a connection grown at zero in
dynamic sparse training. Only units whose group has a normalization layer can be revived;
the others stay dead.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..ops.rules import tensors_on_side
from ..structure import Structure


def revive_units(
    model: nn.Module,
    structure: Structure,
    units: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    dead: Mapping[str, torch.Tensor] | None = None,
) -> int:
    """Revive ``units`` (group name -> unit indices) in place; return how many were revived.

    Args:
        model: The model.
        structure: Its channel groups (the indices refer to them).
        units: Dead units to revive; groups without a normalization layer are skipped.
        optimizer: Its state entries of the changed weights are zeroed.
        dead: Group name -> bool mask of every dead unit (left out of the median scale;
            default: only ``units`` are).
    """
    count = 0
    with torch.no_grad():
        for name, idx in units.items():
            group = structure.groups[name]
            norms = [s for s in group.slots if s.role == "norm"]
            if not idx.numel() or not any(_has_scale(model, s.path) for s in norms):
                continue
            live = torch.ones(group.width, dtype=torch.bool)
            live[idx] = False
            if dead is not None and name in dead:
                live &= ~dead[name].cpu()
            for slot in group.slots:
                rows = slot.index[idx].reshape(-1)
                module = model.get_submodule(slot.path)
                if slot.role == "norm" and _has_scale(model, slot.path):
                    _reset_scale(module, slot.index[live].reshape(-1), rows, optimizer)
                elif slot.role == "consumer":
                    for tensor_name, dim in tensors_on_side(module, "in", structure.rules):
                        _zero(getattr(module, tensor_name), dim, rows, optimizer)
            count += int(idx.numel())
    return count


def _has_scale(model: nn.Module, path: str) -> bool:
    return isinstance(getattr(model.get_submodule(path), "weight", None), nn.Parameter)


def _reset_scale(
    module: nn.Module,
    live_rows: torch.Tensor,
    rows: torch.Tensor,
    optimizer: torch.optim.Optimizer | None,
) -> None:
    weight = module.weight
    values = weight.detach().abs()[live_rows.to(weight.device)]
    value = float(values.median()) if values.numel() else 1.0
    weight[rows.to(weight.device)] = value if value > 0 else 1.0
    _clear_state(weight, 0, rows, optimizer)
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        _zero(bias, 0, rows, optimizer)


def _zero(
    tensor: torch.Tensor, dim: int, rows: torch.Tensor, optimizer: torch.optim.Optimizer | None
) -> None:
    tensor.index_fill_(dim, rows.to(tensor.device), 0.0)
    if isinstance(tensor, nn.Parameter):
        _clear_state(tensor, dim, rows, optimizer)


def _clear_state(
    param: torch.Tensor, dim: int, rows: torch.Tensor, optimizer: torch.optim.Optimizer | None
) -> None:
    """Zero the optimizer state entries of ``param`` at ``rows`` along ``dim``."""
    if optimizer is None or param not in optimizer.state:
        return
    for value in optimizer.state[param].values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape and value.ndim > 0:
            value.index_fill_(dim, rows.to(value.device), 0.0)
