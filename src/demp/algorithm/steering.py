"""DemP+ inside a DemonPruner: floors, the target controller and its cap, cost weights.

:class:`Steering` holds what the plain algorithm lacks: the groups' initial widths (for
``min_fraction``), the exact :class:`~demp.structure.CostModel` (for the target's budget
and the cost-weighted penalty) and the :class:`TargetController`. With the default
options it reproduces the paper's algorithm (the configured schedule, uniform penalty,
``min_units`` only, every dead unit removed), except that a group down to ``min_units``
is no longer pushed (:meth:`Steering.reg_weights`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..accounting import CostLedger
from ..batches import Batch, device_dtype
from ..errors import DempError
from ..structure import Structure
from ..structure.costs import CostModel, Metric
from ..surgery import Decision, plan_removal
from .budget import cap_removal, group_floors, largest_removal
from .config import DemPConfig
from .controller import TargetController
from .fade import Fade
from .taylor import TaylorMeter

_REACHED_WITHIN = 0.005  # a run this close below its target has reached it, at most...
_REACHED_SHARE = 0.02  # ...and no more than this share of what the target keeps
_LEDGER_KEYS = {"weight": "params", "neuron": "units", "flops": "flops"}


class Steering:
    """Floors, target controller and cost weights for one pruner (see module doc).

    Args:
        config: The pruner's config.
        model: The model.
        structure: Its channel groups (the pruner's).
        example: One probe example (measures output positions for FLOPs).
        total_steps: Steps of the run.
        ledger: The pruner's cost ledger (initial sizes, current FLOPs).
        prune_every: Steps between death checks (a fade lasts one interval).
        sync: The pruner's in-place all-reduce (MAX) across ranks, or None: the Taylor
            scores go through it before a fade is planned, so every rank fades the same
            units (a shortcut row's term is measured on each rank's own batch).
    """

    def __init__(
        self,
        config: DemPConfig,
        model: nn.Module,
        structure: Structure,
        example: Batch,
        total_steps: int,
        ledger: CostLedger,
        prune_every: int = 1,
        sync: Callable[[torch.Tensor], None] | None = None,
    ) -> None:
        self.config, self.model, self.ledger, self.sync = config, model, ledger, sync
        self.total_steps = total_steps
        self.example = example
        self.initial_widths = structure.widths()
        self.structure = structure
        self._costs: CostModel | None = None  # measured on first use (DemP+ options only)
        self.controller = None
        self.fade: Fade | None = None
        self.taylor: TaylorMeter | None = None
        if config.target_sparsity is not None:
            self.controller = TargetController(
                config.target_sparsity,
                total_steps,
                config.schedule,
                reach=config.target_reach,
                release=config.target_release,
                max_scale=config.target_max_scale,
                deadline=config.target_deadline,
            )
            if config.fade:
                self.fade = Fade(length=max(1, prune_every - 1), per_cost=config.fade_per_cost)
                self.taylor = TaylorMeter() if config.fade_score == "taylor" else None
            self._check_reachable()

    # ----------------------------------------------------------------- strengths
    def strength(self, step: int) -> float:
        """Multiplier of ``reg_strength`` at ``step``."""
        if self.controller is not None:
            return self.controller.multiplier(step)
        return self.config.schedule(step, self.total_steps)

    def noise(self, step: int) -> float:
        """Multiplier of ``noise_std`` at ``step``."""
        schedule = self.config.noise_schedule or self.config.schedule
        value = schedule(step, self.total_steps)
        return value * self.controller.noise_multiplier(step) if self.controller else value

    # ----------------------------------------------------------------- removal
    def floors(self) -> dict[str, int]:
        """Fewest units each group may keep."""
        cfg = self.config
        return group_floors(self.initial_widths, cfg.min_units, cfg.min_fraction)

    def plan(self, dead: Decision) -> dict[str, torch.Tensor]:
        """Which dead units to remove: the guards, then (with a target) the cap."""
        cfg = self.config
        removed = plan_removal(
            dead.structure,
            dead.removal_masks(),
            dead.unit_scores(),
            cfg.min_units,
            cfg.round_to,
            self.floors(),
        )
        if self.controller is None:
            return removed
        budget = self._size() - (1.0 - self.controller.target) * self._initial()
        return cap_removal(self.costs, removed, max(budget, 0.0), self.metric, cfg.round_to)

    def surplus(self, dead: Decision, removed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Dead units the removal keeps, to revive (none without a target or ``revive``)."""
        if self.controller is None or not self.config.revive:
            return {}
        out = {}
        for name, mask in dead.removal_masks().items():
            keep = mask.clone()
            keep[removed.get(name, torch.zeros(0, dtype=torch.long))] = False
            if bool(keep.any()):
                out[name] = torch.nonzero(keep).reshape(-1)
        return out

    def after_check(self, step: int, find: Callable[..., Decision] | None = None) -> dict[str, Any]:
        """Update the controller with the sparsity after this check's removal.

        Args:
            step: The step of the check.
            find: A death check on the model as it is (the fade's probe needs one; with
                ``spreads=True`` it measures the units' spreads, for ``fade_score``).
        """
        if self.controller is None:
            return {}
        sparsity, tolerance = self.sparsity(), self._granularity()
        self.controller.update(step, sparsity, tolerance)
        out = {
            "target": self.controller.target,
            "target_sparsity": sparsity,
            "lambda_scale": self.controller.scale,
            "target_given_up": self.controller.stalled_at is not None,
        }
        if self.fade is not None:
            out["faded"] = self._start_fade(step, tolerance, find)
        if self.taylor is not None:
            self.taylor.reset()
        return out

    def fade_step(self, completed: int) -> None:
        """After an optimizer step (and its noise): scale the faded units down."""
        if self.fade is not None:
            self.fade.apply(self.model, self.structure, completed)

    def hooks(self) -> list[RemovableHandle]:
        """Module hooks the fade's score needs (``fade_score="taylor"``; remove to detach)."""
        return [] if self.taylor is None else self.taylor.attach(self.model)

    def observe_gradients(self) -> None:
        """Before a step, with the loss's gradients alone: add up the Taylor estimates."""
        if self.taylor is not None:
            self.taylor.accumulate(self.model, self.structure)

    def removed(self, units: Mapping[str, list[int]]) -> None:
        """After a removal (group -> indices as numbered before): renumber what is kept."""
        if self.taylor is not None:
            self.taylor.cut(units)

    def settle_fade(self, dead: Decision) -> list[str]:
        """At a check, before removal: end the fade; groups where it did not kill."""
        return [] if self.fade is None else self.fade.settle(dead.removal_masks())

    def _start_fade(self, step: int, tolerance: float, find: Callable[..., Decision] | None) -> int:
        """Fade the weakest units out when deaths lag at full strength (:mod:`.fade`).

        Due at a check while pushing, with the scale at its ceiling and the schedule past
        its rise (below it, raising the strength is the controller's answer to a lag),
        behind the reference by more than ``tolerance``, the last interval having closed
        less than half the lag; and once at the check where the target is given up (the
        deadline, or a stall), for the whole lag. The chosen units close the lag.
        """
        c, fade = self.controller, self.fade
        assert c is not None and fade is not None
        entry = c.trajectory[-1]
        lag = entry["reference"] - entry["sparsity"]
        gained = entry["sparsity"] - c.trajectory[-2]["sparsity"] if len(c.trajectory) > 1 else 0.0
        full = c.scale >= c.max_scale and c.held(step) >= 1.0
        given_up_now = c.stalled_at == step and c.reached_at is None  # the deadline, a stall
        stalling = full and gained < 0.5 * lag and c.released_at is None
        if lag <= tolerance or not (stalling or given_up_now):
            return 0
        if not fade.probed and find is not None:
            fade.probe(self.model, self.structure, find)
        budget = self._size() - (1.0 - entry["reference"]) * self._initial()
        by_output = self.config.fade_score == "output" and find is not None
        spread = find(spreads=True).unit_spreads() if by_output else None
        if self.taylor is not None and self.taylor.count:
            spread = self.taylor.scores(self.sync, device_dtype(self.model)[0])
        return fade.plan(
            self.model, self.structure, self.costs, self.floors(), budget, self.metric, step,
            spread, relative=self.taylor is None,
        )  # fmt: skip

    def shortfall(self) -> str | None:
        """A note when the model is short of its target by more than one unit, else None."""
        c = self.controller
        if c is None:
            return None
        sparsity = self.sparsity()
        if sparsity >= c.target - self._granularity():
            return None
        if c.stalled_at is None:
            why = "the run ended first"
        elif c.stalled_at >= c.deadline * c.total_steps:
            why = f"given up at step {c.stalled_at}, the deadline ({c.deadline:g} of the run)"
        else:
            why = (
                f"given up at step {c.stalled_at}: {c.patience} check intervals with lambda at "
                f"its ceiling ({c.max_scale:g}x reg_strength) gained less than one unit"
            )
        return (
            f"DemP target_sparsity {c.target:g} ({self.metric}) not reached: {sparsity:.4f} ({why})"
        )

    def sparsity(self) -> float:
        """The model's sparsity now, in the target metric."""
        return 1.0 - self._size() / self._initial()

    @property
    def metric(self) -> Metric:
        """The target metric."""
        return self.config.target_metric

    # ----------------------------------------------------------------- weights
    def held_groups(self) -> set[str]:
        """Groups at their floor: no removal can take another of their units."""
        step, floors = self.config.round_to or 1, self.floors()
        return {
            name
            for name, group in self.structure.groups.items()
            if group.width - step < max(1, floors.get(name, 1))
        }

    def reg_weights(self, params: list[nn.Parameter]) -> list[torch.Tensor | None] | None:
        """Per-entry penalty weights of the scales (None: 1 everywhere).

        A group at its floor (:meth:`held_groups`) is not pushed (weight 0): its dead units
        could not be removed, only left in place, dead, while the controller raised the
        strength to find deaths elsewhere (measured: floors with a pushed held group lost
        the whole model, RESULTS-target.md). The other grouped units get 1 (``"uniform"``)
        or their unit's cost, normalized to mean 1 over them.
        """
        held, weighting = self.held_groups(), self.config.weighting
        if weighting == "uniform" and not held:
            return None
        unit = None
        if weighting != "uniform":
            unit = self.costs.unit_costs("weight" if weighting == "params" else "flops")
        weights = {id(p): torch.ones_like(p, dtype=torch.float64) for p in params}
        pushed = {id(p): torch.zeros_like(p, dtype=torch.bool) for p in params}
        for name, group in self.structure.groups.items():
            for slot in group.slots:
                param = getattr(self.model.get_submodule(slot.path), "weight", None)
                if slot.role != "norm" or param is None or id(param) not in weights:
                    continue
                rows = slot.index.reshape(-1).to(param.device)
                value = 0.0 if name in held else (1.0 if unit is None else unit[name])
                weights[id(param)][rows] = value
                pushed[id(param)][rows] = name not in held
        entries = torch.cat([weights[id(p)][pushed[id(p)]] for p in params] or [torch.ones(0)])
        mean = float(entries.mean()) if entries.numel() and float(entries.mean()) > 0 else 1.0
        return [
            torch.where(pushed[id(p)], weights[id(p)] / mean, weights[id(p)]).to(p.dtype)
            for p in params
        ]

    # ----------------------------------------------------------------- state
    @property
    def costs(self) -> CostModel:
        """The exact cost model of the model and its structure (measured once, on demand)."""
        if self._costs is None:
            self._costs = CostModel.measure(self.model, self.structure, self.example)
        return self._costs

    def rebind(self, structure: Structure) -> None:
        """Use a rebuilt structure (after the pruner's state was loaded)."""
        self.structure = structure
        if self._costs is not None:
            self._costs = CostModel(self.model, structure, self._costs.positions)

    def state_dict(self) -> dict[str, Any]:
        """Initial widths and the controller's state."""
        state: dict[str, Any] = {"initial_widths": dict(self.initial_widths)}
        if self.controller is not None:
            state["controller"] = self.controller.state_dict()
        if self.fade is not None:
            state["fade"] = self.fade.state_dict()
        if self.taylor is not None:
            state["taylor"] = self.taylor.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.initial_widths = dict(state.get("initial_widths", self.initial_widths))
        if self.controller is not None and "controller" in state:
            self.controller.load_state_dict(state["controller"])
        if self.fade is not None and "fade" in state:
            self.fade.load_state_dict(state["fade"])
        if self.taylor is not None:
            self.taylor.load_state_dict(state.get("taylor", {}))

    # ----------------------------------------------------------------- helpers
    def _size(self) -> float:
        if self.metric == "flops":
            return self.ledger.flops_now
        return self.costs.total(self.metric)

    def _initial(self) -> float:
        return float(self.ledger.initial[_LEDGER_KEYS[self.metric]])

    def _granularity(self) -> float:
        """How close below the target counts as reached.

        The smallest step one more removal could make (as a fraction of the initial size),
        and at least the smaller of half a point and 2 % of what the target keeps (0.1 point
        at 95 %: half a point there is a model 10 % larger than the target's).
        """
        floors = self.floors()
        unit = self.costs.unit_costs(self.metric)
        step = [
            unit[n] * (self.config.round_to or 1)
            for n, g in self.costs.structure.groups.items()
            if g.width - (self.config.round_to or 1) >= floors.get(n, 1)
        ]
        target = self.controller.target if self.controller else 0.0
        least = min(_REACHED_WITHIN, _REACHED_SHARE * (1.0 - target))
        return max(min(step) / self._initial(), least) if step else 1.0

    def _check_reachable(self) -> None:
        target = self.controller.target if self.controller else 0.0
        most = self.costs.saving(
            largest_removal(self.costs.structure, self.floors(), self.config.round_to),
            self.metric,
        )
        reachable = 1.0 - (self._size() - most) / self._initial()
        if target > reachable + 1e-12:
            raise DempError(
                f"target_sparsity {target:g} ({self.metric}) cannot be reached: with "
                f"min_units={self.config.min_units}, min_fraction={self.config.min_fraction} "
                f"and round_to={self.config.round_to} this model reaches at most "
                f"{reachable:.4f} (layers outside the prunable groups stay whole)"
            )
