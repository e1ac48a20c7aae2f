"""``runs.csv``: one row per run of a sweep, the compact record that is kept in git.

A run folder (``config.json``, ``metrics.jsonl``, ``summary.json``, checkpoints) is too large
to keep for every run of a sweep; its summary is not. :func:`collect_runs` turns the run
folders of a sweep into one flat row each: the run's name, method, level (DemP lambda or
baseline target), target, seed, and every scalar of its ``summary.json`` (dicts of scalars
such as ``seconds_per_step`` become ``seconds_per_step_<key>`` columns, lists such as
``notes`` are joined with ``"; "``). ``demp bench`` writes it at the end of every sweep;
this module also converts existing run folders by hand::

    python -m demp.experiments.bench.runs RUNS_DIR OUT_DIR [--title TITLE]

which writes ``OUT_DIR/runs.csv`` and the aggregated ``results.csv``, ``results.md`` and
plot. ``RUNS_DIR`` may also be an existing ``runs.csv``: the aggregated files are then
rebuilt from it, without any run folder.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ...errors import DempError
from ..harness.rundir import read_json_object

RUNS_SUBDIR = "runs"
LEADING = ("run", "method", "level", "target", "reg_strength", "seed", "dataset", "model", "width")
SUMMARY_ORDER = (
    "test_acc", "test_loss", "neuron_sparsity", "weight_sparsity", "params_initial", "params",
    "units_initial", "units", "inference_flops", "inference_flops_ratio", "train_flops",
    "train_flops_ratio", "steps", "epochs", "train_seconds", "eval_seconds", "wall_seconds",
)  # fmt: skip
METHOD_ORDER = ("dense", "demp", "snap", "cropit-s", "earlysnap", "earlycrop-s", "slimming")
NOTES_SEPARATOR = "; "


def run_row(run_dir: Path) -> dict[str, Any] | None:
    """The flat row of one finished run folder, or None if it has no ``summary.json``.

    Args:
        run_dir: A run folder written by ``demp train`` or ``demp bench``.

    Raises:
        DempError: If ``summary.json`` or ``config.json`` cannot be parsed.
    """
    summary = _read_json(run_dir / "summary.json")
    if summary is None:
        return None
    config = _read_json(run_dir / "config.json") or {}
    method = summary.get("method", config.get("method"))
    reg_strength = (config.get("demp") or {}).get("reg_strength") if method == "demp" else None
    target = summary.get("target")
    if target is None:  # runs written before DemP reported its target in the summary
        target = config.get("target", (config.get("demp") or {}).get("target_sparsity"))
    row: dict[str, Any] = {
        "run": run_dir.name,
        "method": method,
        "level": reg_strength if method == "demp" and target is None else target,
        "target": target,
        "reg_strength": reg_strength,
        "seed": summary.get("seed", config.get("seed")),
    }
    for key, value in summary.items():
        if key in row:
            continue
        if isinstance(value, dict):
            row.update({f"{key}_{k}": v for k, v in value.items() if _is_scalar(v)})
        elif isinstance(value, list):
            row[key] = NOTES_SEPARATOR.join(str(v) for v in value)
        elif _is_scalar(value):
            row[key] = value
    return row


def collect_runs(runs_dir: Path, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of the finished runs in ``runs_dir`` (unfinished ones are left out).

    Args:
        runs_dir: The folder holding one folder per run.
        names: The runs, in this order (a sweep's order); None: every folder, ordered by
            seed, method (dense, DemP, then the baselines) and level.
    """
    if names is not None:
        found = (run_row(runs_dir / name) for name in names)
        return [row for row in found if row is not None]
    if not runs_dir.is_dir():
        raise DempError(f"{runs_dir} is not a folder of run folders")
    found = (run_row(d) for d in sorted(runs_dir.iterdir()) if d.is_dir())
    return sorted((row for row in found if row is not None), key=_sweep_order)


def columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The CSV columns: the usual ones first, then any other key in order of appearance."""
    keys = dict.fromkeys(k for row in rows for k in row)
    fixed = [k for k in (*LEADING, *SUMMARY_ORDER) if k in keys]
    rest = [k for k in keys if k not in fixed and k != "notes"]
    return [*fixed, *rest, "notes"]


def write_runs_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the rows as ``runs.csv`` (missing values as empty cells)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns(rows), restval="")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def read_runs_csv(path: Path) -> list[dict[str, Any]]:
    """Read a ``runs.csv`` back: numbers as int/float, empty cells as None."""
    if not path.is_file():
        raise DempError(f"{path}: no such runs.csv")
    with path.open(newline="") as f:
        return [
            {k: v if k in ("run", "notes") else _parse(v) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def _sweep_order(row: dict[str, Any]) -> tuple[Any, ...]:
    method = row.get("method") or ""
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    level = row.get("level")
    return (row.get("seed") or 0, rank, method, -math.inf if level is None else level)


def _read_json(path: Path) -> dict[str, Any] | None:
    return read_json_object(path) if path.is_file() else None


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _parse(text: str) -> Any:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    """Write ``runs.csv`` and the aggregated results of a folder of runs (or a runs.csv)."""
    from .results import write_results

    parser = argparse.ArgumentParser(prog="python -m demp.experiments.bench.runs")
    parser.add_argument("source", type=Path, help="a folder of run folders, or a runs.csv")
    parser.add_argument("out", type=Path, help="folder of runs.csv and the results files")
    parser.add_argument("--title", default="demp bench", help="title of results.md")
    args = parser.parse_args(argv)
    try:
        if args.source.is_file():
            rows = read_runs_csv(args.source)
        else:
            rows = collect_runs(args.source)
        if not rows:
            raise DempError(f"no finished run in {args.source}")
        args.out.mkdir(parents=True, exist_ok=True)
        if (args.out / "runs.csv").resolve() != args.source.resolve():
            write_runs_csv(rows, args.out / "runs.csv")
        write_results(args.out, rows, args.title)
    except DempError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(rows)} runs: {args.out / 'runs.csv'}, {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
