"""Quick start: DemP on a small CIFAR-style ResNet, next to the same run without it.

Both runs learn a synthetic 10-class image task with the same data, model, optimizer and
steps. The DemP run attaches a DemonPruner to the optimizer: L1 on BatchNorm scales with a
one-cycle schedule, asymmetric noise, and a death check every 5 % of training that removes
the dead units from the model and from Adam's state. About a minute on 2 CPU cores.

    .venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import time

import torch
from torch import nn

import demp
from demp.experiments.models import resnet18

STEPS, BATCH = 400, 64


def synthetic(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images = one of 10 fixed random prototypes + noise; the label is the prototype."""
    protos = torch.randn(10, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (n,), generator=generator)
    return protos[y] + 1.5 * torch.randn(n, 3, 16, 16, generator=generator), y


def run(use_demp: bool) -> dict[str, float]:
    """Train one model; return its test accuracy, parameters and seconds."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    train_x, train_y = synthetic(4096, g)
    test_x, test_y = synthetic(1024, g)
    model = resnet18(num_classes=10, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    pruner = None
    if use_demp:
        config = demp.DemPConfig(reg_strength=1e-2)
        pruner = demp.DemonPruner(model, opt, probe=train_x[:512], total_steps=STEPS,
                                  config=config, batch_size=BATCH)  # fmt: skip
    start = time.perf_counter()
    for step in range(STEPS):  # an ordinary training loop
        idx = torch.randint(0, len(train_x), (BATCH,), generator=g)
        loss = nn.functional.cross_entropy(model(train_x[idx]), train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if pruner and (step + 1) % pruner.prune_every == 0:
            event = pruner.history[-1]
            print(f"  step {step + 1:4d}  loss {loss.item():.3f}  units {event['units']:4d}  "
                  f"params {event['params']}")  # fmt: skip
    if pruner:
        pruner.finalize()
        print(pruner.summary())
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        acc = (model(test_x).argmax(1) == test_y).float().mean().item()
    return {"acc": acc, "params": demp.count_trainable(model), "seconds": seconds}


def main() -> None:
    """Run dense and DemP, print the comparison."""
    print("dense run ...")
    dense = run(use_demp=False)
    print("DemP run ...")
    pruned = run(use_demp=True)
    print("\n| run | test acc | trainable params | train seconds |")
    print("|---|---|---|---|")
    for name, r in (("dense", dense), ("DemP", pruned)):
        print(f"| {name} | {r['acc']:.3f} | {r['params']} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
