"""Running a benchmark sweep: every run of a preset, finished runs skipped on restart."""

from __future__ import annotations

from pathlib import Path

from ..harness.config import TrainConfig
from ..harness.runner import run_training
from .presets import get_preset
from .results import write_results


def run_bench(
    preset_name: str, out: Path, data_dir: Path | None = None, progress: bool = True
) -> str:
    """Train every run of the preset into ``out/<run>``; write and return the results table."""
    preset = get_preset(preset_name)
    runs = preset.runs()
    if data_dir is not None:
        runs = [(name, {**opts, "data_dir": str(data_dir)}) for name, opts in runs]
    configs = [(name, TrainConfig.from_dict(opts)) for name, opts in runs]  # validate all first
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, config) in enumerate(configs, 1):
        run_dir = out / name
        if (run_dir / "summary.json").exists():
            print(f"[{i}/{len(configs)}] {name}: finished earlier, skipped", flush=True)
            continue
        resume = (run_dir / "checkpoint").exists()
        print(f"[{i}/{len(configs)}] {name}: {'resuming' if resume else 'training'}", flush=True)
        summary = run_training(config, run_dir, resume=resume, progress=progress)
        print(
            f"    test acc {summary['test_acc']:.4f}, neuron sparsity "
            f"{summary['neuron_sparsity']:.1%}, weight sparsity {summary['weight_sparsity']:.1%}, "
            f"{summary['wall_seconds']:.0f} s",
            flush=True,
        )
    return write_results(out, runs, f"demp bench {preset_name}")
