"""The concerns of a harness run, one callback each (see :mod:`.loop`)."""

from __future__ import annotations

import time
from typing import Any

from ...accounting import count_trainable
from ...checkpoint import save_checkpoint
from ...tracking import DeathTracker
from .loop import Callback, StepResult, lr_of
from .rundir import progress_bar
from .state import RunState
from .steps import evaluate


class MethodHooks(Callback):
    """Call the method's per-step and per-epoch hooks."""

    def on_step_end(self, s: RunState, result: StepResult) -> None:
        """``after_step`` every step, ``epoch_end`` at the end of each epoch."""
        s.method.after_step(s.ctx, s.step)
        if s.step % s.spe == 0:
            s.method.epoch_end(s.ctx, s.step // s.spe, s.step)


# what a DemonPruner's history adds to a check line (DemP+: the target controller)
STEERING_FIELDS = (
    "removed", "revived", "lambda", "lambda_scale", "target", "target_sparsity", "dead_running",
    "faded", "unfadeable", "restarted", "rewound",
)  # fmt: skip


class DeathLog(Callback):
    """Log death checks: the method's own events, or a dead-unit count every few steps."""

    def on_step_end(self, s: RunState, result: StepResult) -> None:
        """Log the events since the last step, or count dead units when it is time."""
        log_checks(s)


def log_checks(s: RunState) -> None:
    """Write the method's new death-check events, or run a monitoring check when due."""
    if s.method.history is not None:
        for event in s.method.history[s.events_logged :]:
            record = check_record(s, event["step"], dict(event["widths"]), event["dead"])
            record.update({k: event[k] for k in STEERING_FIELDS if k in event})
            s.write(record)
        s.events_logged = len(s.method.history)
        return
    every = s.config.monitor_every or max(1, round(0.05 * s.total))
    if s.step % every == 0 and s.ranks.main:
        monitor(s)


def monitor(s: RunState) -> None:
    """Count the dead units of the monitored groups now (counted as evaluation time)."""
    start = time.perf_counter()
    c = s.config
    tracker = DeathTracker(s.model, s.probe, criterion=c.criterion, eps=c.eps,
                           max_examples=None, structure=s.monitor_structure)  # fmt: skip
    record = tracker.check(s.step)
    live = {n: w - len(record.dead[n]) for n, w in record.widths.items()}
    s.write(check_record(s, s.step, live, record.num_dead))
    s.seconds["eval"] += time.perf_counter() - start


def check_record(s: RunState, step: int, live: dict[str, int], dead: int) -> dict[str, Any]:
    """A ``check`` line of metrics.jsonl."""
    initial = s.costs.initial["units"]
    return {
        "kind": "check", "step": step, "live": live, "dead_now": dead,
        "units_initial": initial, "dead_ratio": 1 - sum(live.values()) / initial,
    }  # fmt: skip


class Metrics(Callback):
    """Step lines of metrics.jsonl every ``log_every`` steps, and the progress bar."""

    def __init__(self, s: RunState) -> None:
        self.bar = progress_bar(s.total, s.step, s.config.method, s.progress)

    def on_step_end(self, s: RunState, result: StepResult) -> None:
        """Accumulate the window; log it (summed over ranks) when due; advance the bar."""
        s.window["loss"] += result.loss * result.n
        s.window["correct"] += result.correct
        s.window["n"] += result.n
        if s.step % s.config.log_every == 0 or s.step == s.total:
            self._log(s)
        self.bar.update(1)

    def _log(self, s: RunState) -> None:
        loss, correct, n = s.ranks.sum([s.window[k] for k in ("loss", "correct", "n")],
                                       s.device)  # fmt: skip
        record = {
            "kind": "step", "step": s.step, "epoch": s.step / s.spe, "lr": lr_of(s, s.step - 1),
            "loss": loss / max(n, 1), "train_acc": correct / max(n, 1),
            "params": count_trainable(s.model) - s.method.zero_weights(),
            "units": s.structure.num_units,
            "penalty": s.method.penalty(), "elapsed": s.elapsed(),
        }  # fmt: skip
        s.write(record)
        self.bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['train_acc']:.3f}",
                             units=record["units"], params=record["params"])  # fmt: skip
        s.window.update(loss=0.0, correct=0, n=0)

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()

    def on_interrupt(self, s: RunState) -> None:
        """Close the bar."""
        self.close()

    def on_abort(self, s: RunState) -> None:
        """Close the bar."""
        self.close()

    def on_stop(self, s: RunState) -> None:
        """Close the bar."""
        self.close()


class Evaluation(Callback):
    """Test loss and accuracy every ``eval_every`` epochs and at the last step (rank 0)."""

    def on_step_end(self, s: RunState, result: StepResult) -> None:
        """Evaluate when an ``eval_every``-th epoch ends, and at the last step."""
        due = s.step % (s.spe * s.config.eval_every) == 0 or s.step == s.total
        if due and s.ranks.main:
            start = time.perf_counter()
            metrics = evaluate(s.model, s.data.test_x, s.data.test_y, s.device)
            s.seconds["eval"] += time.perf_counter() - start
            s.write({"kind": "epoch", "step": s.step, "epoch": s.step / s.spe, **metrics})


class Checkpointing(Callback):
    """A checkpoint at every epoch end before the last, on Ctrl-C, and at a stop."""

    def on_step_end(self, s: RunState, result: StepResult) -> None:
        """Checkpoint at an epoch end (not the last step: the end writes its own)."""
        if s.step % s.spe == 0 and s.step < s.total:
            save(s)

    def on_interrupt(self, s: RunState) -> None:
        """Save, then say how to resume."""
        save(s)
        if s.ranks.main:
            print(f"\ninterrupted at step {s.step}; resume with: demp train --resume {s.out}")

    def on_abort(self, s: RunState) -> None:
        """Save nothing (the step is half done): the last complete checkpoint stands."""
        if s.ranks.main:
            print(f"\nstopped inside a step, without a checkpoint; resume from the "
                  f"last one with: demp train --resume {s.out}")  # fmt: skip

    def on_stop(self, s: RunState) -> None:
        """Save, then say how to resume."""
        save(s)
        if s.ranks.main:
            print(f"stopped at step {s.step}; resume with: demp train --resume {s.out}")


def save(s: RunState) -> None:
    """Write the run's checkpoint (rank 0): model, optimizer, pruner, method state, counters."""
    if not s.ranks.main:
        return
    start = time.perf_counter()
    extra = {
        "step": s.step, "elapsed": s.elapsed(), **s.costs.state_dict(), "seconds": s.seconds,
        "notes": s.notes, "window": s.window,
    }  # fmt: skip
    tensors, extra["method"] = s.method.state_dict()  # one channel, swapped in atomically
    save_checkpoint(s.out / "checkpoint", s.model, s.optimizer, structure=s.structure,
                    extra=extra, tensors=tensors)  # fmt: skip
    s.seconds["checkpoint"] += time.perf_counter() - start
