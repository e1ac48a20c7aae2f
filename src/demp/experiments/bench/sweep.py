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

import time
from pathlib import Path
from typing import Any

from ...errors import DempError
from ..harness.config import TrainConfig
from ..harness.runner import run_training
from .parallel import run_side_by_side
from .presets import get_preset
from .results import write_results
from .runs import RUNS_SUBDIR, collect_runs, write_runs_csv


def run_bench(
    preset_name: str,
    out: Path,
    data_dir: Path | None = None,
    progress: bool = True,
    jobs: int = 1,
    threads: int | None = None,
    deadline: float | None = None,
    include: tuple[str, ...] = (),
    compile: bool = False,
) -> str:
    """Train every run of a preset into ``out/runs/<run>`` and write the results at the top.

    Args:
        preset_name: A preset of :data:`.presets.PRESETS`.
        out: The sweep's folder (see the module docs for its layout).
        data_dir: Folder of the dataset files, passed to every run.
        progress: Show a progress bar per run (one run at a time only).
        jobs: Runs side by side, in their own processes (:mod:`.parallel`).
        threads: Torch threads per run (None: torch's default).
        deadline: Seconds after which no new run is started; the results then cover the
            finished runs, and a restart trains the rest.
        include: Method groups added to the preset (``"unstructured"``), same folder.
        compile: Train every run with ``torch.compile`` (``TrainConfig.compile``).

    Returns:
        The Markdown results table.
    """
    if jobs < 1 or (threads is not None and threads < 1):
        raise DempError(f"jobs and threads must be >= 1, got {jobs} and {threads}")
    preset = get_preset(preset_name)
    runs = preset.runs(include)
    if data_dir is not None:
        runs = [(name, {**opts, "data_dir": str(data_dir)}) for name, opts in runs]
    if compile:
        runs = [(name, {**opts, "compile": True}) for name, opts in runs]
    configs = [(name, TrainConfig.from_dict(opts)) for name, opts in runs]  # validate all first
    runs_dir = out / RUNS_SUBDIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    _adopt_old_layout(out, [name for name, _ in runs])
    todo = []
    for i, (name, config) in enumerate(configs, 1):
        if (runs_dir / name / "summary.json").exists():
            print(f"[{i}/{len(configs)}] {name}: finished earlier, skipped", flush=True)
        else:
            todo.append((name, config, runs_dir / name))
    if jobs == 1:
        left, failed = _one_after_another(todo, progress, threads, deadline), []
    else:
        left, failed = run_side_by_side(todo, jobs, threads, deadline, _report)
    if left:
        print(f"deadline: {left} runs not started; run the same command again to train them")
    rows = collect_runs(runs_dir, [name for name, _ in runs])
    write_runs_csv(rows, out / "runs.csv")
    table = write_results(out, rows, f"demp bench {preset_name}")
    if failed:
        raise DempError(f"{len(failed)} runs failed (see above): {', '.join(failed)}")
    return table


def _one_after_another(
    todo: list[tuple[str, TrainConfig, Path]],
    progress: bool,
    threads: int | None,
    deadline: float | None,
) -> int:
    """Train in this process; return how many runs the deadline left unstarted."""
    start = time.monotonic()
    for k, (name, config, run_dir) in enumerate(todo):
        if deadline is not None and time.monotonic() - start > deadline:
            return len(todo) - k
        resume = (run_dir / "checkpoint").exists()
        print(f"{name}: {'resuming' if resume else 'training'}", flush=True)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        _report(name, run_training(config, run_dir, resume=resume, progress=progress))
    return 0


def _report(name: str, summary: dict[str, Any]) -> None:
    print(
        f"    {name}: test acc {summary['test_acc']:.4f}, neuron sparsity "
        f"{summary['neuron_sparsity']:.1%}, weight sparsity {summary['weight_sparsity']:.1%}, "
        f"training {summary['train_seconds']:.0f} s + evaluation "
        f"{summary['eval_seconds']:.0f} s",
        flush=True,
    )


def _adopt_old_layout(out: Path, names: list[str]) -> None:
    """Move run folders of the earlier layout (``out/<run>``) to ``out/runs/<run>``."""
    for name in names:
        old, new = out / name, out / RUNS_SUBDIR / name
        if (old / "config.json").is_file() and not new.exists():
            old.rename(new)
            print(f"{name}: moved {old} to {new}", flush=True)
