"""How much of a training step does not shrink with the model? Step time against FLOPs.

DemP's promise is that a narrower network trains faster. That holds in seconds only as
far as the step time falls with the FLOPs. This script times the training step (AdamW,
cross-entropy, one fixed random batch, eager) of the same architecture at several widths
in one process, interleaved round by round, and fits ``time = a + b * FLOPs`` by least
squares over the widths: ``a`` is the part of the step that no pruning removes (operator
dispatch, memory traffic, the optimizer's per-tensor work, thread start-up), as a share of
the widest model's step. From the fit it prints the best training-time ratio a run could
reach at a given training-FLOPs ratio: ``(a + b * r * F_dense) / (a + b * F_dense)``.

    .venv/bin/python benchmarks/step_floor.py [--model resnet18] \\
        [--widths 0.0625 0.125 0.1875 0.25] [--threads 2] [--steps 20] [--rounds 3] \\
        [--ratio 0.606] [--impl loop fused]

``--impl`` times AdamW's implementations side by side (torch's CPU default is the
per-tensor loop; ``fused`` needs torch 2.4+ on the CPU): the optimizer's per-tensor work is
part of the floor, and the same for a pruned model (it has as many tensors).

Widths are the model's width multipliers (``build_model``'s ``width``); the FLOPs are
``demp.forward_flops`` of one example, times 3 for a training step (forward and
backward), times the batch.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

import demp
from demp.experiments.models import build_model


def step_time(model: nn.Module, opt: torch.optim.Optimizer, x, y, steps: int) -> float:
    """Median seconds of ``steps`` training steps (after two warm-up steps)."""
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def fit(flops: list[float], seconds: list[float]) -> tuple[float, float]:
    """Least-squares ``seconds = a + b * flops``: returns (a, b)."""
    mean_f, mean_s = statistics.fmean(flops), statistics.fmean(seconds)
    var = sum((f - mean_f) ** 2 for f in flops)
    b = sum((f - mean_f) * (s - mean_s) for f, s in zip(flops, seconds, strict=True)) / var
    return mean_s - b * mean_f, b


def main() -> None:
    """Time each width, fit the floor, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--widths", type=float, nargs="+", default=[0.0625, 0.125, 0.1875, 0.25])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--ratio", type=float, nargs="*", default=[0.606], help="FLOPs ratios")
    parser.add_argument("--impl", nargs="+", default=["loop"], choices=("loop", "foreach", "fused"),
                        help="AdamW implementations (loop: torch's CPU default)")  # fmt: skip
    args = parser.parse_args()
    if len(set(args.widths)) < 2:
        parser.error("--widths needs at least two different widths to fit a line")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (1, 28, 28)
    x, y = torch.randn(args.batch, *shape), torch.randint(0, 10, (args.batch,))
    models = {w: build_model(args.model, 10, shape, w, "relu") for w in args.widths}
    flops = {w: 3.0 * args.batch * demp.forward_flops(m, x[:1]) for w, m in models.items()}
    cases = [(w, impl) for impl in args.impl for w in args.widths]
    opts = {(w, i): adamw(models[w], i) for w, i in cases}
    times: dict[tuple[float, str], list[float]] = {case: [] for case in cases}
    for _ in range(args.rounds):  # interleaved: drift of the machine hits every case alike
        for w, impl in cases:
            times[w, impl].append(step_time(models[w], opts[w, impl], x, y, args.steps))
    seconds = {case: statistics.median(t) for case, t in times.items()}
    print(f"{platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"batch {args.batch}, {args.model}, AdamW")  # fmt: skip
    print("| AdamW | width | train GFLOPs/step | s/step (median of rounds) | fit s/step |")
    print("|---|---|---|---|---|")
    widest, floors = max(args.widths), []
    for impl in args.impl:
        a, b = fit([flops[w] for w in args.widths], [seconds[w, impl] for w in args.widths])
        for w in args.widths:
            print(f"| {impl} | {w:g} | {flops[w] / 1e9:.3f} | {seconds[w, impl]:.4f} | "
                  f"{a + b * flops[w]:.4f} |")  # fmt: skip
        full = a + b * flops[widest]
        ratios = ", ".join(
            f"FLOPs {r:g} -> time {(a + b * r * flops[widest]) / full:.3f}" for r in args.ratio
        )
        floors.append(f"{impl}: floor {a:.4f} s/step = {a / full:.2f} of width {widest:g}'s "
                      f"step; best training-time ratio at {ratios}")  # fmt: skip
    print("\n" + "\n".join(floors))


def adamw(model: nn.Module, impl: str) -> torch.optim.Optimizer:
    """AdamW over ``model`` with the implementation named: loop, foreach or fused."""
    options = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4, **options[impl])


if __name__ == "__main__":
    main()
