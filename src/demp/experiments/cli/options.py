"""Command-line options of ``demp train``: one row per option, mapped onto the configs."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from ...algorithm.config import VARIANTS, DemPConfig
from ...methods import method_names, option_fields
from ...schedules import Constant, CosineDecay, OneCycle, Warmup
from ..data import DATASETS
from ..harness.config import RESIDUAL_MODES, RUN_WIDE, TrainConfig
from ..harness.lr import LR_SCHEDULES
from ..harness.optim import OPTIMIZERS
from ..models import ACTIVATIONS, MODELS


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also yes/no, 1/0) for a method's boolean option."""
    value = text.strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


# (flag, section, key, type, choices, help); section None = run option, "demp" = DemPConfig
RUN_OPTIONS: list[tuple[str, str | None, str, Any, tuple | None, str]] = [
    ("--dataset", None, "dataset", str, DATASETS, "dataset (the registry demp.experiments.data.DATASETS)"),
    ("--data-dir", None, "data_dir", str, None, "folder of the dataset files"),
    ("--train-size", None, "train_size", int, None, "training examples kept (random subset)"),
    ("--test-size", None, "test_size", int, None, "test examples kept"),
    ("--model", None, "model", str, MODELS, "model (the registry demp.experiments.models.MODELS)"),
    ("--width", None, "width", float, None, "width multiplier (1.0 = standard)"),
    ("--activation", None, "activation", str, ACTIVATIONS, "activation"),
    ("--residual", None, "residual", str, RESIDUAL_MODES, "residual units: one group per stream (coupled) or per block (demp.decouple_residuals); auto: per-block for DemP on the zoo's resnet18/34/50, else coupled"),
    ("--method", None, "method", str, None, "training method (the registered methods)"),
    ("--optimizer", None, "optimizer", str, tuple(OPTIMIZERS), "optimizer"),
    ("--lr", None, "lr", float, None, "learning rate"),
    ("--lr-schedule", None, "lr_schedule", str, LR_SCHEDULES, "learning-rate schedule"),
    ("--lr-decay-factor", None, "lr_decay_factor", float, None, "step schedule: factor"),
    ("--lr-decay-every", None, "lr_decay_every", float, None, "step schedule: period as a fraction of the run"),
    ("--momentum", None, "momentum", float, None, "SGD momentum"),
    ("--weight-decay", None, "weight_decay", float, None, "weight decay"),
    ("--epochs", None, "epochs", float, None, "training length in epochs"),
    ("--steps", None, "steps", int, None, "training length in steps (wins over --epochs)"),
    ("--batch-size", None, "batch_size", int, None, "batch size"),
    ("--seed", None, "seed", int, None, "seed of data order, augmentation and model init"),
    ("--data-seed", None, "data_seed", int, None, "seed of the data itself (training subset, generated datasets), the same for every --seed"),
    ("--device", None, "device", str, None, "auto, cpu, cuda, cuda:1..."),
    ("--threads", None, "threads", int, None, "torch threads (not given: the cores free at the start, or OMP_NUM_THREADS)"),
    ("--log-every", None, "log_every", int, None, "steps between metric lines"),
    ("--monitor-every", None, "monitor_every", int, None, "dense runs: steps between dead-unit counts"),
    ("--eval-every", None, "eval_every", int, None, "epochs between test evaluations (the last step is always evaluated)"),
]  # fmt: skip

COMPILE_HELP = (
    "torch.compile the training forward, recompiled after every cut; the compile time counts "
    "as training time and is reported apart (default: off, eager)"
)

SCHEDULES = {
    "one-cycle": OneCycle,
    "constant": Constant,
    "warmup": Warmup,
    "cosine-decay": CosineDecay,
}


_FLAG_TYPES: dict[str, Callable[[str], Any]] = {
    "int": int, "float": float, "str": str, "bool": parse_bool,
}  # fmt: skip


def flag_type(f: dataclasses.Field) -> Callable[[str], Any]:
    """The argparse type of a method option, from its annotation (``int | None`` -> int)."""
    annotation = f.type.__name__ if isinstance(f.type, type) else str(f.type)  # or "X | None"
    names = [part.strip() for part in annotation.split("|") if part.strip() != "None"]
    return _FLAG_TYPES.get(names[0] if len(names) == 1 else "str", str)


def demp_options() -> list[tuple[str, str | None, str, Any, tuple | None, str]]:
    """One row per :class:`~demp.DemPConfig` field that declares a flag (its metadata).

    The fields without a plain flag (``schedule``, ``dynamic``, ``ignored_layers``...) have
    their own arguments in :func:`add_train_options`; ``target_metric`` is the flag shared
    with the baselines (``--target-metric``).
    """
    rows = []
    for f in dataclasses.fields(DemPConfig):
        if "help" not in f.metadata:
            continue
        flag = f.metadata.get("flag") or f"--{f.name.replace('_', '-')}"
        section = None if f.name in RUN_WIDE else "demp"  # a run's, DemP's from the run
        rows.append(
            (flag, section, f.name, flag_type(f), f.metadata.get("choices"), f.metadata["help"])
        )
    return rows


def method_options() -> list[tuple[str, str | None, str, Any, tuple | None, str]]:
    """One row per option of the registered methods (``--target``, ``--slim-lambda``...)."""
    rows = []
    for name, f in option_fields().items():
        kind = flag_type(f)
        choices = f.metadata.get("choices")
        rows.append(
            (f"--{name.replace('_', '-')}", None, name, kind, choices, f.metadata.get("help", ""))
        )
    return rows


def all_options() -> list[tuple[str, str | None, str, Any, tuple | None, str]]:
    """The run options (``--method`` choices: the registry's, now), then the methods' options."""
    rows = [
        (*row[:4], method_names() if row[2] == "method" else row[4], row[5]) for row in RUN_OPTIONS
    ]
    return rows + demp_options() + method_options()


def default_of(section: str | None, key: str) -> Any:
    """The value a run or DemP option takes when not given (None: no fixed default).

    The methods' own options get None: each method applies its own default.
    """
    fields = {f.name: f for f in dataclasses.fields(DemPConfig if section else TrainConfig)}
    found = fields.get(key)
    if found is None or found.default is dataclasses.MISSING:
        return None
    if section and found.default is None and key in VARIANTS["paper"]:
        return " / ".join(f"{name} {values[key]}" for name, values in VARIANTS.items())
    return found.default


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """Add every run, method and DemP option (all default to None: 'not given').

    The help of each shows the value it takes when not given, if it has a fixed one.
    """
    for flag, section, key, kind, choices, text in all_options():
        default = default_of(section, key)
        shown = f"{text} (default: {default})" if default is not None else text
        parser.add_argument(flag, type=kind, choices=choices, default=None, help=shown)
    parser.add_argument("--dynamic", action=argparse.BooleanOptionalAction, default=None,
                        help="remove dead units during training (default) or only at the end")  # fmt: skip
    parser.add_argument("--allow-inexact-norm", action=argparse.BooleanOptionalAction,
                        default=None, help="accept LayerNorm/GroupNorm over pruned channels")  # fmt: skip
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help=COMPILE_HELP)  # fmt: skip
    parser.add_argument("--ignored-layers", nargs="+", default=None, metavar="PATH",
                        help="module paths whose outputs are never cut")  # fmt: skip
    parser.add_argument("--schedule", choices=sorted(SCHEDULES), default=None,
                        help="schedule of the DemP regularizer and noise (default one-cycle)")  # fmt: skip
    parser.add_argument("--warmup", choices=("linear", "cosine"), default=None,
                        help="one-cycle warm-up: linear from 0 (paper) or cosine from peak/25")  # fmt: skip


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Collect the options given on the command line into a nested dict."""
    out: dict[str, Any] = {"demp": {}}
    for _flag, section, key, *_ in all_options():
        value = getattr(args, _dest(_flag))
        if value is not None:
            (out["demp"] if section == "demp" else out)[key] = value
    if args.dynamic is not None:
        out["demp"]["dynamic"] = args.dynamic
    if args.allow_inexact_norm is not None:
        out["allow_inexact_norm"] = args.allow_inexact_norm
    if args.compile is not None:
        out["compile"] = args.compile
    if args.ignored_layers is not None:
        out["ignored_layers"] = list(args.ignored_layers)
    if args.schedule is not None or args.warmup is not None:
        name = args.schedule or "one-cycle"
        kwargs = {"warmup": args.warmup} if args.warmup and name == "one-cycle" else {}
        schedule = SCHEDULES[name](**kwargs)
        out["demp"]["schedule"] = {"type": type(schedule).__name__, **vars(schedule)}
    if not out["demp"]:
        del out["demp"]
    return out


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")
