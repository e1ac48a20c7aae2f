"""Where a run's time went: the training loop apart from evaluation and checkpoints.

A run's ``summary.json`` times each phase per step (``seconds_per_step``): ``data`` and
``compute`` (the training step without the pruner), ``pruner_*`` (the pruner's own work,
death checks included), ``eval`` (test-set evaluations and dead-unit monitoring) and
``checkpoint``. Training time is the first three; every time ratio between runs is taken
on it, so that evaluating a wider model does not count as training it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NOT_TRAINING = ("eval", "checkpoint")
_PREFIX = "seconds_per_step_"


def phase_seconds(record: Mapping[str, Any]) -> dict[str, float]:
    """Per-step seconds by phase, from a summary or from a flat ``runs.csv`` row."""
    nested = record.get("seconds_per_step")
    if isinstance(nested, Mapping):
        return {k: float(v) for k, v in nested.items()}
    return {
        k[len(_PREFIX) :]: float(v)
        for k, v in record.items()
        if k.startswith(_PREFIX) and v not in (None, "")
    }


def train_eval_seconds(record: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(training seconds, evaluation seconds) of a run (None, None if it was not timed).

    Reads ``train_seconds``/``eval_seconds`` where the summary has them, else adds up the
    phases (summaries written before those fields existed).
    """
    if record.get("train_seconds") not in (None, ""):
        return float(record["train_seconds"]), float(record.get("eval_seconds") or 0.0)
    phases, steps = phase_seconds(record), record.get("steps")
    if not phases or steps in (None, ""):
        return None, None
    train = sum(v for k, v in phases.items() if k not in NOT_TRAINING)
    return float(steps) * train, float(steps) * phases.get("eval", 0.0)
