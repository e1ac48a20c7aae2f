"""Surgery benchmark: cost of grouping, detection and removal, and what removal buys.

For CIFAR-style ResNet-18 and ResNet-50 it prints the time to build the channel groups
(tracing, then the trial-cut verification), to detect dead units on 512 probe examples,
and to remove 50 % of every group (model + Adam state), then the training-step time
before and after removal next to the FLOPs ratio (``torch.utils.flop_counter``).

    .venv/bin/python benchmarks/surgery.py [--width 64] [--batch 128] [--steps 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import nn

import demp
from demp.accounting import forward_flops
from demp.experiments.models import resnet18, resnet50
from demp.structure import build_checked_structure


def timed(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def step_time(model, opt, x, y, steps):
    def one():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    one()  # warm-up
    _, best = timed(one, steps)
    return best


def bench(name, make, args):
    torch.manual_seed(0)
    model = make(width=args.width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    probe = torch.randn(512, 3, 32, 32)

    def trace():
        return demp.build_structure(model, probe[:4])

    structure, t_trace = timed(trace)
    _, t_build = timed(
        lambda: build_checked_structure(model, probe[:4]),
    )
    loader = [probe[i : i + 128] for i in range(0, 512, 128)]
    dead, t_detect = timed(lambda: demp.find_dead(model, loader, structure=structure))
    t_before = step_time(model, opt, x, y, args.steps)
    flops_before = forward_flops(model, x[:8])
    units = structure.num_units
    half = {n: list(range(0, g.width, 2)) for n, g in structure.groups.items()}
    report, t_cut = timed(lambda: demp.remove_units(model, half, opt, structure=structure))
    t_after = step_time(model, opt, x, y, args.steps)
    flops_after = forward_flops(model, x[:8])
    print(
        f"| {name} (width {args.width}) | {len(structure.groups)} | {units} "
        f"| {t_trace * 1e3:.0f} | {t_build * 1e3:.0f} | {t_detect * 1e3:.0f} "
        f"| {t_cut * 1e3:.1f} | {t_before:.3f} | {t_after:.3f} | {t_after / t_before:.2f} "
        f"| {flops_after / flops_before:.2f} | {report.params_after / report.params_before:.2f} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (best of)")
    parser.add_argument("--models", default="resnet18,resnet50")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, batch {args.batch}, 32x32 inputs\n"
    )
    print(
        "| model | groups | units | trace ms | trace+verify ms | detect 512 ms | remove 50% ms "
        "| step s before | step s after | step ratio | FLOPs ratio | params ratio |"
    )
    print("|---" * 12 + "|")
    makers = {"resnet18": resnet18, "resnet50": resnet50}
    for name in args.models.split(","):
        bench(name, makers[name], args)


if __name__ == "__main__":
    main()
