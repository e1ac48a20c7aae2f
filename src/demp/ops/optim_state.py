"""Slicing an optimizer's per-parameter state along with its parameters.

Every state tensor shaped like its parameter (Adam's moments, SGD's momentum buffer,
RMSprop's square average, Adagrad's sum) is sliced along the same dimension; scalars
(``step``) are kept. Optimizers demp has not checked are refused before anything changes.
"""

from __future__ import annotations

import warnings

import torch

from ..errors import UnsupportedOptimizerError
from .layout import slice_like

SUPPORTED_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
)


def check_optimizer(optimizer: torch.optim.Optimizer | None) -> None:
    """Raise :class:`UnsupportedOptimizerError` unless demp can slice this optimizer's state.

    Checks the type, and that every state entry is a scalar or shaped like its parameter.
    """
    if optimizer is None:
        return
    if type(optimizer) not in SUPPORTED_OPTIMIZERS:
        names = ", ".join(c.__name__ for c in SUPPORTED_OPTIMIZERS)
        raise UnsupportedOptimizerError(
            f"cannot carry the state of {type(optimizer).__name__} through surgery; "
            f"supported optimizers: {names}"
        )
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.numel() > 1 and value.shape != param.shape:
                raise UnsupportedOptimizerError(
                    f"{type(optimizer).__name__} state {key!r} has shape {tuple(value.shape)}, "
                    f"not its parameter's {tuple(param.shape)}: cannot slice it"
                )


def sliced_state(
    optimizer: torch.optim.Optimizer | None,
    param: torch.nn.Parameter,
    cuts: list[tuple[int, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Return the new state tensors of ``param`` after the cuts (dim, keep) are applied.

    Only tensors shaped like the parameter are returned; the caller assigns them.
    """
    if optimizer is None or param not in optimizer.state:
        return {}
    out = {}
    for key, value in optimizer.state[param].items():
        if isinstance(value, torch.Tensor) and value.shape == param.shape and value.ndim > 0:
            out[key] = slice_like(value, cuts)
    return out


def optimized(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[set[int], list[str]]:
    """The ids of the parameters ``optimizer`` updates, and the trainable ones it does not.

    Returns:
        ``ids``: ``id(p)`` of every parameter in the optimizer's groups; ``outside``: the
        names of ``model``'s parameters with ``requires_grad`` that no group holds (a
        frozen layer left out of the optimizer): DemP adds neither noise nor penalty there.
    """
    ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
    outside = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in ids]
    return ids, outside


def optimized_ids(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> set[int]:
    """Ids of the parameters ``optimizer`` updates; a warning names trainable ones it skips."""
    ids, outside = optimized(model, optimizer)
    if outside:
        warnings.warn(
            f"DemonPruner: {len(outside)} trainable parameter(s) are not in the optimizer "
            f"and get neither noise nor penalty: {', '.join(outside[:5])}",
            stacklevel=3,
        )
    return ids
