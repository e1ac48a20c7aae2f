"""Which BatchNorm statistics a death check judges the network with.

A BatchNorm layer computes two functions: in train mode it normalizes with the statistics
of the batch (the function the optimizer trains), in eval mode with its running averages.
While DemP shrinks the scales quickly, the running averages lag the network they describe
(measured: running variances 3-29x the true ones, FACTS §10), and a unit that looks dead
with them can be alive in the network being trained: removing it changes that network.
``stats=`` of :func:`demp.find_dead` picks the statistics:

- ``"running"``: eval mode with the running averages (the authors' code; the default of
  :func:`demp.find_dead` and of ``DemPConfig(variant="paper")``).
- ``"batch"``: each probe batch normalized with its own statistics, as in training. A unit
  zero on every probe batch this way is zero in the train-mode network on those batches,
  so removing it leaves the train-mode output on the probe bit-for-bit the same.
- ``"reestimate"``: eval mode with statistics recomputed over the whole probe (a
  cumulative average of its batches), the population statistics of the network as it is.

Inside :func:`norm_statistics` nothing of the model is lost: every BatchNorm's buffers,
momentum and mode are restored on exit, whatever happened inside.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

from ..batches import eval_mode

NormStats = Literal["running", "batch", "reestimate"]
NORM_STATS: tuple[str, ...] = ("running", "batch", "reestimate")
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@contextmanager
def norm_statistics(
    model: nn.Module, stats: NormStats, run_probe: Callable[[], Any]
) -> Iterator[None]:
    """Inside the block, the model computes with the chosen statistics (see module doc).

    The model is in eval mode except, for ``"batch"``, its BatchNorm layers (train mode:
    batch statistics; their running buffers are restored on exit). For ``"reestimate"``
    the running statistics are recomputed on entry by calling ``run_probe()`` once
    (cumulative average over the probe's batches) and restored on exit.

    Args:
        model: The model.
        stats: ``"running"``, ``"batch"`` or ``"reestimate"``.
        run_probe: Runs the model on every probe batch (called under no_grad).

    Raises:
        ValueError: An unknown ``stats``.
    """
    if stats not in NORM_STATS:
        raise ValueError(f"stats must be one of {NORM_STATS}, got {stats!r}")
    norms = batch_norms(model) if stats != "running" else []
    saved = [_save(m) for m in norms]
    try:
        with eval_mode(model):
            if stats == "reestimate" and norms:
                _reestimate(norms, run_probe)
            elif stats == "batch":
                for m in norms:
                    m.train()
            yield
    finally:
        for m, state in zip(norms, saved, strict=True):
            _restore(m, state)


def _reestimate(norms: list[nn.modules.batchnorm._BatchNorm], run_probe: Callable[[], Any]) -> None:
    """Recompute every BatchNorm's running statistics over the probe, then eval them."""
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the mean over the probe's batches
        m.train()
    with torch.no_grad():
        run_probe()
    for m in norms:
        m.eval()


def _save(module: nn.Module) -> dict[str, Any]:
    buffers = {n: getattr(module, n) for n in _BUFFERS if getattr(module, n, None) is not None}
    return {"buffers": {n: b.detach().clone() for n, b in buffers.items()},
            "momentum": module.momentum}  # fmt: skip


def _restore(module: nn.Module, state: dict[str, Any]) -> None:
    with torch.no_grad():
        for name, value in state["buffers"].items():
            getattr(module, name).copy_(value)
    module.momentum = state["momentum"]
