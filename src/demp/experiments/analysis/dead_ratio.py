"""``dead-ratio``: dead-unit ratio over training, activation x learning rate (paper Fig. 1).

Adam, no regularization. ReLU units count as dead when exactly zero on the probe set; Leaky
ReLU (slope 0.01, the registry's) and SiLU (Swish, beta = 1) with the eps-criterion
``|a| < 0.01`` as in the paper, since they are never exactly zero.
"""

from __future__ import annotations

from typing import Any

from .common import Context, Setup, mean_std, subplots, train_tracked

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"setup": Setup(width=0.25, steps=40, check_every=10, probe_size=128),
             "train_size": None, "lrs": (0.05,), "seeds": 1},
    "quick": {"setup": Setup(steps=1500, check_every=50), "train_size": 10000,
              "lrs": (0.01, 0.05), "seeds": 2},
    "full": {"setup": Setup(model="resnet18", width=0.25, steps=3000, check_every=150),
             "train_size": None, "lrs": (0.01, 0.05), "seeds": 3},
}  # fmt: skip
ACTIVATIONS = ("relu", "leaky_relu", "silu")


def criterion_for(activation: str) -> dict[str, Any]:
    """The death test of an activation: exact zero for ReLU, ``|a| < 0.01`` otherwise."""
    return {"criterion": "zero"} if activation == "relu" else {"criterion": "eps", "eps": 0.01}


def run(ctx: Context) -> tuple[dict[str, Any], Any]:
    """Train every activation x learning rate (x seeds); return the curves and a figure."""
    size = SIZES[ctx.size]
    data = ctx.data(size["train_size"])
    curves = []
    bar = ctx.bar(len(ACTIVATIONS) * len(size["lrs"]) * size["seeds"], "dead-ratio")
    for act in ACTIVATIONS:
        for lr in size["lrs"]:
            runs = []
            for seed in range(size["seeds"]):
                setup = size["setup"].replace(activation=act, lr=lr, seed=seed,
                                              **criterion_for(act))  # fmt: skip
                runs.append(train_tracked(setup, data))
                bar.update(1)
            curves.append(_curve(act, lr, runs))
    bar.close()
    return {"curves": curves, "setup": vars(size["setup"]) | {"lr": None}}, _plot(curves)


def _curve(act: str, lr: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    stats = [mean_std([r["ratio"][i] for r in runs]) for i in range(len(runs[0]["steps"]))]
    return {
        "activation": act, "lr": lr, "steps": runs[0]["steps"], "units": runs[0]["units"],
        "ratio_mean": [m for m, _ in stats], "ratio_std": [s for _, s in stats],
        "final_ratio": stats[-1][0], "test_acc": [r["test_acc"] for r in runs],
    }  # fmt: skip


def _plot(curves: list[dict[str, Any]]) -> Any:
    fig, (ax,) = subplots()
    for c in curves:
        style = "-" if c["lr"] == max(x["lr"] for x in curves) else "--"
        ax.plot(c["steps"], c["ratio_mean"], style, label=f"{c['activation']} - {c['lr']}")
    ax.set(xlabel="training step", ylabel="dead units ratio",
           title="Dead units over training (Adam)")  # fmt: skip
    ax.legend(title="activation - lr", fontsize=8)
    ax.grid(alpha=0.3)
    return fig
