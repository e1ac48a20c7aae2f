"""DemonPruner: the DemP training algorithm (paper Algorithm 1) for any training loop.

The pruner attaches to ``optimizer.step`` through step pre/post hooks, so the user's loop
is unchanged (plain loops, ``GradScaler.step``, Lightning, Hugging Face). Before each step
it records where the loss gradient is non-zero (for asymmetric noise) and adds the
scheduled regularizer gradient; after the step it adds the scheduled noise, counts the
step, and every ``prune_every`` steps runs a death check on the fixed probe set and removes
the dead units from the model and the optimizer state. A step that GradScaler skips never
reaches the hooks and is not counted. When ``step`` gets a closure (Lightning's automatic
optimization, LBFGS-style loops) the regularizer and masks are applied right after the
closure has computed the gradients, inside the step.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
from torch import nn

from ..accounting import CostLedger, count_trainable
from ..batches import device_dtype, iterate_probe, take, to_device
from ..death.criteria import DeadUnits, find_dead
from ..errors import DempError
from ..ops.optim_state import check_optimizer, optimized_ids
from ..structure import Structure, build_checked_structure
from ..structure.groups import first_difference
from ..surgery import SurgeryReport, remove_units
from .config import DemPConfig
from .finite import FiniteGate, Gates
from .noise import NoiseInjector, NoisePlan
from .regularizer import add_penalty_gradient, penalty, proximal_l1, regularized_parameters
from .restart import Restart
from .revival import revive_units
from .shift_push import add_shift_push, shift_pairs
from .steering import Steering
from .summary import PrunerSummary

StructureCallback = Callable[["DemonPruner", SurgeryReport], None]
PHASES = ("regularizer", "noise", "check", "surgery")


class DemonPruner:
    """Run DemP alongside an unchanged training loop.

    Example:
        >>> pruner = demp.DemonPruner(model, optimizer, probe=probe_loader,
        ...                           total_steps=len(loader) * epochs)
        >>> for x, y in loader:
        ...     loss = F.cross_entropy(model(x), y)
        ...     optimizer.zero_grad(); loss.backward(); optimizer.step()
        >>> pruner.finalize()
        >>> print(pruner.summary())

    Args:
        model: The model being trained (any device).
        optimizer: Its optimizer (SGD, Adam, AdamW, RMSprop or Adagrad).
        probe: Unaugmented training examples for the death checks; the first
            ``config.probe_size`` examples are kept for the whole run.
        total_steps: Planned optimizer steps (sets the schedules and ``prune_every``).
        config: A :class:`DemPConfig`.
        on_structure_change: Callables ``(pruner, report)`` run after every removal (re-wrap
            DDP, reset torch.compile, resize EMA copies...).
        batch_size: Examples per step, to report absolute training FLOPs (optional).
        sync: Applied to the death statistics before each decision (see
            :func:`demp.find_dead`); :mod:`demp.integrations.distributed` passes a MAX
            all-reduce so that every rank removes the same units.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        probe: Any,
        total_steps: int,
        config: DemPConfig | None = None,
        *,
        on_structure_change: Iterable[StructureCallback] = (),
        batch_size: int | None = None,
        sync: Callable[[torch.Tensor], None] | None = None,
    ) -> None:
        if int(total_steps) <= 0:
            raise DempError(f"total_steps must be a positive integer, got {total_steps}")
        check_optimizer(optimizer)
        self.model, self.optimizer = model, optimizer
        self.config = config or DemPConfig()
        self.total_steps = int(total_steps)
        self.prune_every = self.config.prune_every or max(1, round(0.05 * self.total_steps))
        self.batch_size = batch_size
        self.sync = sync
        self.callbacks: list[StructureCallback] = list(on_structure_change)
        self._probe = list(iterate_probe(probe, self.config.probe_size))
        self.structure = self._build_structure()
        ids = optimized_ids(model, optimizer)
        self._params = [p for p in model.parameters() if p.requires_grad and id(p) in ids]
        reg = regularized_parameters(model, self.config.reg_target)
        self._reg_params = [p for p in reg if id(p) in ids]
        self._shifts = shift_pairs(model, self._reg_params)
        if self.config.reg != "off" and self.config.reg_strength and not self._reg_params:
            warnings.warn(
                "DemonPruner: the model has no normalization scales to regularize; "
                "use DemPConfig(reg_target='all') (e.g. for an MLP)",
                stacklevel=2,
            )
        self.noise = NoiseInjector(self.config.noise, self.config.seed, device_dtype(model)[0])
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.seconds = dict.fromkeys(PHASES, 0.0)
        device, dtype = device_dtype(model)
        example = to_device(take(self._probe[0], 1), device, dtype)
        self.costs = CostLedger.start(model, example, self.structure.num_units)
        self.steering = Steering(self.config, model, self.structure, example, self.total_steps,
                                 self.costs, prune_every=self.prune_every, sync=sync)  # fmt: skip
        self._weights = self.steering.reg_weights(self._reg_params)
        self._plan: NoisePlan | None = None
        self._finite = FiniteGate()
        self._gates: Gates | None = None
        self._last_report: SurgeryReport | None = None
        self.restart = Restart.start(self.config.restart, self.config.rewind, self.total_steps,
                                     model, self.structure)  # fmt: skip
        self._started = self._last_event = time.perf_counter()
        pre, post = optimizer.register_step_pre_hook, optimizer.register_step_post_hook
        self._handles = [pre(self._before_step), post(self._after_step), *self.steering.hooks()]

    # ----------------------------------------------------------------- the training loop
    def _before_step(self, _opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> Any:
        # torch passes the optimizer itself as args[0]; a closure comes next or as a keyword
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            self._prepare_step()
            return None

        def wrapped() -> Any:  # the gradients exist only once the closure has run
            loss = closure()
            self._prepare_step()
            return loss

        if "closure" in kwargs:
            return args, {**kwargs, "closure": wrapped}
        return (args[0], wrapped, *args[2:]), kwargs

    def _prepare_step(self) -> None:
        """Record the asymmetric-noise masks and add the regularizer gradient.

        Both are multiplied by the step's verdict on its gradients (:mod:`.finite`): a step
        with an inf or a NaN gradient gets neither, and a warning at the next death check.
        """
        start = time.perf_counter()
        self._gates = self._finite.gates(self._params)
        self.steering.observe_gradients()  # the loss's alone, before the penalty's
        self._plan = self.noise.plan(self._params)
        cfg, strength = self.config, self.reg_strength_at(self.step)
        if cfg.reg_update == "gradient":
            add_penalty_gradient(
                self._reg_params, cfg.reg, strength, self._weights, self._gates, cfg.polarization_t
            )
        push = strength * cfg.shift_push
        add_shift_push(self._shifts, push, cfg.shift_push_below, self._weights, self._gates,
                       relative=cfg.shift_push_relative)  # fmt: skip
        self.seconds["regularizer"] += time.perf_counter() - start

    def _proximal_step(self) -> None:
        """``reg_update="proximal"``: soft-threshold the scales by ``lr * lambda_t * w``."""
        strength = self.reg_strength_at(self.step)
        if self.config.reg_update != "proximal" or strength == 0.0 or self._gates is None:
            return
        lr = {id(p): g["lr"] for g in self.optimizer.param_groups for p in g["params"]}
        taus = [float(lr.get(id(p), 0.0)) * strength for p in self._reg_params]
        proximal_l1(self._reg_params, taus, self._weights, self._gates)

    def _after_step(self, _opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        start = time.perf_counter()
        self._proximal_step()
        self.seconds["regularizer"] += time.perf_counter() - start
        start = time.perf_counter()
        if self._plan is not None:
            self.noise.add(self._plan, self.noise_std_at(self.step), self._gates)
            self._plan = self._gates = None
        self.seconds["noise"] += time.perf_counter() - start
        start = time.perf_counter()
        self.steering.fade_step(self.step + 1)
        self.seconds["regularizer"] += time.perf_counter() - start
        self.step += 1
        self.costs.step()
        if self.restart is not None:
            self.restart.take(self.step, self.model, self.structure)
        if (
            self.config.dynamic
            and self.step % self.prune_every == 0
            and self.step >= self.config.prune_start
        ):
            self.prune_now()

    def _warn_skipped(self) -> None:
        skipped = self._finite.newly_skipped()
        if skipped:
            warnings.warn(
                f"DemonPruner: non-finite gradients in {skipped} step(s) before step "
                f"{self.step}; those steps got no regularizer and no noise",
                RuntimeWarning,
                stacklevel=3,
            )

    # ----------------------------------------------------------------- public API
    def reg_strength_at(self, step: int) -> float:
        """Return the regularization strength lambda_t at ``step`` (controlled with a target)."""
        return self.config.reg_strength * self.steering.strength(step)

    def noise_std_at(self, step: int) -> float:
        """Return the noise standard deviation sigma_t at ``step``."""
        return self.config.noise_std * self.steering.noise(step)

    def penalty(self) -> float:
        """Return the current regularization term ``lambda_t * R(params)`` (for logging)."""
        strength = self.reg_strength_at(self.step)
        cfg = self.config
        return penalty(self._reg_params, cfg.reg, strength, self._weights, cfg.polarization_t)

    def prune_now(self) -> SurgeryReport:
        """Run a death check on the probe set and remove the dead units now."""
        self._warn_skipped()
        start = time.perf_counter()
        dead = self._find_dead(self.config.death_stats)
        unfadeable = self.steering.settle_fade(dead)
        stale = None
        if self.config.count_stale and self.config.death_stats != "running":
            stale = self._find_dead("running").num_dead
        checked = time.perf_counter()
        report, revived = self._cut(dead)
        if report.removed:
            if self.restart is not None:
                self.restart.cut(self.structure.history[-1])
            self.steering.removed(self.structure.history[-1])
            self.costs.remeasure(self.model)
            self._weights = self.steering.reg_weights(self._reg_params)
        done = time.perf_counter()
        self.seconds["check"] += checked - start
        self.seconds["surgery"] += done - checked
        find = partial(self._find_dead, self.config.death_stats)
        steered = {**self.steering.after_check(self.step, find), "revived": revived}
        if self.restart is not None and self.restart.due(self.steering.controller, self.step):
            steered.update(self.restart.apply(self.step, self.model, self.optimizer))
        if stale is not None:
            steered["dead_running"] = stale
        if unfadeable:
            steered["unfadeable"] = unfadeable
        self._record(report, dead.num_dead, checked - start, done - checked, steered)
        self._last_report = report
        if report.removed:
            for callback in self.callbacks:
                callback(self, report)
        return report

    def finalize(self) -> SurgeryReport:
        """Run the last death check and removal (also when ``dynamic=False``).

        When a check already ran at this step (the last step was a multiple of
        ``prune_every``), its report is returned: removal is exact, so a second check on an
        unchanged model would find nothing new.
        """
        if self._last_report is not None and self.history[-1]["step"] == self.step:
            return self._last_report
        return self.prune_now()

    def summary(self) -> PrunerSummary:
        """Return neuron/weight sparsity, FLOPs ratios and time spent, so far."""
        units, params = self.structure.num_units, count_trainable(self.model)
        initial = self.costs.initial
        return PrunerSummary(
            steps=self.step,
            events=len(self.history),
            removals=sum(1 for e in self.history if e["removed"]),
            units_initial=initial["units"],
            units=units,
            params_initial=initial["params"],
            params=params,
            neuron_sparsity=1 - units / initial["units"],
            weight_sparsity=1 - params / initial["params"],
            inference_flops_ratio=self.costs.inference_flops_ratio(),
            train_flops_ratio=self.costs.train_flops_ratio(self.step),
            train_flops=(3 * self.batch_size * self.costs.flops_sum if self.batch_size else None),
            seconds=dict(self.seconds),
            wall_seconds=time.perf_counter() - self._started,
        )

    def add_structure_callback(self, callback: StructureCallback) -> None:
        """Call ``callback(pruner, report)`` after every removal."""
        self.callbacks.append(callback)

    def detach(self) -> None:
        """Remove the optimizer hooks; the pruner then does nothing more on its own."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> DemonPruner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.detach()

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Return the pruner's state: step, noise RNG, history, initial sizes, timings."""
        return {
            "step": self.step,
            "total_steps": self.total_steps,
            "noise": self.noise.state_dict(),
            "history": [dict(e) for e in self.history],
            **self.costs.state_dict(),
            "seconds": dict(self.seconds),
            "widths": self.structure.widths(),
            "removals": [dict(e) for e in self.structure.history],
            "config": self.config.to_dict(),
            "steering": self.steering.state_dict(),
            **({"restart": self.restart.state_dict()} if self.restart is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (load the model's checkpoint first).

        The channel groups are traced again on the (already reshaped) model and must have
        the widths recorded in the state.
        """
        self.structure = self._build_structure()
        widths = self.structure.widths()
        if widths != state["widths"]:
            raise DempError(
                "the pruner state does not match the model's current widths "
                f"({first_difference(widths, state['widths'])}); load the model checkpoint "
                "saved with it before the pruner state"
            )
        self.structure.history = [dict(e) for e in state.get("removals", [])]
        self.step = int(state["step"])
        self.total_steps = int(state["total_steps"])
        self.noise.load_state_dict(state["noise"])
        self.history = [dict(e) for e in state["history"]]
        self.seconds = {k: float(state["seconds"].get(k, 0.0)) for k in PHASES}
        self.costs.load_state_dict(state, self.model)
        self.steering.rebind(self.structure)
        self.steering.load_state_dict(state.get("steering", {}))
        if self.restart is not None:
            self.restart.load_state_dict(state.get("restart", {}), self.model, self.structure)
        self._weights = self.steering.reg_weights(self._reg_params)

    # ----------------------------------------------------------------- helpers
    def _find_dead(self, stats: str, spreads: bool = False) -> DeadUnits:
        return find_dead(
            self.model,
            self._probe,
            criterion=self.config.criterion,
            eps=self.config.eps,
            max_examples=None,
            structure=self.structure,
            sync=self.sync,
            stats=stats,  # type: ignore[arg-type]
            spreads=spreads,
        )

    def _cut(self, dead: DeadUnits) -> tuple[SurgeryReport, int]:
        """Revive the dead units a target keeps (DemP+), then remove the others."""
        removed = self.steering.plan(dead)
        surplus = self.steering.surplus(dead, removed)
        masks = dead.removal_masks()
        revived = revive_units(self.model, self.structure, surplus, self.optimizer, masks)
        scores = dead.unit_scores()
        report = remove_units(
            self.model, removed, self.optimizer, structure=self.structure, scores=scores
        )
        return report, revived

    def _build_structure(self) -> Structure:
        return build_checked_structure(self.model, self._probe, self.config.structure_options())

    def _record(
        self, report: SurgeryReport, dead: int, check_s: float, cut_s: float, steered: dict
    ) -> None:
        now = time.perf_counter()
        self.history.append(
            {
                "step": self.step,
                "dead": dead,
                "removed": report.removed,
                "widths": self.structure.widths(),
                "units": self.structure.num_units,
                "params": report.params_after,
                "flops": self.costs.flops_now,
                "seconds_since_last": now - self._last_event,
                "check_seconds": check_s,
                "surgery_seconds": cut_s,
                "lambda": self.reg_strength_at(self.step),
                **steered,
            }
        )
        self._last_event = now
