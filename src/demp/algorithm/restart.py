"""A second start once DemP+ has found its architecture: the schedule, and optionally weights.

A DemP+ run at a high target spends its first third searching for the architecture under
a strong penalty, noise and fades, in the learning-rate schedule's high phase; by the time
the target is reached the schedule has decayed, and the final architecture trains the rest
of the run at a low rate from weights shaped by the search. With ``DemPConfig.restart``,
once the target is reached (or given up) and the strength released to zero, at the next
death check the pruner records :attr:`Restart.at` (``pruner.restart.at``) and clears the
optimizer's per-parameter state; the loop then starts its learning-rate schedule again
from its beginning over the rest of the run (:meth:`Restart.position`; the harness does
this). That is learning-rate rewinding (Renda et al., ICLR 2020) inside the run's own
budget: the same steps and data, the final architecture trained with a whole schedule.

``DemPConfig.rewind`` also puts the kept units back at their weights of an early step
(weight rewinding, Frankle et al., ICML 2020): a copy of the model is kept from step
``round(rewind * total_steps)`` (0: before the first step) and cut exactly as the model is
cut from then on (the same removals, replayed with :func:`demp.remove_units` on a copy of
the structure), so that at the restart it has the model's widths and each kept unit's
early weights; its parameters and buffers are loaded into the model in place, and the
copy dropped. The restart waits for the copy. Measured on the long preset at 95 %, the
schedule alone helps and the weights do not (benchmarks/RESULTS-demp.md, "A second
start").
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..structure import Structure
from ..surgery import remove_units
from .controller import TargetController


class Restart:
    """When the schedule starts again, and the early copy the kept units return to.

    Args:
        rewind_step: The step whose weights the kept units return to at the restart
            (None: they keep theirs; 0: the initial weights).
    """

    def __init__(self, rewind_step: int | None = None) -> None:
        self.rewind_step = rewind_step
        self.at: int | None = None
        self._asked = False  # whether the loop reads position(): else the restart warns
        self._model: nn.Module | None = None
        self._structure: Structure | None = None

    @classmethod
    def start(
        cls,
        restart: bool,
        rewind: float | None,
        total_steps: int,
        model: nn.Module,
        structure: Structure,
    ) -> Restart | None:
        """A restart (None without ``restart``), its copy taken if the rewind step is 0."""
        if not restart:
            return None
        out = cls(None if rewind is None else round(rewind * total_steps))
        out.take(0, model, structure)
        return out

    @property
    def holding(self) -> bool:
        """Whether the early copy has been taken and not yet put back."""
        return self._model is not None

    def position(self, step: int, total_steps: int) -> tuple[int, int]:
        """Where a schedule restarted here stands at ``step``: (step, total) from the start.

        Before the restart (or without one) that is ``(step, total_steps)``.

        Example:
            >>> lr_lambda = lambda s: one_cycle(*pruner.restart.position(s, total))
        """
        self._asked = True
        if self.at is None or step < self.at:
            return step, total_steps
        return step - self.at, total_steps - self.at

    def take(self, step: int, model: nn.Module, structure: Structure) -> None:
        """Copy ``model`` (and its structure) when ``step`` is the rewind step."""
        if step != self.rewind_step or self.at is not None or self._model is not None:
            return
        self._model = copy.deepcopy(model)
        self._structure = copy.deepcopy(structure)

    def cut(self, removed: Mapping[str, list[int]]) -> None:
        """Replay one removal (group -> unit indices, as numbered then) on the copy."""
        if self._model is None or self._structure is None:
            return
        cuts = {name: list(units) for name, units in removed.items() if units}
        if cuts:
            remove_units(self._model, cuts, structure=self._structure, min_units=1)

    def due(self, controller: TargetController | None, step: int) -> bool:
        """Whether to restart at this check: pushing over, the strength released to 0."""
        if self.at is not None or controller is None or controller.released_at is None:
            return False
        if self.rewind_step is not None and self._model is None:
            return False  # the copy is not taken yet
        return controller.released(step) == 0.0

    def apply(
        self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> dict[str, bool]:
        """Restart at ``step``: load the copy (if any) in place, clear the optimizer state.

        Returns:
            The history entries: ``restarted`` and ``rewound`` (the weights too).
        """
        rewound = self._model is not None
        if self._model is not None:
            with torch.no_grad():
                model.load_state_dict(self._model.state_dict())
        for group in optimizer.param_groups:
            for param in group["params"]:
                optimizer.state.pop(param, None)
        self._model = self._structure = None
        self.at = step
        if not self._asked:
            warnings.warn(
                f"DemonPruner: DemPConfig.restart restarted at step {step}, but the training "
                "loop has not asked for the schedule's position: start the learning-rate "
                "schedule again here with pruner.restart.position(step, total_steps), or set "
                "DemPConfig(restart=False) (a constant learning rate needs neither)",
                stacklevel=4,
            )
        return {"restarted": True, "rewound": rewound}

    def state_dict(self) -> dict[str, Any]:
        """The restart step and, while held, the copy's tensors."""
        weights = None if self._model is None else self._model.state_dict()
        return {"at": self.at, "rewind_step": self.rewind_step, "weights": weights}

    def load_state_dict(
        self, state: Mapping[str, Any], model: nn.Module, structure: Structure
    ) -> None:
        """Restore :meth:`state_dict` onto a model already at the saved widths.

        The copy is rebuilt as a deep copy of ``model`` holding the saved tensors (a copy
        taken by a fresh pruner before the checkpoint was loaded is dropped).
        """
        at = state.get("at")
        self.at = None if at is None else int(at)
        self._model = self._structure = None
        weights = state.get("weights")
        if weights is not None and self.at is None:
            self._model = copy.deepcopy(model)
            self._model.load_state_dict(weights)
            self._structure = copy.deepcopy(structure)


def restarting(
    lr_lambda: Callable[[int], float], restart: Restart, total_steps: int
) -> Callable[[int], float]:
    """A ``LambdaLR`` multiplier that starts again, compressed, at ``restart``'s step.

    Before the restart it is ``lr_lambda`` itself; after it, ``lr_lambda`` of the position
    scaled back to the original length, so the whole schedule (warm-up included) plays
    again over the steps left.

    Example:
        >>> sched = LambdaLR(opt, restarting(lambda s: 0.5 * (1 + cos(pi * s / T)),
        ...                                  pruner.restart, T))
    """

    def wrapped(step: int) -> float:
        at, total = restart.position(step, total_steps)
        if total == total_steps:
            return lr_lambda(step)
        return lr_lambda(at * total_steps / total)  # type: ignore[arg-type]

    return wrapped


def restart_schedulers(
    schedulers: Iterable[Any], restart: Restart | None, total_steps: int
) -> list[str]:
    """Make every ``LambdaLR`` among ``schedulers`` start again at the restart, in place.

    The Lightning and Hugging Face integrations call this on their trainers' schedulers
    (the Trainer's default schedules are ``LambdaLR``); any other kind keeps its course,
    and the restart then warns that the loop did not ask for the position.

    Returns:
        The type names of the schedulers left alone (their schedules do not restart).
    """
    left: list[str] = []
    if restart is None:
        return left
    for scheduler in schedulers:
        if scheduler is None:
            continue
        if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            left.append(type(scheduler).__name__)
            continue
        scheduler.lr_lambdas = [restarting(f, restart, total_steps) for f in scheduler.lr_lambdas]
    return left
