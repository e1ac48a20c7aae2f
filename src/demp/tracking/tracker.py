"""DeathTracker: periodic dead-unit counts per layer group, in any training loop.

Example::

    tracker = DeathTracker(model, probe, optimizer=opt, every=100,
                           loggers=[print_logger])
    for x, y in loader:
        ...; opt.step()                   # a check every 100 optimizer steps
    tracker.check()                       # and one at the end
    tracker.overlap_with_final()          # paper Fig. 8: [(step, ratio), ...]

A check runs :func:`demp.find_dead` on the fixed probe set (eval mode, nothing is
removed) and keeps the dead set, so revivals can be counted later. The model's structure
must not change while it is tracked (use the pruner's history for pruned runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..batches import iterate_probe
from ..death.criteria import Criterion, find_dead
from ..errors import DempError
from ..structure import Structure, build_checked_structure
from .revival import DeadSet, overlap_ratio, revivals

Logger = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class DeathRecord:
    """One check: the step and the dead units per group.

    Attributes:
        step: Optimizer steps taken when the check ran.
        dead: Group name -> indices of its dead units.
        widths: Group name -> number of units.
    """

    step: int
    dead: dict[str, list[int]]
    widths: dict[str, int] = field(repr=False)

    @property
    def num_dead(self) -> int:
        """Dead units over all groups."""
        return sum(len(v) for v in self.dead.values())

    @property
    def num_units(self) -> int:
        """Units over all groups."""
        return sum(self.widths.values())

    @property
    def ratio(self) -> float:
        """Dead units / units."""
        return self.num_dead / max(self.num_units, 1)

    @property
    def dead_set(self) -> DeadSet:
        """The dead units as ``(group, index)`` pairs."""
        return frozenset((g, i) for g, idx in self.dead.items() for i in idx)

    def stats(self) -> dict[str, float]:
        """Numbers for a logger: ``dead``, ``dead_ratio`` and ``dead/<group>``."""
        out = {"dead": float(self.num_dead), "dead_ratio": self.ratio}
        out.update({f"dead/{g}": float(len(v)) for g, v in self.dead.items()})
        return out


def print_logger(step: int, stats: dict[str, float]) -> None:
    """A logger that prints the total count and ratio of each check."""
    print(f"step {step}: {int(stats['dead'])} dead units ({stats['dead_ratio']:.1%})")


class DeathTracker:
    """Count dead units per layer group every ``every`` optimizer steps.

    Args:
        model: The model (not pruned while tracked).
        probe: Unaugmented training examples (tensor, iterable of batches, DataLoader).
        optimizer: If given with ``every``, a check runs after every ``every`` steps.
        every: Steps between automatic checks.
        criterion: ``"zero"``, ``"eps"`` or ``"nonpositive"`` (see :func:`demp.find_dead`).
        eps: The criterion's threshold.
        max_examples: Probe examples per check (None: the whole probe, e.g. a training set).
        loggers: Callables ``(step, stats)`` run after each check (TensorBoard, print...).
        structure: The channel groups to count (default: traced from the probe); a
            structure that a baseline cuts in place stays valid for counting.
    """

    def __init__(
        self,
        model: nn.Module,
        probe: Any,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        every: int | None = None,
        criterion: Criterion = "zero",
        eps: float | None = None,
        max_examples: int | None = 512,
        loggers: Iterable[Logger] = (),
        structure: Structure | None = None,
    ) -> None:
        if every is not None and every < 1:
            raise DempError(f"DeathTracker: every must be >= 1, got {every}")
        if (optimizer is None) != (every is None):
            raise DempError("DeathTracker: give both optimizer and every, or neither")
        self.model, self.criterion, self.eps = model, criterion, eps
        self.probe = [part for batch in iterate_probe(probe, max_examples)
                      for part in _chunks(batch)]  # fmt: skip
        self.max_examples = max_examples
        self.structure = structure or build_checked_structure(model, self.probe)
        self.loggers = list(loggers)
        self.records: list[DeathRecord] = []
        self.steps, self.every = 0, every
        self._handle = optimizer.register_step_post_hook(self._after_step) if optimizer else None

    def _after_step(self, *_args: Any) -> None:
        self.steps += 1
        if self.every and self.steps % self.every == 0:
            self.check()

    def check(self, step: int | None = None) -> DeathRecord:
        """Run a death check now (``step`` defaults to the optimizer steps counted)."""
        dead = find_dead(self.model, self.probe, criterion=self.criterion, eps=self.eps,
                         max_examples=None, structure=self.structure)  # fmt: skip
        record = DeathRecord(
            self.steps if step is None else step,
            {n: g.indices.tolist() for n, g in dead.groups.items()},
            {n: g.width for n, g in dead.groups.items()},
        )
        self.records.append(record)
        for logger in self.loggers:
            logger(record.step, record.stats())
        return record

    def detach(self) -> None:
        """Stop the automatic checks."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def counts(self) -> list[tuple[int, int]]:
        """``(step, dead units)`` per check."""
        return [(r.step, r.num_dead) for r in self.records]

    def per_group(self) -> dict[str, list[int]]:
        """Group name -> dead units at each check."""
        return {g: [len(r.dead[g]) for r in self.records] for g in self.structure.groups}

    def overlap_with_final(self) -> list[tuple[int, float | None]]:
        """``(step, |X_t & X_final| / min(|X_t|, |X_final|))`` per check (paper Fig. 8)."""
        if not self.records:
            return []
        final = self.records[-1].dead_set
        return [(r.step, overlap_ratio(r.dead_set, final)) for r in self.records]

    def revivals(self) -> list[dict[str, int]]:
        """Between consecutive checks: units revived, died, stayed dead (with the step)."""
        sets = [r.dead_set for r in self.records]
        steps = [r.step for r in self.records[1:]]
        return [{"step": s, **c} for s, c in zip(steps, revivals(sets), strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: per check the step, dead count, ratio and per-group counts."""
        return {
            "checks": [
                {
                    "step": r.step,
                    "dead": r.num_dead,
                    "ratio": r.ratio,
                    "per_group": {g: len(v) for g, v in r.dead.items()},
                }
                for r in self.records
            ],  # fmt: skip
            "units": self.records[0].num_units if self.records else None,
        }


def _chunks(batch: Any, size: int = 1024) -> list[Any]:
    """Split a large tensor batch (a whole training set) into forward-sized pieces."""
    return list(batch.split(size)) if isinstance(batch, torch.Tensor) else [batch]
