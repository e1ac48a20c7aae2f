"""A context manager that puts a model in eval mode and restores every module's mode after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; each module's previous ``training`` flag restored after."""
    with kept_modes(model):
        model.eval()
        yield


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[None]:
    """Restore each module's ``training`` flag on exit, whatever happened inside."""
    modes = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode
