"""The optimizers of the experiments, by name: one table for the CLI, configs and analyses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from ...errors import DempError


def _adam(params: Any, lr: float, momentum: float, wd: float, eps: float) -> Optimizer:
    return torch.optim.Adam(params, lr=lr, eps=eps, weight_decay=wd)


def _adamw(params: Any, lr: float, momentum: float, wd: float, eps: float) -> Optimizer:
    return torch.optim.AdamW(params, lr=lr, eps=eps, weight_decay=wd)


def _sgdm(params: Any, lr: float, momentum: float, wd: float, eps: float) -> Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)


def _sgd(params: Any, lr: float, momentum: float, wd: float, eps: float) -> Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=wd)


# the optimizers of the experiments (--optimizer choices, config validation, analyses)
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "adam": _adam, "adamw": _adamw, "sgdm": _sgdm, "sgd": _sgd,
}  # fmt: skip


def build_optimizer(
    name: str,
    params: Any,
    lr: float,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
) -> Optimizer:
    """Adam / AdamW (with ``eps``), SGD with momentum (``sgdm``) or plain SGD (``sgd``).

    Raises:
        DempError: An optimizer name not in :data:`OPTIMIZERS`.
    """
    if name not in OPTIMIZERS:
        raise DempError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](params, lr, momentum, weight_decay, eps)
