"""TrainConfig: every option of a harness run, with TOML files and CLI overrides.

A TOML file holds top-level run options (the options of the registered methods, such as
``target``, are top-level too: :mod:`demp.methods.registry`) and a ``[demp]`` table of
:class:`~demp.DemPConfig` options::

    dataset = "fashion-mnist"
    model = "resnet18"
    width = 0.25
    method = "demp"
    steps = 1250
    [demp]
    reg_strength = 3e-3
    prune_every = 125
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...algorithm.config import DemPConfig
from ...errors import DempError
from ...methods import get_method, option_fields
from ...structure import StructureOptions
from ..models.registry import MODELS
from .lr import LR_SCHEDULES
from .optim import OPTIMIZERS

RESIDUAL_MODES = ("auto", "coupled", "per-block")
"""``residual``: one channel group per residual stream (as traced), or per block
(:func:`demp.decouple_residuals`, applied right after the model is built); ``auto``:
per-block for DemP on the zoo's 2-D ResNets (measured at least as good as coupled,
benchmarks/RESULTS-target.md), coupled otherwise (the baselines keep their papers' groups)."""

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# options every run uses to watch its units, whatever its method: the death checks' probe
# and criterion, the tracing of the channel groups. DemP's DemPConfig takes them from the run.
RUN_WIDE = ("probe_size", "criterion", "eps", "ignored_layers", "allow_inexact_norm")
_DEMP_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DemPConfig) if f.name in RUN_WIDE}


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run of the harness (the run-wide ones: :data:`RUN_WIDE`)."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None
    model: str = "resnet18"
    width: float = 0.25
    activation: str = "relu"
    residual: str = "auto"
    method: str = "demp"
    optimizer: str = "adam"
    lr: float = 5e-3
    lr_schedule: str = "cosine"
    lr_decay_factor: float = 0.2
    lr_decay_every: float = 0.3
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: float | None = None
    steps: int | None = None
    batch_size: int = 128
    seed: int = 0
    data_seed: int = 0
    device: str = "auto"
    threads: int | None = None
    compile: bool = False
    log_every: int = 25
    monitor_every: int | None = None
    eval_every: int = 1
    probe_size: int = _DEMP_DEFAULTS["probe_size"]
    criterion: str = _DEMP_DEFAULTS["criterion"]
    eps: float | None = _DEMP_DEFAULTS["eps"]
    ignored_layers: tuple[str, ...] = _DEMP_DEFAULTS["ignored_layers"]
    allow_inexact_norm: bool = _DEMP_DEFAULTS["allow_inexact_norm"]
    demp: DemPConfig = field(default_factory=DemPConfig)
    method_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.method_options) - set(option_fields()))
        if unknown:
            raise DempError(f"unknown run options: {unknown}")
        object.__setattr__(self, "ignored_layers", tuple(self.ignored_layers))
        if not isinstance(self.compile, bool):
            raise DempError(f"compile must be true or false, got {self.compile!r}")
        try:  # the run-wide options, checked as DemP checks them
            DemPConfig(**self.run_wide())
        except (TypeError, ValueError) as err:
            raise DempError(f"invalid run options: {err}") from err
        self.method_config()  # validates the method's name and options
        if self.optimizer not in tuple(OPTIMIZERS):
            raise DempError(
                f"optimizer must be one of {', '.join(tuple(OPTIMIZERS))}, got {self.optimizer!r}"
            )
        if self.residual not in RESIDUAL_MODES:
            raise DempError(
                f"residual must be one of {', '.join(RESIDUAL_MODES)}, got {self.residual!r}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise DempError(
                f"lr schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if self.steps is None and self.epochs is None:
            raise DempError("give the training length: steps or epochs")
        _check_numbers(self)

    def residual_mode(self) -> str:
        """``residual`` with ``auto`` resolved: ``"coupled"`` or ``"per-block"``."""
        if self.residual != "auto":
            return self.residual
        demp_run = get_method(self.method).demp_config
        spec = MODELS.get(self.model)
        return "per-block" if demp_run and spec is not None and spec.per_block else "coupled"

    def method_config(self) -> Any:
        """The options of the run's method (its frozen dataclass, or the DemPConfig).

        DemP's carries the run-wide options (:data:`RUN_WIDE`) of this run.
        """
        spec = get_method(self.method)
        if spec.demp_config:
            return dataclasses.replace(self.demp, **self.run_wide())
        return spec.make_options(self.method_options)

    def run_wide(self) -> dict[str, Any]:
        """The run-wide options (:data:`RUN_WIDE`) by name."""
        return {name: getattr(self, name) for name in RUN_WIDE}

    def structure_options(self) -> StructureOptions:
        """How the run traces its channel groups (ignored layers, inexact norms)."""
        return StructureOptions.of(self.ignored_layers, self.allow_inexact_norm)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Steps of the run: ``steps`` if given, else ``epochs`` x steps per epoch."""
        if self.steps is not None:
            return int(self.steps)
        return max(1, round(float(self.epochs) * steps_per_epoch))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form, ``demp`` as a nested dict.

        The method's options are flat: every option of the run's method (its defaults
        included), then any other option given.
        """
        nested = ("demp", "method_options")
        fields = [f.name for f in dataclasses.fields(self) if f.name not in nested]
        out = {name: getattr(self, name) for name in fields}
        options = self.method_config()
        if not get_method(self.method).demp_config and options is not None:
            out.update(dataclasses.asdict(options))
        out.update({k: v for k, v in self.method_options.items() if k not in out})
        out["ignored_layers"] = list(self.ignored_layers)
        out["demp"] = {k: v for k, v in self.demp.to_dict().items() if k not in RUN_WIDE}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from :meth:`to_dict` output or a TOML table (unknown keys are an error)."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)} - {"method_options"}
        methods = set(option_fields())
        unknown = sorted(set(data) - known - methods)
        if unknown:
            raise DempError(f"unknown run options: {unknown}")
        options = {k: data.pop(k) for k in list(data) if k in methods and k not in known}
        demp_table = _demp_table(data, options)
        _move_run_wide(data, demp_table)
        try:
            demp = DemPConfig.from_dict(demp_table)
            return cls(**data, demp=demp, method_options=options)
        except DempError:  # already says what is wrong (a ValueError too)
            raise
        except (TypeError, ValueError) as err:
            raise DempError(f"invalid run options: {err}") from err


# the methods' options that DemP takes as DemPConfig fields: --target and --target-metric
SHARED_WITH_DEMP = {"target": "target_sparsity", "target_metric": "target_metric"}


def _move_run_wide(data: dict[str, Any], table: dict[str, Any]) -> None:
    """Run-wide options given in the ``demp`` table (configs before they moved) go up."""
    for name in RUN_WIDE:
        if name in table:
            value = table.pop(name)
            if data.setdefault(name, value) != value:
                raise DempError(f"{name} given twice: {data[name]} and {value} in [demp]")
    if "ignored_layers" in data:
        data["ignored_layers"] = tuple(data["ignored_layers"])


def _demp_table(data: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The run's ``demp`` table, with the shared options of a DemP run moved into it."""
    table = dict(data.pop("demp", {}) or {})
    if not get_method(data.get("method", TrainConfig.method)).demp_config:
        return table
    for option, name in SHARED_WITH_DEMP.items():  # one --target for every method
        if option in options:
            value = options.pop(option)
            if table.setdefault(name, value) != value:
                flag = "--" + option.replace("_", "-")
                raise DempError(f"{flag} {value} and DemP's {name} {table[name]} disagree")
    return table


# option -> (kind, lowest, highest, lowest allowed itself); None values skip the check
_NUMBERS: dict[str, tuple[str, float, float, bool]] = {
    "lr": ("real", 0.0, math.inf, False), "weight_decay": ("real", 0.0, math.inf, True),
    "momentum": ("real", 0.0, 1.0, True), "lr_decay_factor": ("real", 0.0, 1.0, False),
    "lr_decay_every": ("real", 0.0, 1.0, False), "width": ("real", 0.0, math.inf, False),
    "epochs": ("real", 0.0, math.inf, False), "steps": ("int", 1, math.inf, True),
    "batch_size": ("int", 1, math.inf, True), "log_every": ("int", 1, math.inf, True),
    "eval_every": ("int", 1, math.inf, True), "monitor_every": ("int", 1, math.inf, True),
    "threads": ("int", 1, math.inf, True),
    "train_size": ("int", 1, math.inf, True), "test_size": ("int", 1, math.inf, True),
    "seed": ("int", 0, math.inf, True), "data_seed": ("int", 0, math.inf, True),
}  # fmt: skip


def _check_numbers(config: TrainConfig) -> None:
    """Every numeric run option finite, of its type and in its range, or a one-line error."""
    for name, (kind, low, high, closed) in _NUMBERS.items():
        value = getattr(config, name)
        if value is None:
            continue
        real = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = real and math.isfinite(value) and (value >= low if closed else value > low)
        ok = ok and value <= high and (kind == "real" or float(value).is_integer())
        if not ok:
            what = "an integer" if kind == "int" else "a finite number"
            bound = f"{'>=' if closed else '>'} {low:g}" + (
                f" and <= {high:g}" if high < math.inf else ""
            )
            flag = "--" + name.replace("_", "-")
            raise DempError(f"{name} ({flag}) must be {what} {bound}, got {value!r}")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML run file into a dict, with a clear error if it is unreadable."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as err:
        raise DempError(f"cannot read config file {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise DempError(f"config file {path} is not valid TOML: {err}") from err


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overrides`` applied (one level deep into ``demp``)."""
    out = dict(base)
    for key, value in overrides.items():
        if key == "demp":
            out["demp"] = {**(out.get("demp") or {}), **value}
        else:
            out[key] = value
    return out
