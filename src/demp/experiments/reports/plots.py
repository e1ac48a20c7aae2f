"""PNG plots of one run: curves, live units per layer, dead-unit ratio, final widths."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no screen needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_plots(out: Path, records: list[dict[str, Any]], summary: dict[str, Any]) -> list[Path]:
    """Write the run's plots into ``out`` and return their paths."""
    plt = pyplot()
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    checks = [r for r in records if r["kind"] == "check"]
    title = f"{summary['method']} {summary['model']} on {summary['dataset']}"
    paths = [
        _curves(plt, out / "curves.png", steps, epochs, title),
        _live_units(plt, out / "live_units.png", checks, title),
        _dead_ratio(plt, out / "dead_ratio.png", checks, title),
        _widths(plt, out / "widths.png", checks, title),
        _target(plt, out / "target.png", checks, title),
    ]
    return [p for p in paths if p is not None]


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _target(plt: Any, path: Path, checks: list, title: str) -> Path | None:
    """DemP+: the sparsity at each check against the target, and lambda_t (log scale)."""
    rows = [r for r in checks if "target_sparsity" in r]
    if not rows:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = [r["step"] for r in rows]
    left.plot(steps, [r["target_sparsity"] for r in rows], "o-", label="sparsity at the check")
    left.axhline(rows[-1]["target"], color="gray", linestyle="--", label="target")
    left.set(xlabel="step", ylabel="sparsity (target metric)", ylim=(0, 1), title=title)
    left.legend()
    right.plot(steps, [max(r["lambda"], 1e-12) for r in rows], "o-", label="lambda_t")
    right.set(xlabel="step", ylabel="lambda_t", yscale="log", title="controlled strength")
    right.legend()
    return _save(plt, fig, path)


def _curves(plt: Any, path: Path, steps: list, epochs: list, title: str) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot([r["step"] for r in steps], [r["loss"] for r in steps], label="train loss")
    if epochs:
        left.plot([r["step"] for r in epochs], [r["test_loss"] for r in epochs], "o-",
                  label="test loss")  # fmt: skip
    left.set(xlabel="step", ylabel="loss", yscale="log", title=title)
    left.legend()
    right.plot([r["step"] for r in steps], [r["train_acc"] for r in steps], label="train (batches)")
    if epochs:
        right.plot([r["step"] for r in epochs], [r["test_acc"] for r in epochs], "o-",
                   label="test")  # fmt: skip
    right.set(xlabel="step", ylabel="accuracy", title="accuracy")
    right.legend()
    return _save(plt, fig, path)


def _live_units(plt: Any, path: Path, checks: list, title: str) -> Path | None:
    if not checks:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(checks[0]["live"])
    ax.set_prop_cycle(color=plt.cm.tab20.colors, linestyle=["-", "--"] * 10)
    for name in names:
        ax.plot([c["step"] for c in checks], [c["live"].get(name, 0) for c in checks], label=name)
    ax.set(xlabel="step", ylabel="live units", title=f"live units per layer group: {title}")
    if len(names) <= 16:
        ax.legend(fontsize=7, ncol=2)
    return _save(plt, fig, path)


def _dead_ratio(plt: Any, path: Path, checks: list, title: str) -> Path | None:
    if not checks:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([c["step"] for c in checks], [c["dead_ratio"] for c in checks], "o-")
    ax.set(xlabel="step", ylabel="dead (or removed) units / initial units", ylim=(0, 1),
           title=f"dead-unit ratio: {title}")  # fmt: skip
    return _save(plt, fig, path)


def _widths(plt: Any, path: Path, checks: list, title: str) -> Path | None:
    if not checks:
        return None
    first, last = checks[0]["live"], checks[-1]["live"]  # the first record is at step 0
    names = list(first)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 4.5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [first[n] for n in names], 0.4, label="original")
    ax.bar([x + 0.2 for x in xs], [last.get(n, 0) for n in names], 0.4, label="final")
    ax.set_xticks(list(xs), names, rotation=70, ha="right", fontsize=7)
    ax.set(ylabel="units", title=f"width per layer group: {title}")
    ax.legend()
    return _save(plt, fig, path)
