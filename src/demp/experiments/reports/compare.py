"""``demp report``: compare run folders in a Markdown table and an accuracy-vs-sparsity plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import DempError
from ..harness.timing import train_eval_seconds

COLUMNS = (
    "run", "method", "test acc", "neuron sparsity", "weight sparsity", "train FLOPs",
    "inference FLOPs", "on dense hardware", "train s", "eval s", "speedup vs dense",
)  # fmt: skip


def load_runs(run_dirs: list[str | Path]) -> list[dict[str, Any]]:
    """Read each run's summary.json and config.json (clear error if a run is unfinished)."""
    runs = []
    for run_dir in map(Path, run_dirs):
        summary_file = run_dir / "summary.json"
        if not summary_file.exists():
            raise DempError(f"{run_dir} has no summary.json (not a finished demp run)")
        try:
            summary = json.loads(summary_file.read_text())
            config = json.loads((run_dir / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DempError(f"cannot read the run in {run_dir}: {err}") from err
        runs.append({"name": run_dir.name, "dir": run_dir, "summary": summary, "config": config})
    if not runs:
        raise DempError("give at least one run folder")
    return runs


def table_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    """One row per run; training time and speedup relative to the first dense run."""
    dense = next((r for r in runs if r["summary"]["method"] == "dense"), None)
    base = train_eval_seconds(dense["summary"])[0] if dense else None
    rows = []
    for run in runs:
        s = run["summary"]
        train, evaluation = train_eval_seconds(s)
        speed = base / train if base and train else None
        label = s["method"]
        if s["method"] == "demp":
            demp = run["config"]["demp"]
            target = demp.get("target_sparsity")
            label += (
                f" (target {target:g} {demp.get('target_metric', 'weight')})"
                if target is not None
                else f" (lambda {demp['reg_strength']:g})"
            )
        elif s["method"] != "dense":
            label += f" (target {run['config']['target']:g})"
        rows.append(
            [
                run["name"], label, f"{s['test_acc']:.4f}", f"{s['neuron_sparsity']:.1%}",
                f"{s['weight_sparsity']:.1%}", f"{s['train_flops_ratio']:.3f}",
                f"{s['inference_flops_ratio']:.3f}",
                f"{s.get('executed_inference_flops_ratio', s['inference_flops_ratio']):.3f}",
                _seconds(train), _seconds(evaluation),
                f"{speed:.2f}x" if speed else "n/a",
            ]
        )  # fmt: skip
    return rows


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def markdown(runs: list[dict[str, Any]]) -> str:
    """The comparison as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(runs)]
    return "\n".join(lines)


def write_report(run_dirs: list[str | Path], out: str | Path) -> str:
    """Write ``report.md`` and ``report.png`` into ``out``; return the Markdown table."""
    runs = load_runs(run_dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(runs)
    notes = sorted({f"{r['name']}: {n}" for r in runs for n in r["summary"].get("notes", [])})
    text = "# demp report\n\n" + table + "\n\n" + "".join(f"- {n}\n" for n in notes)
    text += (
        "\nFLOPs columns are ratios to each run's own initial (dense) model. `train s` is the "
        "training loop (data, step, pruner), `eval s` the test-set evaluations and dead-unit "
        "counts; speedup is the dense run's training time over this run's (evaluation "
        "excluded).\n\n![accuracy vs sparsity](report.png)\n"
    )
    (out / "report.md").write_text(text)
    _plot(runs, out / "report.png")
    return table


def _plot(runs: list[dict[str, Any]], path: Path) -> None:
    from .plots import _save, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, label in zip(
        axes, ("neuron_sparsity", "weight_sparsity"), ("neuron sparsity", "weight sparsity"),
        strict=True,
    ):  # fmt: skip
        for run in runs:
            s = run["summary"]
            marker = "s" if s["method"] == "dense" else "o"
            ax.scatter(s[key], s["test_acc"], marker=marker, label=run["name"])
        ax.set(xlabel=label, title=f"test accuracy vs {label}")
    axes[0].set_ylabel("test accuracy")
    axes[1].legend(fontsize=7)
    _save(plt, fig, path)
