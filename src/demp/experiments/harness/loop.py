"""The training loop of the harness: steps over the data, callbacks do everything else.

:func:`run_loop` takes a :class:`~.state.RunState` and a list of :class:`Callback`; each
concern (the method's hooks, death logging, metrics and progress, evaluation,
checkpoints) is one callback, called in list order. The data order, augmentation and
learning rate depend only on the step, so a resumed run sees what the uninterrupted run
would have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .lr import lr_at
from .state import RunState
from .steps import train_step


@dataclass
class StepResult:
    """One step's batch loss, correct predictions and batch size (this rank)."""

    loss: float
    correct: int
    n: int


class Callback:
    """A concern of the run, plugged into the loop (all hooks are no-ops by default)."""

    def on_step_end(self, s: RunState, result: StepResult) -> None:
        """After every optimizer step (``s.step`` counts it)."""

    def on_interrupt(self, s: RunState) -> None:
        """On Ctrl-C, before the KeyboardInterrupt goes on."""

    def on_stop(self, s: RunState) -> None:
        """When the run stops early at ``stop_after`` (it will be resumed)."""


def lr_of(s: RunState, step: int) -> float:
    """The learning rate at ``step``."""
    c = s.config
    return lr_at(step, c.lr, s.total, c.lr_schedule, c.lr_decay_factor, c.lr_decay_every)


def run_loop(s: RunState, callbacks: list[Callback], stop_after: int | None = None) -> bool:
    """Train from ``s.step`` to the end, or to ``stop_after``; True when the run is done.

    Raises:
        KeyboardInterrupt: After every callback's ``on_interrupt``.
    """
    s.started = time.perf_counter()
    try:
        while s.step < s.total:
            epoch, index = divmod(s.step, s.spe)
            batches = s.data.batches(s.config.batch_size, epoch, s.config.seed, index)
            for _ in range(index, s.spe):
                result = one_step(s, batches)
                for callback in callbacks:
                    callback.on_step_end(s, result)
                if s.step >= s.total or s.step == stop_after:
                    break
            if s.step == stop_after and s.step < s.total:
                for callback in callbacks:
                    callback.on_stop(s)
                return False
    except KeyboardInterrupt:
        for callback in callbacks:
            callback.on_interrupt(s)
        raise
    return True


def one_step(s: RunState, batches: Any) -> StepResult:
    """Take the next batch (this rank's share) and make one optimizer step."""
    start = time.perf_counter()
    x, y = map(s.ranks.shard, next(batches))
    x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
    for group in s.optimizer.param_groups:
        group["lr"] = lr_of(s, s.step)
    pruner = s.method.pruner
    inside = sum(pruner.seconds.values()) if pruner else 0.0
    computed = time.perf_counter()
    loss, correct = train_step(s.net, s.optimizer, x, y)
    done = time.perf_counter()
    pruner_time = (sum(pruner.seconds.values()) - inside) if pruner else 0.0
    s.seconds["data"] += computed - start
    s.seconds["compute"] += done - computed - pruner_time
    s.train_flops_sum += s.flops_now
    s.step += 1
    return StepResult(loss, correct, len(y))
