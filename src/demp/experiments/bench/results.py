"""Benchmark results: a CSV of every run, a Markdown table over seeds, a Fig. 3-style plot."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

from ...methods import method_names
from ..harness.timing import train_eval_seconds

FIELDS = (
    "run", "method", "level", "seed", "test_acc", "neuron_sparsity", "weight_sparsity",
    "train_seconds", "eval_seconds", "wall_seconds", "time_ratio", "train_flops_ratio",
    "inference_flops_ratio", "executed_inference_flops_ratio",
)  # fmt: skip
PLOT = "accuracy_vs_sparsity.png"


def collect(run_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``results.csv`` rows of a sweep's run rows (see :mod:`.runs`).

    ``time_ratio`` is the training time (evaluation and checkpoints excluded,
    :mod:`..harness.timing`) relative to the mean dense run of the sweep.
    """
    rows = []
    for run in run_rows:
        row = {key: run.get(key) for key in FIELDS if key != "time_ratio"}
        row["train_seconds"], row["eval_seconds"] = train_eval_seconds(run)
        if row["executed_inference_flops_ratio"] is None:  # runs from before masks existed
            row["executed_inference_flops_ratio"] = row["inference_flops_ratio"]
        rows.append(row)
    dense = [r["train_seconds"] for r in rows if r["method"] == "dense" and r["train_seconds"]]
    base = statistics.mean(dense) if dense else None
    for row in rows:
        row["time_ratio"] = row["train_seconds"] / base if base and row["train_seconds"] else None
    return rows


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (and std of accuracy) over seeds per (method, level), in sweep order."""
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["level"]), []).append(row)
    out = []
    for (method, level), items in groups.items():
        acc = [r["test_acc"] for r in items]
        agg = {"method": method, "level": level, "seeds": len(items),
               "acc_mean": statistics.mean(acc),
               "acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
               "ws_std": _std([r["weight_sparsity"] for r in items])}  # fmt: skip
        for key in ("neuron_sparsity", "weight_sparsity", "time_ratio", "train_flops_ratio",
                    "inference_flops_ratio", "executed_inference_flops_ratio"):  # fmt: skip
            values = [r[key] for r in items if r[key] is not None]
            agg[key] = statistics.mean(values) if values else None
        out.append(agg)
    return out


def _std(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.stdev(values) if len(values) > 1 else None


def matched(agg: list[dict[str, Any]], family: str = "structured") -> str:
    """DemP against the best baseline of a family at each level both were run at (Markdown).

    The difference is DemP's mean accuracy minus the best baseline's; it counts as
    "level" when it is within the sum of the two seed standard deviations (not read with
    a single seed on either side). A mean weight
    sparsity more than a point short of the level, on either side (DemP giving its target
    up, a baseline's ranking stopping early), is flagged: that comparison is not matched.
    The levels are read as weight sparsity (the presets that run DemP at targets set
    ``target_metric="weight"``).
    """
    demp = {a["level"]: a for a in agg if a["method"] == "demp"}
    pool = set(method_names(family)) - {"demp", "dense"}
    rows = []
    for level, ours in demp.items():
        others = [a for a in agg if a["level"] == level and a["method"] in pool]
        if not others:
            continue
        best = max(others, key=lambda a: a["acc_mean"])
        diff, spread = ours["acc_mean"] - best["acc_mean"], ours["acc_std"] + best["acc_std"]
        verdict = "level" if abs(diff) <= spread else ("ahead" if diff > 0 else "behind")
        if min(ours["seeds"], best["seeds"]) < 2:
            verdict = "one seed: no spread to read it against"
        short = [name for name, a in (("DemP", ours), (best["method"], best)) if _short(a, level)]
        verdict += f", not matched: {' and '.join(short)} short of the level" if short else ""
        rows.append(
            f"| {level:g} | {_cell(ours)} | {best['method']}: {_cell(best)} "
            f"| {diff * 100:+.2f} | {verdict} |"
        )
    if not rows:
        return ""
    head = ("| level | DemP: acc ± sd (weight sparsity) | best baseline | DemP - best (points) "
            "| reading |\n|---|---|---|---|---|\n")  # fmt: skip
    return head + "\n".join(rows)


def _short(a: dict[str, Any], level: float) -> bool:
    return a["weight_sparsity"] is not None and a["weight_sparsity"] < level - 0.01


def _weight_sparsity(a: dict[str, Any]) -> str:
    if a["weight_sparsity"] is None:
        return "n/a"
    spread = "" if a.get("ws_std") is None else f" ± {a['ws_std']:.1%}"
    return f"{a['weight_sparsity']:.1%}{spread}"


def _cell(a: dict[str, Any]) -> str:
    ws = a["weight_sparsity"]
    return f"{a['acc_mean']:.4f} ± {a['acc_std']:.4f} ({'n/a' if ws is None else f'{ws:.1%}'})"


def markdown(agg: list[dict[str, Any]]) -> str:
    """The aggregated table in Markdown."""
    head = (
        "| method | lambda / target | seeds | test acc (mean ± std) | neuron sparsity "
        "| weight sparsity (± sd) | training time vs dense | train FLOPs vs dense "
        "| inference FLOPs | inference FLOPs on dense hardware |"
    )
    lines = [head, "|" + "---|" * 10]
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    for a in agg:
        level = "" if a["level"] is None else f"{a['level']:g}"
        lines.append(
            f"| {a['method']} | {level} | {a['seeds']} | {a['acc_mean']:.4f} ± {a['acc_std']:.4f} "
            f"| {fmt(a['neuron_sparsity'], '.1%')} | {_weight_sparsity(a)} "
            f"| {fmt(a['time_ratio'], '.2f')} | {fmt(a['train_flops_ratio'], '.2f')} "
            f"| {fmt(a['inference_flops_ratio'], '.2f')} "
            f"| {fmt(a['executed_inference_flops_ratio'], '.2f')} |"
        )
    return "\n".join(lines)


def write_results(out: Path, run_rows: list[dict[str, Any]], title: str) -> str:
    """Write results.csv, results.md and the plot into ``out``; return the Markdown table.

    Args:
        out: The sweep's folder (the aggregated files go at its top).
        run_rows: One row per finished run (:func:`.runs.collect_runs` or ``runs.csv``).
        title: Title of results.md and the plots.
    """
    rows = collect(run_rows)
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    agg = aggregate(rows)
    table = markdown(agg)
    versus = ""
    for family, rival in (("structured", "baseline"), ("unstructured", "unstructured method")):
        rows_ = matched(agg, family)
        if rows_:
            versus += f"## DemP against the best {rival}, level by level\n\n{rows_}\n\n"
    (out / "results.md").write_text(
        f"# {title}\n\n{table}\n\n{versus}![accuracy vs sparsity]({PLOT})\n\n"
        f"One row per run: [runs.csv](runs.csv).\n"
    )
    _plot(agg, out / PLOT, title)
    return table


def _plot(agg: list[dict[str, Any]], path: Path, title: str) -> None:
    """Accuracy against neuron and weight sparsity (masks: dotted, weight panel only)."""
    from ..reports.plots import _save, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    masks = set(method_names("unstructured"))
    methods = list(dict.fromkeys(a["method"] for a in agg))
    for ax, key in zip(axes, ("neuron_sparsity", "weight_sparsity"), strict=True):
        for method in methods:
            if method in masks and key == "neuron_sparsity":
                continue
            points = sorted((a for a in agg if a["method"] == method), key=lambda a: a[key])
            if method == "dense":
                for a in points:
                    ax.axhline(a["acc_mean"], color="gray", linestyle="--", label="dense")
                continue
            xs, ys = [a[key] for a in points], [a["acc_mean"] for a in points]
            style = {"linestyle": ":", "marker": "s"} if method in masks else {"marker": "o"}
            errors = [a["acc_std"] for a in points]
            ax.errorbar(xs, ys, yerr=errors, capsize=3, label=method, **style)
        ax.set(xlabel=key.replace("_", " "), title=f"{title}: accuracy vs {key.split('_')[0]}")
    if masks & set(methods):
        axes[0].set_title(f"{title}: accuracy vs neuron (masks remove none)")
        axes[1].set_title(f"{title}: accuracy vs weight (masks dotted)")
    axes[0].set_ylabel("test accuracy")
    axes[1].legend(fontsize=8)
    _save(plt, fig, path)
