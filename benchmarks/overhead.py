"""Pruner overhead: regularizer + noise per step, and a death check, vs the training step.

CIFAR-style ResNet-18, Adam, 32x32 inputs. Times the same model's training step without a
pruner and with a DemonPruner attached (between prune events: regularizer gradient,
asymmetric-noise masks and noise), then one death check + removal on 512 probe examples,
amortized over ``prune_every`` steps.

    .venv/bin/python benchmarks/overhead.py [--width 64] [--batch 128] [--steps 5]
        [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch
from torch import nn

import demp
from demp.experiments.models import resnet18


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_step(model, opt, x, y):
    sync(x.device)
    start = time.perf_counter()
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    sync(x.device)
    return time.perf_counter() - start


def median(values):
    return sorted(values)[len(values) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prune-every", type=int, default=125)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    base = resnet18(width=args.width).to(device)
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    probe = [torch.randn(128, 3, 32, 32, device=device) for _ in range(4)]

    plain = copy.deepcopy(base)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=1e-3)
    model = copy.deepcopy(base)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    cfg = demp.DemPConfig(prune_every=10**9)
    pruner = demp.DemonPruner(model, opt, probe, total_steps=1000, config=cfg)
    one_step(plain, opt_plain, x, y)  # warm-up, then interleave to cancel machine drift
    one_step(model, opt, x, y)
    pruner.seconds = dict.fromkeys(pruner.seconds, 0.0)
    plain_times, dem_times = [], []
    for _ in range(args.steps):
        plain_times.append(one_step(plain, opt_plain, x, y))
        dem_times.append(one_step(model, opt, x, y))
    t_plain, t_dem = median(plain_times), median(dem_times)
    per_step = {k: v / args.steps for k, v in pruner.seconds.items()}
    sync(device)
    start = time.perf_counter()
    pruner.prune_now()
    sync(device)
    t_check = time.perf_counter() - start

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.machine()}, {device} {gpu}, ResNet-18 width {args.width}, batch {args.batch}\n"
    )
    print("| quantity | seconds | fraction of a plain step |")
    print("|---|---|---|")
    print(f"| plain step (median of {args.steps}) | {t_plain:.4f} | 1 |")
    print(f"| step with DemonPruner attached (median) | {t_dem:.4f} | {t_dem / t_plain:.3f} |")
    for k in ("regularizer", "noise"):
        print(
            f"| {k} inside the pruner, per step | {per_step[k]:.4f} | {per_step[k] / t_plain:.3f} |"
        )
    print(f"| one death check + removal (512 examples) | {t_check:.3f} | {t_check / t_plain:.2f} |")
    inside = (per_step["regularizer"] + per_step["noise"]) / t_plain
    amortized = inside + t_check / (args.prune_every * t_plain)
    print(f"| pruner time per step + a check every {args.prune_every} steps | | {amortized:.3f} |")


if __name__ == "__main__":
    main()
