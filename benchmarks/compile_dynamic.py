"""Does a cut still cost a full compile with dynamic shapes? One model, cut three times.

The long preset's model (ResNet-18 at width 1/16, per-block residual units) is compiled
(Inductor, ``layout_optimization`` off as demp does on the CPU) either ``static``ally, as
:class:`demp.integrations.compiled.CompiledModel` does (a reset and a fresh compile after
each cut), or ``dynamic``ally (``dynamic=True`` with TorchDynamo's
``force_parameter_static_shapes`` off, no reset: the hope is that the shrunk model reuses
the compiled graph; ``dynamic-all`` also turns ``force_nn_module_property_static_shapes``
off, for the buffers). TorchDynamo's recompile reasons go to stderr. Each round trains
6 AdamW steps on a fixed random batch of 128 and prints the first step's time (the
compile, when there is one) and the mean of the last four; then a quarter of every
group's units is removed (``demp.remove_units``). At the end TorchDynamo's frame counters
say how many graphs were compiled.

    .venv/bin/python benchmarks/compile_dynamic.py static|dynamic|dynamic-all [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch._dynamo as dynamo
from torch import nn

import demp
from demp.experiments.harness.runner import per_block_residuals
from demp.experiments.models import build_model

OPTIONS = {"layout_optimization": False}


def compile_model(model: nn.Module, mode: str):  # noqa: ANN201 - torch.compile's type
    """The compiled model: static shapes, or dynamic parameter (and buffer) shapes."""
    if mode == "static":
        return torch.compile(model, options=OPTIONS)
    dynamo.config.force_parameter_static_shapes = False
    if mode == "dynamic-all":
        dynamo.config.force_nn_module_property_static_shapes = False
    return torch.compile(model, dynamic=True, options=OPTIONS)


def main() -> None:
    """Compile, train a few steps, cut, and again, printing the step times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("static", "dynamic", "dynamic-all"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    example = torch.randn(2, 1, 28, 28)
    model = build_model("resnet18", 10, (1, 28, 28), 0.0625, "relu")
    per_block_residuals(model, example, "per-block")
    structure = demp.build_structure(model, example)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    torch._logging.set_logs(recompiles=True)  # why each recompile happened, on stderr
    net = compile_model(model, args.mode)
    for round_ in range(args.rounds):
        times = []
        for _ in range(6):
            start = time.perf_counter()
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
        params = sum(p.numel() for p in model.parameters())
        print(f"round {round_}: {params} params, first step {times[0]:.2f} s, "
              f"then {sum(times[2:]) / 4:.4f} s/step", flush=True)  # fmt: skip
        cuts = {n: list(range(g.width // 4)) for n, g in structure.groups.items() if g.width >= 4}
        demp.remove_units(model, cuts, optimizer=opt, structure=structure)
        if args.mode == "static":
            dynamo.reset()
            net = compile_model(model, "static")
    from torch._dynamo.utils import counters

    print("frames compiled:", dict(counters["frames"]))


if __name__ == "__main__":
    main()
