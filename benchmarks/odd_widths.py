"""Do DemP's odd layer widths cost step time? The same pruned shape, rounded up to multiples.

A DemP run leaves layer widths like 29, 39 or 125 channels. CPU (oneDNN) and GPU kernels
are tuned for channel counts that are multiples of 8 or 16, so a model with odd widths
may run slower per FLOP than one a little wider. This script builds the widths of a run's
last death check (``metrics.jsonl``) from the run's dense model (per-block residual
units, then ``demp.remove_units``), the same widths rounded up to multiples of each
``--round`` (never above the dense width), and the dense model, and times their training
steps (AdamW, one fixed random batch of the run's size, eager), interleaved round by
round in one process. Each row: weights, training GFLOPs per step, seconds per step
(median over rounds of the median step), and both as ratios to dense.

    .venv/bin/python benchmarks/odd_widths.py RUN_DIR [--round 8 16] [--threads 2] \\
        [--steps 20] [--rounds 3] [--formats nchw channels-last]

``--formats channels-last`` also times every shape with the model and the batch in
PyTorch's channels-last memory format (eager; oneDNN then picks other convolution kernels).

``DemPConfig(round_to=N)`` (``--round-to N``) keeps a DemP run's widths at multiples of N.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
from pathlib import Path

import torch
from step_floor import step_time
from torch import nn

import demp
from demp.experiments.data import load_dataset
from demp.experiments.harness.config import TrainConfig
from demp.experiments.harness.runner import per_block_residuals
from demp.experiments.models import build_model

FORMATS = {"nchw": torch.contiguous_format, "channels-last": torch.channels_last}


def last_widths(run: Path) -> dict[str, int]:
    """Group name -> live units at the run's last death check."""
    widths: dict[str, int] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "check":
            widths = {str(k): int(v) for k, v in record["live"].items()}
    if not widths:
        raise SystemExit(f"{run / 'metrics.jsonl'} has no death check: not a DemP run")
    return widths


def shaped(config: TrainConfig, widths: dict[str, int] | None) -> nn.Module:
    """The run's dense model, cut to ``widths`` (None: dense)."""
    data = load_dataset(config.dataset, config.data_dir, train_size=16, test_size=16)
    torch.manual_seed(0)
    model = build_model(config.model, data.num_classes, data.input_shape, config.width,
                        config.activation)  # fmt: skip
    per_block_residuals(model, data.train_x[:2], config.residual_mode())
    if widths is not None:
        structure = demp.build_structure(model, data.train_x[:2])
        cuts = {
            name: list(range(group.width - widths[name]))
            for name, group in structure.groups.items()
            if name in widths and widths[name] < group.width
        }
        demp.remove_units(model, cuts, structure=structure)
    return model


def rounded(widths: dict[str, int], dense: dict[str, int], multiple: int) -> dict[str, int]:
    """Each width rounded up to a multiple of ``multiple``, never above the dense width."""
    return {n: min(dense[n], math.ceil(w / multiple) * multiple) for n, w in widths.items()}


def main() -> None:
    """Build the shapes, time them, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--round", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=["nchw"], choices=list(FORMATS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig.from_dict(json.loads((args.run / "config.json").read_text()))
    widths = last_widths(args.run)
    data = load_dataset(config.dataset, config.data_dir, train_size=config.batch_size,
                        test_size=16)  # fmt: skip
    x, y = data.train_x[: config.batch_size], data.train_y[: config.batch_size]
    dense_widths = demp.build_structure(shaped(config, None), x[:2]).widths()
    shapes = {"dense": None, "DemP's widths": widths}
    shapes |= {f"rounded up to {m}": rounded(widths, dense_widths, m) for m in args.round}
    models = {
        _label(name, f): shaped(config, w).to(memory_format=FORMATS[f])
        for f in args.formats
        for name, w in shapes.items()
    }
    inputs = {_label(name, f): x.contiguous(memory_format=FORMATS[f]) for f in args.formats
              for name in shapes}  # fmt: skip
    opts = {n: torch.optim.AdamW(m.parameters(), lr=1e-3) for n, m in models.items()}
    flops = {n: 3 * len(x) * demp.forward_flops(m, x[:1]) for n, m in models.items()}
    times: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            times[name].append(step_time(model, opts[name], inputs[name], y, args.steps))
    print(f"{args.run}: {platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"batch {len(x)}")  # fmt: skip
    print("| shape | weights | train GFLOPs/step | s/step | FLOPs vs dense | time vs dense |")
    print("|---|---|---|---|---|---|")
    dense_s = statistics.median(times[_label("dense", args.formats[0])])
    for name, model in models.items():
        weights = sum(p.numel() for p in model.parameters())
        s = statistics.median(times[name])
        print(f"| {name} | {weights} | {flops[name] / 1e9:.2f} | {s:.4f} | "
              f"{flops[name] / flops[_label('dense', args.formats[0])]:.3f} | "
              f"{s / dense_s:.3f} |")  # fmt: skip


def _label(shape: str, memory_format: str) -> str:
    """A row's name: the shape, and the memory format when it is not the default."""
    return shape if memory_format == "nchw" else f"{shape}, channels-last"


if __name__ == "__main__":
    main()
