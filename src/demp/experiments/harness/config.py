"""TrainConfig: every option of a harness run, with TOML files and CLI overrides.

A TOML file holds top-level run options and a ``[demp]`` table of
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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...algorithm.config import DemPConfig
from ...errors import DempError
from .lr import LrSchedule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Method = Literal["dense", "demp", "snap", "cropit-s", "earlysnap", "earlycrop-s", "slimming"]
METHODS = ("dense", "demp", "snap", "cropit-s", "earlysnap", "earlycrop-s", "slimming")
OptimizerName = Literal["adam", "adamw", "sgdm"]


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run of the harness."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None
    model: str = "resnet18"
    width: float = 0.25
    activation: str = "relu"
    method: Method = "demp"
    optimizer: OptimizerName = "adam"
    lr: float = 5e-3
    lr_schedule: LrSchedule = "cosine"
    lr_decay_factor: float = 0.2
    lr_decay_every: float = 0.3
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: float | None = None
    steps: int | None = None
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    log_every: int = 25
    monitor_every: int | None = None
    target: float = 0.5
    score_batches: int = 10
    early_variant: Literal["rachwan", "demp"] = "rachwan"
    early_deadline: int = 4
    slim_lambda: float = 1e-4
    slim_prune_at: float = 0.5
    demp: DemPConfig = field(default_factory=DemPConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise DempError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0.0 <= self.target < 1.0:
            raise DempError(f"target neuron sparsity must be in [0, 1), got {self.target}")
        if self.early_variant not in ("rachwan", "demp"):
            raise DempError(f"early_variant must be rachwan or demp, got {self.early_variant!r}")
        if not 0.0 < self.slim_prune_at <= 1.0:
            raise DempError(f"slim_prune_at must be in (0, 1], got {self.slim_prune_at}")
        if self.optimizer not in ("adam", "adamw", "sgdm"):
            raise DempError(f"optimizer must be adam, adamw or sgdm, got {self.optimizer!r}")
        if self.lr_schedule not in ("constant", "step", "one-cycle", "cosine"):
            raise DempError(f"unknown lr schedule {self.lr_schedule!r}")
        if self.steps is None and self.epochs is None:
            raise DempError("give the training length: steps or epochs")
        for name in ("lr", "batch_size", "log_every"):
            if getattr(self, name) <= 0:
                raise DempError(f"{name} must be positive, got {getattr(self, name)}")

    def total_steps(self, steps_per_epoch: int) -> int:
        """Steps of the run: ``steps`` if given, else ``epochs`` x steps per epoch."""
        if self.steps is not None:
            return int(self.steps)
        return max(1, round(float(self.epochs) * steps_per_epoch))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (``demp`` as a nested dict)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "demp"}
        out["demp"] = self.demp.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from :meth:`to_dict` output or a TOML table (unknown keys are an error)."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DempError(f"unknown run options: {unknown}")
        try:
            demp = DemPConfig.from_dict(data.pop("demp", {}) or {})
            return cls(**data, demp=demp)
        except (TypeError, ValueError) as err:
            raise DempError(f"invalid run options: {err}") from err


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
