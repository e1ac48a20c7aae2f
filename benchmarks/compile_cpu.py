"""Training step time, eager against ``torch.compile``, for dense and DemP-pruned models.

(Also on a GPU: ``--device cuda --mode reduce-overhead`` compiles with CUDA graphs;
benchmarks/compile_gpu.sh is the script for a lent device.)

For each run folder given, the model is built from its ``config.json`` and loaded from its
final checkpoint (a DemP run's checkpoint holds the pruned architecture; a dense run's the
dense one). Each model then trains ``--steps`` AdamW steps on one fixed random batch of the
run's shape, eagerly and through :class:`demp.integrations.compiled.CompiledModel`
(Inductor, the default backend), in the same process, one after the other. The first
compiled step (the compile, forward and backward) is timed apart; two warm-up steps
follow for both. Ratios are eager / compiled step time, taken in the same run.

    .venv/bin/python benchmarks/compile_cpu.py RUN_DIR [RUN_DIR...] [--steps 30] \\
        [--threads 2] [--md FILE] [--device cuda] [--mode reduce-overhead] \\
        [--option KEY=JSON ...]

``--option`` passes Inductor options to the compile (e.g. ``layout_optimization=false``;
demp's ``CompiledModel`` adds that one by itself on the CPU unless options are given).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn

import demp
from demp.experiments.data import load_dataset
from demp.experiments.harness.config import TrainConfig
from demp.experiments.harness.runner import per_block_residuals
from demp.experiments.models import build_model
from demp.integrations.compiled import CompiledModel


def load_model(run: Path, device: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The run's model at its final widths, and one batch (random inputs) of its shape."""
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    data = load_dataset(config.dataset, config.data_dir, train_size=16, test_size=16)
    torch.manual_seed(0)
    model = build_model(config.model, data.num_classes, data.input_shape, config.width,
                        config.activation)  # fmt: skip
    per_block_residuals(model, data.train_x[:2], config.residual_mode())
    demp.load_checkpoint(run / "checkpoint", model)
    x = torch.randn(config.batch_size, *data.input_shape, device=device)
    y = torch.randint(0, data.num_classes, (config.batch_size,), device=device)
    return model.to(device), x, y


def step(net, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One training step."""
    loss = nn.functional.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def time_steps(net, model: nn.Module, x, y, steps: int) -> tuple[float, float]:
    """(seconds of the first step, seconds per step over ``steps`` after 2 warm-up steps)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    start = time.perf_counter()
    step(net, opt, x, y)
    _sync(x)
    first = time.perf_counter() - start
    for _ in range(2):
        step(net, opt, x, y)
    _sync(x)
    start = time.perf_counter()
    for _ in range(steps):
        step(net, opt, x, y)
    _sync(x)
    return first, (time.perf_counter() - start) / steps


def _sync(x: torch.Tensor) -> None:
    """Wait for the device (CUDA runs asynchronously)."""
    if x.is_cuda:
        torch.cuda.synchronize()


def measure(
    run: Path, steps: int, device: str = "cpu", mode: str | None = None, options: dict | None = None
) -> dict:
    """Eager and compiled step times of one run's model (``options``: Inductor's)."""
    model, x, y = load_model(run, device)
    model.train()
    params = demp.count_trainable(model)
    _, eager = time_steps(model, model, x, y, steps)
    torch._dynamo.reset()
    kwargs = {"mode": mode} if mode else {}
    compiled = CompiledModel(model, **kwargs, **({"options": options} if options else {}))
    compile_s, fast = time_steps(compiled, model, x, y, steps)
    return {"run": str(run), "params": params, "eager_s": eager, "compiled_s": fast,
            "first_compiled_step_s": compile_s, "speedup": eager / fast}  # fmt: skip


def table(rows: list[dict], threads: int, steps: int, where: str) -> str:
    """The Markdown table of the measurements."""
    lines = [
        f"{where}, {threads} torch threads, torch {torch.__version__}, {steps} timed steps "
        "per cell",
        "",
        "| run | trainable params | eager s/step | compiled s/step | eager / compiled "
        "| first compiled step (compile) s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['params']} | {r['eager_s']:.4f} | {r['compiled_s']:.4f} "
            f"| {r['speedup']:.2f}x | {r['first_compiled_step_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Measure every run folder given and print (or write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--mode", default=None, help="torch.compile mode (reduce-overhead: CUDA graphs)"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="an Inductor option, e.g. layout_optimization=false (repeatable)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)} or None
    rows = []
    for run in args.runs:
        rows.append(measure(run, args.steps, args.device, args.mode, options))
        print(json.dumps(rows[-1]), flush=True)
    where = platform.processor() or platform.machine()
    if args.device.startswith("cuda"):
        where = f"{torch.cuda.get_device_name()}, mode {args.mode or 'default'}"
    text = table(rows, args.threads, args.steps, where)
    print(text)
    if args.md:
        args.md.write_text(text + "\n")


if __name__ == "__main__":
    main()
