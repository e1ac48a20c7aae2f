"""Running a benchmark sweep: every run of a preset, finished runs skipped on restart.

Layout of the output folder ``OUT`` (default ``runs/bench-<preset>``)::

    OUT/results.csv               one row per run: accuracy, sparsity, time and FLOPs ratios
    OUT/results.md                the table over seeds, with the plot
    OUT/accuracy_vs_sparsity.png  accuracy against neuron and weight sparsity
    OUT/runs.csv                  one row per run: every scalar of its summary.json
    OUT/runs/<run>/               the run folders (config, metrics, summary, checkpoints)

Only the four files at the top are meant to be kept (``benchmarks/results/<preset>/``).
"""

from __future__ import annotations

from pathlib import Path

from ..harness.config import TrainConfig
from ..harness.runner import run_training
from .presets import get_preset
from .results import write_results
from .runs import RUNS_SUBDIR, collect_runs, write_runs_csv


def run_bench(
    preset_name: str, out: Path, data_dir: Path | None = None, progress: bool = True
) -> str:
    """Train every run of a preset into ``out/runs/<run>`` and write the results at the top.

    Args:
        preset_name: A preset of :data:`.presets.PRESETS`.
        out: The sweep's folder (see the module docs for its layout).
        data_dir: Folder of the dataset files, passed to every run.
        progress: Show a progress bar per run.

    Returns:
        The Markdown results table.
    """
    preset = get_preset(preset_name)
    runs = preset.runs()
    if data_dir is not None:
        runs = [(name, {**opts, "data_dir": str(data_dir)}) for name, opts in runs]
    configs = [(name, TrainConfig.from_dict(opts)) for name, opts in runs]  # validate all first
    runs_dir = out / RUNS_SUBDIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    _adopt_old_layout(out, [name for name, _ in runs])
    for i, (name, config) in enumerate(configs, 1):
        run_dir = runs_dir / name
        if (run_dir / "summary.json").exists():
            print(f"[{i}/{len(configs)}] {name}: finished earlier, skipped", flush=True)
            continue
        resume = (run_dir / "checkpoint").exists()
        print(f"[{i}/{len(configs)}] {name}: {'resuming' if resume else 'training'}", flush=True)
        summary = run_training(config, run_dir, resume=resume, progress=progress)
        print(
            f"    test acc {summary['test_acc']:.4f}, neuron sparsity "
            f"{summary['neuron_sparsity']:.1%}, weight sparsity {summary['weight_sparsity']:.1%}, "
            f"training {summary['train_seconds']:.0f} s + evaluation "
            f"{summary['eval_seconds']:.0f} s",
            flush=True,
        )
    rows = collect_runs(runs_dir, [name for name, _ in runs])
    write_runs_csv(rows, out / "runs.csv")
    return write_results(out, rows, f"demp bench {preset_name}")


def _adopt_old_layout(out: Path, names: list[str]) -> None:
    """Move run folders of the earlier layout (``out/<run>``) to ``out/runs/<run>``."""
    for name in names:
        old, new = out / name, out / RUNS_SUBDIR / name
        if (old / "config.json").is_file() and not new.exists():
            old.rename(new)
            print(f"{name}: moved {old} to {new}", flush=True)
