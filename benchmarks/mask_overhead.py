"""Training cost of the unstructured baselines (masks) against a plain dense step.

Masked models keep every unit, so their forward and backward passes cost what dense ones
do; what a mask adds is holding the zeros after every step (the weights and Adam's two
moments multiplied by the mask) and the mask updates themselves (magnitude: a ranking at
every step of its schedule; SET and RigL: a drop and a regrowth every ``Delta T`` steps;
SNIP: one scoring pass before training). This times, in one process on the ``long``
preset's model (CIFAR-style ResNet-18 at width 1/16 on 28x28 inputs, Adam, batch 128):

- a plain training step and, interleaved with it, the same step of every method's
  model followed by holding its masks, then a second dense model's step (medians; the
  second dense model shows how much a step's place in the round alone changes it);
- every mask update of a whole run of ``--total-steps`` steps, called at the steps the
  run calls them, amortized over the run;
- the set-up (SNIP's scores, the first masks), amortized likewise.

"mask work / dense step" is that work (holding, updates, set-up) over a dense run's steps:
the overhead a mask costs. "run / dense run" adds the measured step medians instead of the
plain one, so it also carries this machine's step-to-step timing noise.

    .venv/bin/python benchmarks/mask_overhead.py [--target 0.9] [--steps 15] \\
        [--total-steps 1170] [--threads 1] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch
from overhead import median, one_step, sync  # benchmarks/overhead.py

from demp.experiments.models import build_model
from demp.methods import MethodContext, get_method, method_names


def timed(device: torch.device, fn, *args) -> tuple[float, object]:
    """Seconds ``fn(*args)`` takes (synchronized) and what it returns."""
    sync(device)
    start = time.perf_counter()
    out = fn(*args)
    sync(device)
    return time.perf_counter() - start, out


def setup(name: str, base, x, y, args) -> tuple:
    """One method's model, optimizer, context and method, its first masks set (timed)."""
    model = copy.deepcopy(base)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3, weight_decay=5e-4)
    ctx = MethodContext(
        model, opt, args.total_steps, args.total_steps // 30, x[:32], args.batch,
        score_batches=lambda n: [(x, y)] * n,
    )  # fmt: skip
    spec = get_method(name)
    method = spec.factory(spec.make_options({"target": args.target}), ctx)
    seconds, _ = timed(x.device, method.before_training, ctx)
    return model, opt, ctx, method, seconds


def updates(method, ctx, total_steps: int, device: torch.device) -> tuple[float, list[int]]:
    """Seconds of every mask update of a run (and holding after it), and their steps."""
    spent, steps = 0.0, []
    for step in range(1, total_steps + 1):
        seconds, changed = timed(device, method.update, ctx, step)
        if changed:
            seconds += timed(device, method.masks.apply, ctx.model, ctx.optimizer)[0]
            steps.append(step)
        spent += seconds
    return spent, steps


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--width", type=float, default=0.0625)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--total-steps", type=int, default=1170)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print the table; return its rows by method."""
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    base = build_model("resnet18", 10, (1, 28, 28), args.width).to(device)
    x = torch.randn(args.batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    plain, control = copy.deepcopy(base), copy.deepcopy(base)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=5e-3, weight_decay=5e-4)
    opt_control = torch.optim.Adam(control.parameters(), lr=5e-3, weight_decay=5e-4)
    runs = {n: setup(n, base, x, y, args) for n in method_names("unstructured")}

    def masked_step(run) -> tuple[float, float]:
        model, opt, _, method, _ = run
        return one_step(model, opt, x, y), timed(device, method.masks.apply, model, opt)[0]

    one_step(plain, opt_plain, x, y)  # warm-up, then interleave to cancel machine drift
    for run in runs.values():
        masked_step(run)
    plain_times, control_times, step_times = [], [], {n: [] for n in runs}
    for _ in range(args.steps):
        plain_times.append(one_step(plain, opt_plain, x, y))
        for n, run in runs.items():
            step_times[n].append(masked_step(run))
        control_times.append(one_step(control, opt_control, x, y))
    t_plain = median(plain_times)
    dense_run = t_plain * args.total_steps
    rows = {}
    for n, (_, _, ctx, method, set_up) in runs.items():
        spent, steps = updates(method, ctx, args.total_steps, device)
        step = median([s for s, _ in step_times[n]])
        hold = median([h for _, h in step_times[n]])
        both = median([s + h for s, h in step_times[n]])
        rows[n] = {
            "step": step, "hold": hold, "updates": len(steps), "update_steps": steps,
            "update_seconds": spent,
            "setup_seconds": set_up, "zeros": method.masks.zeros(),
            "work": (hold * args.total_steps + spent + set_up) / dense_run,
            "run": (both * args.total_steps + spent + set_up) / dense_run,
        }  # fmt: skip
    report(args, device, t_plain, median(control_times), rows)
    return rows


def report(args, device: torch.device, t_plain: float, t_control: float, rows: dict) -> None:
    """The markdown table."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
        f"{device} {gpu}, ResNet-18 width {args.width}, batch {args.batch}, "
        f"target {args.target}, {args.total_steps} steps a run, medians of {args.steps}\n"
    )
    print(
        "| method | step (median) | holding the masks (median) | updates in a run "
        "| their seconds | set-up seconds | mask work / dense step | run / dense run |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(f"| dense (plain step) | {t_plain:.4f} | | | | | | 1 |")
    control = f"{t_control / t_plain:.3f}"
    print(f"| dense again, timed last in each round | {t_control:.4f} | | | | | | {control} |")
    for n, r in rows.items():
        print(
            f"| {n} | {r['step']:.4f} | {r['hold']:.5f} | {r['updates']} "
            f"| {r['update_seconds']:.3f} | {r['setup_seconds']:.3f} | {r['work']:.4f} "
            f"| {r['run']:.3f} |"
        )


if __name__ == "__main__":
    main()
