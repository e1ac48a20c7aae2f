"""Ctrl-C and SIGTERM during training, acted on at the next step boundary.

A signal that arrives inside a step (data, forward, backward, the optimizer step and the
method's hooks, evaluation, a checkpoint write) only marks the run; the loop finishes the
step and its callbacks, then stops there and saves a checkpoint whose weights and counters
agree. A second signal stops at once, without a checkpoint: the last complete one stands.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)


class StopNow(KeyboardInterrupt):
    """A second signal: stop inside the step, without writing a checkpoint."""


class DeferredSignals:
    """Context manager: SIGINT and SIGTERM set :attr:`pending` instead of interrupting.

    Installed only in the main thread (elsewhere signals cannot be handled and the
    context does nothing); the previous handlers come back on exit.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> DeferredSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.pending is not None:
            raise StopNow
        self.pending = signum
        name = signal.Signals(signum).name
        print(
            f"\n{name}: stopping after this step with a checkpoint "
            "(again to stop at once, without one)",
            file=sys.stderr,
        )
