"""Node gates: a multiplier ``c_j`` (1 by default) on every unit of every prunable group.

Multiplying a unit's output by ``c_j`` everywhere it is used is the same as multiplying
the unit's features at the input of every consumer of its group, which forward pre-hooks
do here, for any model demp can group. Gradients with respect to the gates are the node
scores of SNAP and CroP-S (FACTS §2).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..batches import device_dtype
from ..ops.rules import feature_dim
from ..structure.groups import Structure


@contextmanager
def node_gates(model: nn.Module, structure: Structure) -> Iterator[dict[str, torch.Tensor]]:
    """Yield group name -> gate tensor (ones, ``requires_grad``) active inside the block."""
    device, dtype = device_dtype(model)
    gates = {
        name: torch.ones(g.width, dtype=dtype, device=device, requires_grad=True)
        for name, g in structure.groups.items()
    }
    per_consumer: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for name, group in structure.groups.items():
        for slot in group.consumers:
            per_consumer.setdefault(slot.path, []).append((name, slot.index.to(device)))
    handles = []
    for path, parts in per_consumer.items():
        module = model.get_submodule(path)
        dim = feature_dim(module, structure.rules)
        handles.append(module.register_forward_pre_hook(_hook(parts, gates, dim)))
    try:
        yield gates
    finally:
        for handle in handles:
            handle.remove()


def _hook(parts: list[tuple[str, torch.Tensor]], gates: dict[str, torch.Tensor], dim: int):  # noqa: ANN202
    def hook(_module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        factor = torch.ones(x.shape[dim], dtype=x.dtype, device=x.device)
        for name, index in parts:
            k = index.shape[1]
            factor = factor.index_put((index.reshape(-1),), gates[name].repeat_interleave(k))
        shape = [1] * x.ndim
        shape[dim] = -1
        return (x * factor.reshape(shape), *args[1:])

    return hook
