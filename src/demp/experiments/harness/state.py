"""The state of one harness run, shared by the training loop and its callbacks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...accounting import CostLedger
from ...methods import Method, MethodContext
from ...structure import Structure
from ..data import DataBundle
from .config import TrainConfig
from .ranks import Ranks
from .rundir import MetricsLog

PHASES = ("data", "compute", "compile", "eval", "checkpoint")


@dataclass
class RunState:
    """Everything a callback may read or update while a run trains.

    Attributes:
        config: The run's options.
        out: The run folder.
        ranks: This process's place among the torchrun processes.
        device: The device it trains on.
        data: The dataset in memory.
        model: The model (never wrapped).
        net: What the loop calls: the model, or its DDP wrapper.
        optimizer: The optimizer.
        method: The registered method driving the run.
        ctx: What the method sees of the run.
        probe: The fixed death-check examples (all ranks' share).
        total: Steps of the run; ``spe``: steps per epoch.
        step: Steps done.
        log: The run's ``metrics.jsonl``.
        monitor_structure: Groups counted for methods that keep none of their own.
        costs: Units, parameters and FLOPs before any removal, FLOPs now and their sum
            over the steps done (the same ledger as the pruner's).
        seconds: Wall seconds per phase (data, compute, compile: the first step after each
            (re)compile with ``--compile``, eval, checkpoint).
        notes: Lines for the summary.
        window: Loss, correct predictions and examples of this rank since the last step
            line (saved with checkpoints, so that a resumed run logs the same lines).
        elapsed0: Seconds already spent before a resume.
        progress: Show a progress bar.
    """

    config: TrainConfig
    out: Path
    ranks: Ranks
    device: torch.device
    data: DataBundle
    model: nn.Module
    net: Any
    optimizer: torch.optim.Optimizer
    method: Method
    ctx: MethodContext
    probe: torch.Tensor
    total: int
    spe: int
    log: MetricsLog
    progress: bool = True
    step: int = 0
    monitor_structure: Structure | None = None
    costs: CostLedger | None = None
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    notes: list[str] = field(default_factory=list)
    window: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "correct": 0, "n": 0})
    elapsed0: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    events_logged: int = 0

    @property
    def structure(self) -> Structure:
        """The channel groups being pruned (the method's) or monitored."""
        own = self.method.structure
        return own if own is not None else self.monitor_structure  # type: ignore[return-value]

    def epoch_batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """The shuffled (augmented) training batches of ``epoch`` from batch ``start`` on."""
        return self.data.batches(self.config.batch_size, epoch, self.config.seed, start)

    def elapsed(self) -> float:
        """Wall seconds of the run so far, across resumes."""
        return self.elapsed0 + time.perf_counter() - self.started

    def write(self, record: dict[str, Any]) -> None:
        """Append a record to metrics.jsonl (rank 0 only)."""
        if self.ranks.main:
            self.log.write(record)
