"""Slicing modules in place: new tensors for a cut, assigned only once all are computed.

:func:`apply_cuts` keeps the given indices along each (module, side) of a model, with the
gradients and the optimizer state sliced alike, each in the memory format it had (a
channels-last model stays channels-last); :func:`replace_data` gives a Parameter data of
another shape while keeping the Parameter object (so optimizers keep training it).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .layout import slice_like
from .optim_state import sliced_state
from .rules import Side, sync_attributes, tensors_on_side
from .table import LayerRules


def apply_cuts(
    model: nn.Module,
    cuts: Mapping[tuple[str, Side], torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    *,
    trial: bool = False,
    rules: LayerRules | None = None,
) -> None:
    """Slice the modules (and optimizer state) named in ``cuts``: (path, side) -> kept indices.

    Every new tensor is computed first; assignment starts only once all succeeded.
    ``trial=True`` (a cut undone before any backward, see :mod:`demp.structure.verify`) leaves
    autograd's cached gradient accumulators alone, so hooks on them (DDP's) survive.
    ``rules`` is the layer table saying which tensors each module slices (default: the
    built-in one; a structure carries the table it was built with).
    """
    per_tensor: dict[tuple[str, str], list[tuple[int, torch.Tensor]]] = {}
    for (path, side), keep in cuts.items():
        module = model.get_submodule(path)
        for name, dim in tensors_on_side(module, side, rules):
            per_tensor.setdefault((path, name), []).append((dim, keep))
    staged = []
    for (path, name), dims in per_tensor.items():
        module = model.get_submodule(path)
        tensor = getattr(module, name)
        data, grad = tensor.data, tensor.grad if isinstance(tensor, nn.Parameter) else None
        data, grad = slice_like(data, dims), slice_like(grad, dims) if grad is not None else None
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
        sync_attributes(model.get_submodule(path), rules)


def replace_data(param: nn.Parameter, data: torch.Tensor) -> None:
    """Give ``param`` new data of another shape, keeping the Parameter object.

    Autograd caches one gradient accumulator per leaf with the leaf's shape at creation; a
    graph still alive (the last loss, say) keeps it alive, and the next backward would then
    fail on the new shape. Assigning data of another dtype first makes autograd drop that
    cached accumulator (``set_data`` resets it on a type change); a fresh one is made on the
    next forward.
    """
    other = torch.float16 if data.dtype != torch.float16 else torch.float32
    param.data = torch.empty(0, dtype=other, device=data.device)
    param.data = data
