"""``noise-regimes``: which noise kills units? (paper §2.2, appendix D.1, Fig. 9).

The MNIST 100-300-10 MLP on a fixed subset of training images, updated with minibatches
of one example, in four regimes (``g`` the full-batch gradient over the subset, ``g_b``
the one-example gradient, ``eta`` the learning rate):

- ``sgd-noise``: ``w -= eta * (g_b - g)``, the noisy part of SGD alone. It is asymmetric:
  a dead unit gets no gradient from any example, so no noise either.
- ``asymmetric``: ``w -= eta * xi`` with Gaussian ``xi`` only where ``g != 0`` (live units).
- ``symmetric``: ``w -= eta * xi`` everywhere, dead units included.
- ``sgd``: plain SGD, ``w -= eta * g_b``.

The Gaussian noise has, per parameter tensor, the root-mean-square of ``g_b - g`` measured
at initialization, so the Gaussian and SGD regimes have the same noise scale. A unit is
dead when its ReLU output is zero on every image of the subset.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models import build_model
from .common import Context, mean_std, subplots

REGIMES = ("sgd-noise", "asymmetric", "symmetric", "sgd")
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"images": 128, "steps": 60, "checks": 6, "lrs": (0.1,), "seeds": 1},
    "quick": {"images": 2000, "steps": 1500, "checks": 15, "lrs": (0.05, 0.1), "seeds": 1},
    "full": {"images": 10000, "steps": 30000, "checks": 60,
             "lrs": (0.01, 0.025, 0.05, 0.075, 0.1), "seeds": 3},
}  # fmt: skip


def run(ctx: Context) -> tuple[dict[str, Any], Any]:
    """Train every regime x learning rate (x seeds); return dead counts and a figure."""
    size = SIZES[ctx.size]
    data = ctx.data(size["images"])
    x, y = data.train_x, data.train_y
    bar = ctx.bar(len(REGIMES) * len(size["lrs"]) * size["seeds"], "noise-regimes")
    curves = []
    for regime in REGIMES:
        for lr in size["lrs"]:
            runs = []
            for seed in range(size["seeds"]):
                runs.append(train_regime(regime, lr, x, y, data.num_classes, size, seed))
                bar.update(1)
            stats = [mean_std([r[i] for _, r in runs]) for i in range(len(runs[0][1]))]
            curves.append({"regime": regime, "lr": lr, "steps": runs[0][0],
                           "dead_mean": [m for m, _ in stats], "dead_std": [s for _, s in stats],
                           "units": 400})  # fmt: skip
    bar.close()
    return {"curves": curves, "images": len(x)}, _plot(curves)


def train_regime(
    regime: str, lr: float, x: torch.Tensor, y: torch.Tensor, k: int, size: dict, seed: int
) -> tuple[list[int], list[int]]:
    """One run; returns (steps, dead hidden units at each check)."""
    torch.manual_seed(seed)
    model = build_model("mlp", k, tuple(x.shape[1:]))
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(seed + 1)
    order = torch.randint(0, len(x), (size["steps"],), generator=gen)
    scale = _noise_scale(model, params, x, y, order[:32]) if regime in REGIMES[1:3] else None
    every = max(1, size["steps"] // size["checks"])
    steps, dead = [0], [_dead(model, x)]
    for t in range(size["steps"]):
        update = _update(regime, model, params, x, y, int(order[t]), scale, gen)
        with torch.no_grad():
            for p, u in zip(params, update, strict=True):
                p.sub_(lr * u)
        if (t + 1) % every == 0:
            steps.append(t + 1)
            dead.append(_dead(model, x))
    return steps, dead


def _grads(model: nn.Module, params: list, x: torch.Tensor, y: torch.Tensor) -> list:
    loss = nn.functional.cross_entropy(model(x), y)
    return list(torch.autograd.grad(loss, params))


def _update(regime: str, model: nn.Module, params: list, x: torch.Tensor, y: torch.Tensor,
            i: int, scale: list | None, gen: torch.Generator) -> list:  # fmt: skip
    if regime == "sgd":
        return _grads(model, params, x[i : i + 1], y[i : i + 1])
    full = _grads(model, params, x, y)
    if regime == "sgd-noise":
        one = _grads(model, params, x[i : i + 1], y[i : i + 1])
        return [a - b for a, b in zip(one, full, strict=True)]
    noise = [torch.randn(p.shape, generator=gen) * s for p, s in zip(params, scale, strict=True)]
    if regime == "asymmetric":
        noise = [n * (g != 0) for n, g in zip(noise, full, strict=True)]
    return noise


def _noise_scale(model: nn.Module, params: list, x: torch.Tensor, y: torch.Tensor,
                 picks: torch.Tensor) -> list[float]:  # fmt: skip
    """Per tensor, the RMS of (one-example gradient - full gradient) at initialization."""
    full = _grads(model, params, x, y)
    sums = [0.0] * len(params)
    for i in picks.tolist():
        one = _grads(model, params, x[i : i + 1], y[i : i + 1])
        sums = [s + float(((a - b) ** 2).mean()) for s, a, b in zip(sums, one, full, strict=True)]
    return [(s / len(picks)) ** 0.5 for s in sums]


def _dead(model: nn.Module, x: torch.Tensor) -> int:
    """Hidden ReLU units whose output is zero on every example."""
    dead, h = 0, x.flatten(1)
    with torch.no_grad():
        for layer in model.body:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                dead += int((h.amax(0) <= 0).sum())
    return dead


def _plot(curves: list[dict[str, Any]]) -> Any:
    panels = (("sgd-noise",), ("asymmetric", "symmetric"), ("sgd",))
    titles = ("pure SGD noise", "Gaussian noise (solid: asymmetric, dashed: symmetric)", "SGD")
    fig, axes = subplots(3, 4.7, 3.8)
    for ax, regimes, title in zip(axes, panels, titles, strict=True):
        for c in (c for c in curves if c["regime"] in regimes):
            style = "--" if c["regime"] == "symmetric" else "-"
            ax.plot(c["steps"], c["dead_mean"], style, label=f"{c['regime']} {c['lr']:g}")
        ax.set(xlabel="step (batch of 1)", ylabel="dead hidden units (of 400)", title=title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return fig
