"""DemPConfig: every option of the DemP algorithm, as one typed, frozen dataclass."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..death.criteria import Criterion
from ..death.norm_stats import NORM_STATS, NormStats
from ..schedules import Constant, CosineDecay, OneCycle, Schedule, Warmup
from ..structure import StructureOptions
from ..structure.costs import METRICS, Metric
from .noise import NoiseKind
from .regularizer import POLARIZATION_T, REG_KINDS, RegKind, RegTarget, RegWeighting

_SCHEDULES = {c.__name__: c for c in (OneCycle, Constant, Warmup, CosineDecay)}
RegUpdate = Literal["gradient", "proximal"]
Variant = Literal["auto", "plus", "paper"]
FadeScore = Literal["scale", "output", "taylor"]
FADE_SCORES = ("scale", "output", "taylor")
VARIANTS: dict[str, dict[str, Any]] = {
    # Algorithm 1 as the paper writes it (and as the authors' code runs the death check)
    "paper": {
        "reg_strength": 1e-3,
        "target_max_scale": 64.0,
        "target_reach": 0.3,
        "death_stats": "running",
        "shift_push": 0.0,
        "target_deadline": 1.0,
        "fade": False,
        "restart": False,
        "min_fraction": 0.0,
    },
    # DemP+: the best measured on the long preset (benchmarks/RESULTS-demp.md)
    "plus": {
        "reg_strength": 5e-2,
        "target_max_scale": 3.0,
        "target_reach": 0.15,
        "death_stats": "batch",
        "shift_push": 1.0,
        "target_deadline": 0.6,
        "fade": True,
        "restart": True,
        "min_fraction": 0.1,
    },
}


def _opt(
    default: Any, help_text: str, *, choices: tuple[str, ...] | None = None, flag: str | None = None
) -> Any:
    """A DemPConfig field with its command-line flag: help, choices, flag name."""
    return field(default=default, metadata={"help": help_text, "choices": choices, "flag": flag})


@dataclass(frozen=True)
class DemPConfig:
    """Options of :class:`~demp.DemonPruner` (paper Algorithm 1).

    Attributes:
        variant: Which defaults the options marked *variant* below take when not given:
            ``"paper"`` (Algorithm 1 as the paper writes it: running statistics, no
            shift push, no deadline), ``"plus"`` (DemP+, the best measured:
            benchmarks/RESULTS-demp.md) or ``"auto"`` (default: ``"plus"`` when
            ``target_sparsity`` is set, else ``"paper"``). :data:`VARIANTS` has the values;
            an option given explicitly always wins.
        reg: ``"l1"`` (Lasso, default), ``"l2"``, ``"polarization"`` (per layer, selects
            units inside a layer: :mod:`demp.algorithm.regularizer`) or ``"off"``.
        reg_target: ``"norm_scale"`` (normalization scales, the paper's default) or ``"all"``.
        reg_strength: Peak regularization strength lambda. At CPU scale (Fashion-MNIST,
            ResNet-18 width 16, Adam lr 5e-3, 1250 steps) 1e-3 / 3e-3 / 1e-2 gave about
            37 / 69 / 84 % weight sparsity (FACTS §6); tune per setup (*variant*: 1e-3
            for the paper's algorithm, 5e-2 for DemP+, the controller's measured start).
        noise: ``"asymmetric"`` (default), ``"symmetric"`` or ``"off"``.
        noise_std: Peak noise standard deviation (the paper's "variance 5e-5" is used as a
            standard deviation in the authors' code; see :mod:`demp.algorithm.noise`).
        schedule: Multiplier of both strengths over training (default :class:`OneCycle`).
        noise_schedule: A different schedule for the noise (None: ``schedule``).
        prune_every: Steps between death checks (None: 5 % of ``total_steps``). There is
            never a check at step 0 (eval-mode BatchNorm with fresh statistics makes live
            units look dead, FACTS §6).
        prune_start: No dynamic death check before this step (paper §4.3: in a ViT the last
            MLP block's units die early and later revive, so pruning starts after that).
        dynamic: Remove dead units during training (False: only at ``finalize()``).
        probe_size: Probe examples kept for the death checks (512 in the paper).
        criterion: Death test (see :func:`demp.find_dead`); ``eps`` its threshold.
        min_units: Never leave a group with fewer units.
        round_to: Keep group widths at multiples of this.
        ignored_layers: Module paths whose outputs are never cut (output layers always are).
        allow_inexact_norm: Accept LayerNorm/GroupNorm over pruned channels.
        seed: Seed of the noise generator.
        target_sparsity: DemP+: the sparsity to reach (None: the plain algorithm, whose
            size follows ``reg_strength``). A feedback controller then drives the strength
            (:mod:`demp.algorithm.controller`), removal never cuts past the target, and
            ``reg_strength`` is only the controller's starting point.
        target_metric: What ``target_sparsity`` measures: ``"weight"`` (1 - trainable
            parameters / initial), ``"neuron"`` (units of the prunable groups) or
            ``"flops"`` (1 - forward FLOPs / initial).
        target_reach: The controller's reference sparsity rises linearly from 0 at step 0
            to the target at this fraction of the run (deaths must come while the
            learning rate is high) (*variant*: 0.3 for the paper's algorithm, 0.15 for
            DemP+: the final architecture then trains longer; at 95 % on the long preset
            +1.6 points over six seeds, level at 80-90 %, RESULTS-demp.md).
        target_release: Once the target is reached, the strength (and the noise) decay to
            zero along a half cosine over this fraction of the run.
        target_max_scale: Ceiling of the controller's multiplier of ``reg_strength``
            (*variant*: 64 for the paper's algorithm, 3 for DemP+: a strength of 0.15 on the
            long preset; above 0.3 the model was measured to collapse, and with the fade
            taking over at the ceiling 3 beat 6 at 90 and 95 %, RESULTS-demp.md). At
            the ceiling, three check intervals without progress give the target up: the strength
            is released and the run ends short of the target, with a note (a strength far
            above the loss gradients shrinks every unit, useful ones included:
            RESULTS-target.md, "Windup").
        target_deadline: DemP+: a target not reached by this fraction of the run is given
            up there (the strength released, the run ends short and says so); 1.0: never
            (*variant*).
        fade: DemP+: when deaths lag the controller's reference with the strength at its
            ceiling, and once when the target is given up, fade the weakest units (by
            ``fade_score``, relative to their layer) out over one check interval (scale and
            shift, and a post-add unit's shortcut row, to exactly zero), as many as close
            the lag (:mod:`demp.algorithm.fade`)
            (*variant*: on for DemP+).
        fade_score: What the fade ranks units by, relative to their group: ``"output"``
            (the standard deviation of the unit's output over the probe, measured by a
            death check when a fade is planned: what it tells the next layer, a post-add
            unit's skip input included; measured best, RESULTS-demp.md), ``"scale"``
            (the norm's ``|gamma|``; what DemP+ used before the option existed: a config
            written then, resumed now, ranks by output unless it is set) or ``"taylor"``
            (what the loss would lose to first order if the unit were faded, squared and
            averaged over the training steps of the last check interval, not relative to
            the layer: :mod:`demp.algorithm.taylor`).
        fade_per_cost: DemP+: the fade ranks units by their score over their cost in the
            target's metric (what removing one saves; the greedy answer to "lose the least
            per unit saved"), so that cheap early layers keep more units.
        reg_weighting: DemP+: multiply each normalization scale's penalty by the cost of
            its unit in ``"params"`` or ``"flops"`` (what removing it would save, its
            consumers' input columns included), normalized to mean 1 and recomputed after
            every removal (MorphNet's resource weighting); ``"uniform"``: the paper's
            Lasso(gamma); ``"auto"`` (default): the cost in the target's metric when a
            target is set (weight: ``"params"``, flops: ``"flops"``, neuron:
            ``"uniform"``), else ``"uniform"`` (see :attr:`weighting`).
        min_fraction: DemP+: never cut a group below this fraction of its initial width
            (a floor next to ``min_units``) (*variant*: 0.1 for DemP+: at 95 % on the long
            preset it gained a point, RESULTS-demp.md, "A floor"; 0 for the paper's).
        revive: DemP+: with a target, dead units the removal keeps (past the target, or
            by a floor) are revived with zero fan-out, exactly
            (:mod:`demp.algorithm.revival`); False leaves them dead.
        death_stats: The BatchNorm statistics the death check judges with
            (:mod:`demp.death.norm_stats`): ``"running"`` (eval mode, the paper's),
            ``"batch"`` (each probe batch's own, as in training: a removal leaves the
            train-mode output on the probe unchanged) or ``"reestimate"`` (*variant*).
        count_stale: With ``death_stats`` other than ``"running"``, also count at each
            check the units the running statistics would have called dead (one more probe
            pass; ``history[i]["dead_running"]``).
        shift_push: Push the shifts (BatchNorm biases) of shrunken units below zero with
            this multiple of lambda_t, so that they die instead of turning linear
            (:mod:`demp.algorithm.shift_push`); 0 is off (*variant*).
        shift_push_below: The push acts on units whose ``|gamma|`` is below this.
        shift_push_relative: The push also acts on units whose ``|gamma|`` is below this
            fraction of the root mean square of their layer's scales (0: off). After a
            BatchNorm downstream only a scale's size relative to its layer's matters.
        polarization_t: ``t`` of ``reg="polarization"`` (> 1: every scale shrinks).
        reg_update: ``"gradient"`` (the penalty's gradient goes through the optimizer, the
            paper's) or ``"proximal"`` (``reg="l1"`` only: a soft-threshold of the scales by
            ``lr * lambda_t * w`` after each optimizer step, decoupled from Adam).
        restart: DemP+ (with ``target_sparsity``; without one it never fires): once the
            target is reached (or given up) and the strength released to zero, at the next
            death check clear the optimizer's state and record the step
            (``pruner.restart.at``); the loop starts its learning-rate schedule again there,
            over the steps left (:mod:`demp.algorithm.restart`; ``demp train`` does; your
            loop reads ``pruner.restart.position(step, total_steps)``) (*variant*: on for
            DemP+: +1.8 points at 95 %, RESULTS-demp.md). A run saved before the option
            existed and resumed now restarts at its next check.
        rewind: With ``restart``: also return the kept units to their weights at this
            fraction of the run (0: the initial ones; None: keep the trained weights, the
            measured best).
    """

    # fmt: off
    reg: RegKind = _opt("l1", "DemP regularizer (polarization: per layer, selects units)", choices=REG_KINDS)
    reg_target: RegTarget = _opt("norm_scale", "parameters regularized", choices=("norm_scale", "all"))
    reg_strength: float | None = _opt(None, "peak regularization strength lambda (DemP+: the controller's start)")
    noise: NoiseKind = _opt("asymmetric", "DemP noise", choices=("asymmetric", "symmetric", "off"))
    noise_std: float = _opt(5e-5, "peak noise standard deviation")
    schedule: Schedule = field(default_factory=OneCycle, metadata={"cli": "--schedule/--warmup"})
    noise_schedule: Schedule | None = field(default=None, metadata={"cli": None})
    prune_every: int | None = _opt(None, "steps between death checks (default 5%% of the run)")
    prune_start: int = _opt(0, "no death check before this step (paper §4.3, ViT)")
    dynamic: bool = field(default=True, metadata={"cli": "--dynamic/--no-dynamic"})
    probe_size: int = _opt(512, "probe examples for death checks")
    criterion: Criterion = _opt("zero", "death criterion", choices=("zero", "eps", "nonpositive"))
    eps: float | None = _opt(None, "death criterion threshold")
    min_units: int = _opt(1, "never leave a group with fewer units")
    round_to: int | None = _opt(None, "keep widths at multiples of this")
    ignored_layers: tuple[str, ...] = field(default=(), metadata={"cli": "--ignored-layers"})
    allow_inexact_norm: bool = field(default=False, metadata={"cli": "--allow-inexact-norm"})
    seed: int = _opt(0, "seed of the DemP noise generator", flag="--demp-seed")
    target_sparsity: float | None = _opt(None, "DemP+: sparsity to reach in --target-metric (a controller drives lambda)")
    target_metric: Metric = field(default="weight", metadata={"cli": "--target-metric"})
    target_reach: float | None = _opt(None, "DemP+: fraction of the run by which the target should be reached")
    target_release: float = _opt(0.05, "DemP+: fraction of the run over which lambda decays once reached")
    target_max_scale: float | None = _opt(None, "DemP+: ceiling of the controller's multiplier of --reg-strength")
    target_deadline: float | None = _opt(None, "DemP+: fraction of the run after which a target not reached is given up (1: never)")
    fade: bool | None = _opt(None, "DemP+: fade the weakest units out when deaths lag with lambda at its ceiling (true/false)")
    fade_score: FadeScore = _opt("output", "DemP+: what the fade ranks units by, relative to their layer (output: the unit's standard deviation over the probe; scale: |gamma|)", choices=FADE_SCORES)
    fade_per_cost: bool = _opt(False, "DemP+: the fade ranks units by score over their cost in the target's metric (true/false)")
    reg_weighting: RegWeighting = _opt("auto", "DemP+: weigh each scale's penalty by its unit's cost (auto: in the target's metric when a target is set, else uniform)", choices=("auto", "uniform", "params", "flops"))
    min_fraction: float | None = _opt(None, "DemP+: never cut a group below this fraction of its width")
    revive: bool = _opt(True, "DemP+: revive the dead units a target keeps, with zero fan-out (true/false)")
    death_stats: NormStats | None = _opt(None, "DemP: BatchNorm statistics of the death check (running: eval mode; batch: the probe batch's, as in training; reestimate: recomputed on the probe)", choices=NORM_STATS)
    count_stale: bool = _opt(True, "DemP: also count the units the running statistics would call dead (true/false)")
    shift_push: float | None = _opt(None, "DemP: push the shifts of shrunken units below zero with this multiple of lambda (0: off)")
    shift_push_below: float = _opt(1e-3, "DemP: the push acts on units with |gamma| below this")
    shift_push_relative: float = _opt(0.0, "DemP: the push also acts on units with |gamma| below this fraction of their layer's RMS |gamma| (0: off)")
    polarization_t: float = _opt(POLARIZATION_T, "DemP: t of --reg polarization")
    reg_update: RegUpdate = _opt("gradient", "DemP: the penalty as a gradient through the optimizer, or a proximal soft-threshold after each step (l1 only)", choices=("gradient", "proximal"))
    restart: bool | None = _opt(None, "DemP+: once the target is reached and lambda released, start the learning-rate schedule again over the rest of the run, optimizer state cleared (true/false)")
    rewind: float | None = _opt(None, "DemP+: at the restart, also return the kept units to their weights at this fraction of the run (0: the initial ones)")
    variant: Variant = _opt("auto", "DemP: defaults of the remedies (auto: plus with --target-sparsity, paper without; paper: Algorithm 1 as written)", choices=("auto", "plus", "paper"))
    # fmt: on

    def __post_init__(self) -> None:
        _choice("variant", self.variant, ("auto", *VARIANTS))
        for name, value in VARIANTS[self.resolved_variant].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        _choice("reg", self.reg, REG_KINDS)
        _choice("death_stats", self.death_stats, NORM_STATS)
        _choice("reg_update", self.reg_update, ("gradient", "proximal"))
        if self.reg_update == "proximal" and self.reg != "l1":
            raise ValueError(f"DemPConfig.reg_update='proximal' needs reg='l1', got {self.reg!r}")
        _choice("reg_target", self.reg_target, ("norm_scale", "all"))
        _choice("noise", self.noise, ("asymmetric", "symmetric", "off"))
        _choice("criterion", self.criterion, ("zero", "eps", "nonpositive"))
        _choice("target_metric", self.target_metric, METRICS)
        _choice("reg_weighting", self.reg_weighting, ("auto", "uniform", "params", "flops"))
        _choice("fade_score", self.fade_score, FADE_SCORES)
        self._check_steering()
        self._check_numbers()
        for name in ("schedule", "noise_schedule"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ValueError(f"DemPConfig.{name} must be callable (step, total_steps)")
        object.__setattr__(self, "ignored_layers", tuple(self.ignored_layers))

    def _check_numbers(self) -> None:
        """Every numeric option finite, of the right type and in its range; flags booleans."""
        for name in _BOOLEANS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"DemPConfig.{name} must be true or false, got {getattr(self, name)!r}"
                )
        for name in _NON_NEGATIVE:
            _number(name, getattr(self, name), 0.0)
        if self.eps is not None:
            _number("eps", self.eps, 0.0)
        for name, low in _INTEGERS.items():
            value = getattr(self, name)
            if value is None and name in ("prune_every", "round_to"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"DemPConfig.{name} must be an integer >= {low}, got {value!r}")

    def _check_steering(self) -> None:
        target = self.target_sparsity
        if target is not None and not 0.0 < target < 1.0:
            raise ValueError(f"DemPConfig.target_sparsity must be in (0, 1), got {target}")
        if target is not None and not self.dynamic:
            raise ValueError("DemPConfig.target_sparsity needs dynamic=True (it steers removals)")
        for name in ("target_reach", "target_release", "target_deadline"):
            _number(name, getattr(self, name), 0.0)
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"DemPConfig.{name} must be in (0, 1], got {getattr(self, name)}")
        _number("target_max_scale", self.target_max_scale, 1.0)
        if self.rewind is not None:
            _number("rewind", self.rewind, 0.0)
            if self.rewind >= 1.0 or target is None or not self.restart:
                raise ValueError(
                    "DemPConfig.rewind needs target_sparsity, restart=True and a fraction in "
                    f"[0, 1), got {self.rewind!r}"
                )
        _number("min_fraction", self.min_fraction, 0.0)
        if not self.min_fraction < 1.0:
            raise ValueError(f"DemPConfig.min_fraction must be in [0, 1), got {self.min_fraction}")
        if self.reg_weighting not in ("auto", "uniform") and self.reg_target != "norm_scale":
            raise ValueError(
                "DemPConfig.reg_weighting weighs normalization scales: it needs "
                f"reg_target='norm_scale', got {self.reg_target!r}"
            )

    @property
    def resolved_variant(self) -> str:
        """``variant`` with ``"auto"`` resolved: ``"plus"`` with a target, else ``"paper"``."""
        if self.variant != "auto":
            return self.variant
        return "plus" if self.target_sparsity is not None else "paper"

    @property
    def weighting(self) -> str:
        """The penalty weighting in force: ``reg_weighting`` with ``"auto"`` resolved.

        ``"auto"`` weighs each scale by its unit's cost in the target's metric, the
        measured best for weight targets (RESULTS-target.md: ahead of uniform at 90 and
        95 % weight sparsity, level below); without a target, or with ``reg_target="all"``,
        it is the paper's uniform penalty.
        """
        if self.reg_weighting != "auto":
            return self.reg_weighting
        if self.target_sparsity is None or self.reg_target != "norm_scale":
            return "uniform"
        return {"weight": "params", "flops": "flops", "neuron": "uniform"}[self.target_metric]

    def structure_options(self) -> StructureOptions:
        """The options of the channel-group tracing these settings ask for."""
        return StructureOptions.of(self.ignored_layers, self.allow_inexact_norm)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable dict (schedules as ``{"type": name, **fields}``)."""
        out = asdict(self)
        for name in ("schedule", "noise_schedule"):
            out[name] = _schedule_to_dict(getattr(self, name))
        out["ignored_layers"] = list(self.ignored_layers)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DemPConfig:
        """Build a config from :meth:`to_dict` output (unknown keys are an error)."""
        data = dict(data)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown DemPConfig options: {sorted(unknown)}")
        for name in ("schedule", "noise_schedule"):
            if isinstance(data.get(name), dict):
                data[name] = _schedule_from_dict(data[name])
        if "ignored_layers" in data:
            data["ignored_layers"] = tuple(data["ignored_layers"])
        return cls(**data)


_NON_NEGATIVE = ("reg_strength", "noise_std", "shift_push", "shift_push_below",
                 "shift_push_relative", "polarization_t")  # fmt: skip
_BOOLEANS = ("dynamic", "allow_inexact_norm", "fade", "revive", "count_stale", "restart",
             "fade_per_cost")  # fmt: skip
_INTEGERS = {"prune_every": 1, "prune_start": 0, "probe_size": 1, "min_units": 1, "round_to": 1,
             "seed": 0}  # fmt: skip


def _number(name: str, value: object, low: float) -> None:
    """``value`` must be a finite real number >= ``low`` (a clear error naming the option)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value >= low):  # type: ignore[arg-type]
        raise ValueError(f"DemPConfig.{name} must be a finite number >= {low:g}, got {value!r}")


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"DemPConfig.{name} must be one of {allowed}, got {value!r}")


def _schedule_to_dict(schedule: Schedule | None) -> dict[str, Any] | None:
    if schedule is None:
        return None
    kind = type(schedule).__name__
    if kind not in _SCHEDULES:
        return {"type": "custom", "repr": repr(schedule)}
    return {"type": kind, **asdict(schedule)}  # type: ignore[call-overload]


def _schedule_from_dict(data: dict[str, Any]) -> Schedule:
    data = dict(data)
    kind = data.pop("type", None)
    if kind not in _SCHEDULES:
        raise ValueError(f"cannot rebuild schedule of type {kind!r}; pass it in code")
    return _SCHEDULES[kind](**data)
