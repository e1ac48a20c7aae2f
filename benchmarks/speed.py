"""Realized speedup of pruned architectures, next to their FLOPs bound.

For each run folder: read the final width of every channel group from the checkpoint's
spec, give the same fraction of each group to the run's model rebuilt at ``--width``
(default 1.0: the full ResNet-18) on ``--size`` x ``--size`` inputs, and time an Adam
training step of it against the dense model in the same process (interleaved, medians).
With ``--round-to 8`` every group's width is also rounded up to a multiple of 8. The peak
memory of a training step is reported next to dense's: on CUDA
``torch.cuda.max_memory_allocated``; on the CPU (Linux) the growth of the process's
resident set over the step, sampled every half millisecond by a thread, after the C heap's
free memory is handed back (so that one model's freed memory does not hide the next one's).

    .venv/bin/python benchmarks/speed.py RUN_DIR [RUN_DIR ...] [--device cuda] \\
        [--width 1.0] [--size 32] [--batch 128] [--steps 10] [--round-to 8] \\
        [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import torch
from overhead import one_step  # benchmarks/overhead.py: one synchronized Adam step
from torch import nn

import demp
from demp.experiments.data import load_dataset
from demp.experiments.harness.config import TrainConfig
from demp.experiments.models import build_model


def rebuild(config: TrainConfig, width: float, shape: tuple[int, ...], k: int, x: torch.Tensor):
    """The run's model at ``width`` (decoupled like the run) and its channel groups."""
    model = build_model(config.model, k, shape, width, config.activation)
    if config.residual_mode() == "per-block":
        demp.decouple_residuals(model, x)
    structure = demp.build_checked_structure(model, x, config.demp.structure_options())
    return model, structure


def final_fractions(
    run_dir: Path, data_dir: str | None = None
) -> tuple[TrainConfig, dict[str, float], tuple, int]:
    """Each group's final width over its initial width, from the run's checkpoint spec.

    ``data_dir`` replaces the run's own (a run folder copied to another machine).
    """
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    data = load_dataset(config.dataset, data_dir or config.data_dir, 16, 16, 0)
    model, structure = rebuild(
        config, config.width, data.input_shape, data.num_classes, data.train_x[:2]
    )
    spec = json.loads((run_dir / "checkpoint" / "spec.json").read_text())["shapes"]
    fractions = {}
    for name, group in structure.groups.items():
        slot = next(s for s in group.slots if s.role in ("norm", "producer"))
        now = spec[f"{slot.path}.weight"][0]
        fractions[name] = now / model.get_submodule(slot.path).weight.shape[0]
    return config, fractions, data.input_shape, data.num_classes


def scaled(config, fractions, shape, k, width, round_to, x):
    """The run's architecture at ``width``: each group keeps its fraction of units."""
    model, structure = rebuild(config, width, shape, k, x)
    removed = {}
    for name, group in structure.groups.items():
        keep = max(1, round(fractions.get(name, 1.0) * group.width))
        if round_to:
            keep = min(group.width, math.ceil(keep / round_to) * round_to)
        if keep < group.width:
            removed[name] = list(range(keep, group.width))
    demp.remove_units(model, removed, structure=structure)
    return model


def step_timer(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """A function that runs one Adam training step of ``model`` and returns its seconds."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return lambda: one_step(model, opt, x, y)


def peak_memory(step, device: torch.device) -> float | None:
    """Peak bytes a step needs: allocated (CUDA), or the resident set's growth (CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        step()
        return float(torch.cuda.max_memory_allocated(device))
    return rss_growth(step)


def resident_bytes() -> int | None:
    """This process's resident set now (Linux ``/proc/self/statm``; None elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def release_free_memory() -> None:
    """Hand the C heap's free memory back to the system (glibc ``malloc_trim``).

    Without it, memory an earlier step freed stays resident and a later step reuses it
    unseen: the second model measured would look smaller than it is.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def rss_growth(step, every: float = 5e-4) -> float | None:
    """Largest growth of the resident set while ``step`` runs, sampled by a thread."""
    release_free_memory()
    base = resident_bytes()
    if base is None:
        return None
    peak, done = [base], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes() or 0)
            time.sleep(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        step()
    finally:
        done.set()
        sampler.join()
    return float(max(peak[0], resident_bytes() or 0) - base)


def measure(models: dict[str, nn.Module], x, y, steps: int) -> dict[str, dict]:
    """Median step time (interleaved) and peak memory of every model."""
    steppers = {name: step_timer(m, x, y) for name, m in models.items()}
    for step in steppers.values():  # warm-up
        step()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(steps):
        for name, step in steppers.items():
            times[name].append(step())
    return {
        name: {"seconds": statistics.median(times[name]),
               "memory": peak_memory(steppers[name], x.device),
               "flops": demp.forward_flops(models[name], x[:1]),
               "params": demp.count_trainable(models[name])}
        for name in models
    }  # fmt: skip


def rows_for(run_dir: Path, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Dense, the run's architecture and (with --round-to) its rounded version, measured."""
    config, fractions, shape, k = final_fractions(run_dir, args.data_dir)
    big = (shape[0], args.size, args.size) if len(shape) == 3 else shape
    torch.manual_seed(0)
    x = torch.randn(args.batch, *big, device=device)
    y = torch.randint(0, k, (args.batch,), device=device)
    probe = x[:2].cpu()
    models = {"dense": rebuild(config, args.width, big, k, probe)[0]}
    models["pruned"] = scaled(config, fractions, big, k, args.width, None, probe)
    if args.round_to:
        models[f"round_to={args.round_to}"] = scaled(
            config, fractions, big, k, args.width, args.round_to, probe
        )
    results = measure({n: m.to(device) for n, m in models.items()}, x, y, args.steps)
    dense = results["dense"]
    return [
        {"run": run_dir.name, "model": name, "weight_sparsity": 1 - r["params"] / dense["params"],
         "flops_bound": dense["flops"] / r["flops"], "speedup": dense["seconds"] / r["seconds"],
         "step_s": r["seconds"],
         "memory_ratio": r["memory"] / dense["memory"] if r["memory"] and dense["memory"] else None}
        for name, r in results.items()
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--round-to", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None, help="the dataset's folder on this machine")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = f" {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"torch {torch.__version__}, {platform.machine()}, {device}{gpu}, "
          f"{torch.get_num_threads()} threads, width {args.width}, {args.size}x{args.size}, "
          f"batch {args.batch}, median of {args.steps} interleaved steps\n")  # fmt: skip
    print("| run | model | weight sparsity | FLOPs bound | realized speedup | step s | "
          "peak memory vs dense |\n|---|---|---|---|---|---|---|")  # fmt: skip
    rows = []
    for run_dir in args.runs:
        for r in rows_for(run_dir, args, device):
            memory = "n/a" if r["memory_ratio"] is None else f"{r['memory_ratio']:.2f}"
            print(f"| {r['run']} | {r['model']} | {r['weight_sparsity']:.3f} | "
                  f"{r['flops_bound']:.2f}x | {r['speedup']:.2f}x | {r['step_s']:.4f} | "
                  f"{memory} |", flush=True)  # fmt: skip
            rows.append(r)
    return rows


if __name__ == "__main__":
    main()
