"""``adam-epsilon``: neuron sparsity vs Adam's eps, 1e-10 to 1e-4 (paper Fig. 11).

Appendix E: for units whose gradients are tiny, eps dominates sqrt(v_hat) in Adam's update
and a few noisy gradients make huge steps; a larger eps damps them, so fewer units die.
No regularization and no noise: plain Adam at two learning rates.
"""

from __future__ import annotations

from typing import Any

from .common import Context, Setup, mean_std, subplots, train_tracked

EPSILONS = (1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4)
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"setup": Setup(width=0.25, steps=40, check_every=40, probe_size=128),
             "train_size": None, "eps": (1e-10, 1e-4), "lrs": (0.05,), "seeds": 2},
    "quick": {"setup": Setup(steps=1000, check_every=1000), "train_size": 10000,
              "eps": EPSILONS, "lrs": (0.005, 0.01), "seeds": 2},
    "full": {"setup": Setup(model="resnet18", width=0.25, steps=3000, check_every=3000),
             "train_size": None, "eps": EPSILONS, "lrs": (0.005, 0.01), "seeds": 3},
}  # fmt: skip


def run(ctx: Context) -> tuple[dict[str, Any], Any]:
    """Train every eps x learning rate (x seeds); return final sparsity and a figure."""
    size = SIZES[ctx.size]
    data = ctx.data(size["train_size"])
    bar = ctx.bar(len(size["eps"]) * len(size["lrs"]) * size["seeds"], "adam-epsilon")
    rows = []
    for lr in size["lrs"]:
        for eps in size["eps"]:
            ratios = []
            for seed in range(size["seeds"]):
                setup = size["setup"].replace(lr=lr, adam_eps=eps, seed=seed)
                ratios.append(train_tracked(setup, data)["ratio"][-1])
                bar.update(1)
            mean, std = mean_std(ratios)
            rows.append({"lr": lr, "adam_eps": eps, "sparsity_mean": mean, "sparsity_std": std,
                         "sparsities": ratios})  # fmt: skip
    bar.close()
    return {"rows": rows}, _plot(rows)


def _plot(rows: list[dict[str, Any]]) -> Any:
    fig, (ax,) = subplots()
    for lr in sorted({r["lr"] for r in rows}):
        sel = [r for r in rows if r["lr"] == lr]
        ax.errorbar([r["adam_eps"] for r in sel], [100 * r["sparsity_mean"] for r in sel],
                    yerr=[100 * r["sparsity_std"] for r in sel], fmt="-o", capsize=3,
                    label=f"{lr:g}")  # fmt: skip
    ax.set_xscale("log")
    ax.set(xlabel="Adam eps", ylabel="neuron sparsity (%)", title="Dead units vs Adam's eps")
    ax.legend(title="learning rate")
    ax.grid(alpha=0.3)
    return fig
