"""The one training loop of the experiments: steps over the data, callbacks do the rest.

:func:`run_loop` serves ``demp train`` / ``demp bench`` (with a :class:`~.state.RunState`,
:func:`one_step` and the callbacks of :mod:`.callbacks`: the method's hooks, death
logging, metrics and progress, evaluation, checkpoints) and ``demp analyze`` (with its own
small state, a plain step and a death-tracking callback). Each concern is one callback,
called in list order. The data order and augmentation depend only on the step, so a
resumed run sees what the uninterrupted run would have.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .lr import lr_at
from .signals import DeferredSignals, StopNow
from .state import RunState
from .steps import train_step


@dataclass
class StepResult:
    """One step's batch loss, correct predictions and batch size (this rank)."""

    loss: float
    correct: int
    n: int


class LoopState(Protocol):
    """What the loop reads and advances: the data, the budget, the step count."""

    step: int
    total: int
    spe: int

    def epoch_batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """The training batches of ``epoch`` from batch ``start`` on."""
        ...


Batches = Iterator[tuple[torch.Tensor, ...]]
StepFn = Callable[[Any, Batches], StepResult]


class Callback:
    """A concern of the run, plugged into the loop (all hooks are no-ops by default)."""

    def on_step_end(self, s: Any, result: StepResult) -> None:
        """After every optimizer step (``s.step`` counts it)."""

    def on_interrupt(self, s: Any) -> None:
        """On Ctrl-C or SIGTERM, at a step boundary, before the KeyboardInterrupt goes on."""

    def on_abort(self, s: Any) -> None:
        """On an interrupt inside a step (nothing may be saved: the step is half done)."""

    def on_stop(self, s: Any) -> None:
        """When the run stops early at ``stop_after`` (it will be resumed)."""


def lr_of(s: RunState, step: int) -> float:
    """The learning rate at ``step``.

    After a DemP+ restart (``DemPConfig.restart``) the schedule starts again from its
    beginning at the restart's step, over the rest of the run.
    """
    c = s.config
    restart = getattr(s.method.pruner, "restart", None)
    at, total = restart.position(step, s.total) if restart is not None else (step, s.total)
    return lr_at(at, c.lr, total, c.lr_schedule, c.lr_decay_factor, c.lr_decay_every)


def run_loop(
    s: LoopState,
    callbacks: list[Callback],
    stop_after: int | None = None,
    step_fn: StepFn | None = None,
) -> bool:
    """Train from ``s.step`` to ``s.total``, or to ``stop_after``; True when done.

    Args:
        s: The state; ``step_fn(s, batches)`` makes one step and advances ``s.step``.
        callbacks: Called after every step, on Ctrl-C and at an early stop.
        stop_after: Stop (for a later resume) once this step is reached.
        step_fn: The step (default :func:`one_step`, the harness's).

    Raises:
        KeyboardInterrupt: After every callback's ``on_interrupt`` (at a step boundary:
            SIGINT and SIGTERM wait for the step to end, :mod:`.signals`), or its
            ``on_abort`` (a second signal, or an interrupt raised inside a step).
    """
    step_fn = step_fn or one_step
    boundary = True  # the state is between two steps: a checkpoint would be consistent
    with DeferredSignals() as signals:
        try:
            while s.step < s.total:
                epoch, index = divmod(s.step, s.spe)
                batches = s.epoch_batches(epoch, index)
                for _ in range(index, s.spe):
                    boundary = False
                    result = step_fn(s, batches)
                    for callback in callbacks:
                        callback.on_step_end(s, result)
                    boundary = True
                    if signals.pending is not None:
                        raise KeyboardInterrupt
                    if s.step >= s.total or s.step == stop_after:
                        break
                if s.step == stop_after and s.step < s.total:
                    for callback in callbacks:
                        callback.on_stop(s)
                    return False
        except KeyboardInterrupt as err:
            consistent = boundary and not isinstance(err, StopNow)
            for callback in callbacks:
                (callback.on_interrupt if consistent else callback.on_abort)(s)
            raise
    return True


def one_step(s: RunState, batches: Batches) -> StepResult:
    """The harness's step: the next batch (this rank's share), the lr, one optimizer step."""
    start = time.perf_counter()
    x, y = map(s.ranks.shard, next(batches))
    x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
    for group in s.optimizer.param_groups:
        group["lr"] = lr_of(s, s.step)
    pruner = s.method.pruner
    inside = sum(pruner.seconds.values()) if pruner else 0.0
    computed = time.perf_counter()
    fresh = getattr(s.net, "fresh", False)  # --compile: this step compiles (and runs)
    loss, correct = train_step(s.net, s.optimizer, x, y)
    done = time.perf_counter()
    pruner_time = (sum(pruner.seconds.values()) - inside) if pruner else 0.0
    s.seconds["data"] += computed - start
    s.seconds["compile" if fresh else "compute"] += done - computed - pruner_time
    if fresh:
        s.net.fresh = False
    s.costs.step()
    s.step += 1
    return StepResult(loss, correct, len(y))
