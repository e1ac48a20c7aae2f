"""Quick start: grow dead units with L1 on BatchNorm scales, remove them while training.

A small CIFAR-style ResNet learns a synthetic 10-class image task. Every 50 steps the dead
units (exactly zero on a fixed probe set) are removed from the model and from Adam's state,
and training simply continues with the same optimizer. Runs in about a minute on 2 cores.

    .venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import torch
from torch import nn

import demp
from demp.accounting import forward_flops
from demp.models import resnet18


def synthetic(n, generator):
    """Images = one of 10 random prototypes + noise; the label is the prototype."""
    protos = torch.randn(10, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (n,), generator=generator)
    return protos[y] + 1.5 * torch.randn(n, 3, 16, 16, generator=generator), y


def main(steps: int = 400, prune_every: int = 50, reg: float = 5e-3) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    train_x, train_y = synthetic(4096, g)
    test_x, test_y = synthetic(1024, g)
    probe = train_x[:512]  # fixed, unaugmented training examples

    model = resnet18(num_classes=10, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    scales = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    flops0, params0 = forward_flops(model, probe[:4]), demp.count_trainable(model)
    structure = None
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(train_x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(train_x[idx]), train_y[idx])
        opt.zero_grad()
        loss.backward()
        for gamma in scales:  # Lasso on BN scales, as a gradient (goes through Adam)
            gamma.grad.add_(gamma.detach().sign(), alpha=reg)
        opt.step()
        if step % prune_every == 0:
            dead = demp.find_dead(model, probe, structure=structure)
            structure = dead.structure
            report = demp.remove_units(model, dead, opt)
            print(f"step {step:4d}  loss {loss.item():.3f}  {report}")

    model.eval()
    with torch.no_grad():
        acc = (model(test_x).argmax(1) == test_y).float().mean().item()
    params, flops = demp.count_trainable(model), forward_flops(model, probe[:4])
    print(f"\ntest accuracy {acc:.3f}")
    print(
        f"trainable parameters {params0} -> {params} ({1 - params / params0:.0%} weight sparsity)"
    )
    print(f"forward FLOPs per example {flops0:.3g} -> {flops:.3g} ({flops / flops0:.2f}x)")
    print("final widths:", structure.widths())


if __name__ == "__main__":
    main()
