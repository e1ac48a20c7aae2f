"""``overlap``: do dead units stay dead? Overlap with the final dead set (paper Fig. 8).

At every check, the overlap ratio ``|X & Y| / min(|X|, |Y|)`` between the dead set X at
that check and the dead set Y at the end (after Sokar et al. 2023), for Lasso(gamma)
runs of the BatchNorm MLP with Adam and with SGD + momentum; with the units that revived
between checks. A ratio near 1 means units that die stay dead, which is what justifies
removing them during training.
"""

from __future__ import annotations

from typing import Any

from .common import Context, Setup, subplots, train_tracked

BASE = Setup(model="mlp-bn", reg="l1", reg_target="norm_scale")
OPTIMIZERS = {"Adam": ("adam", 5e-3), "SGDM": ("sgdm", 0.05)}
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"setup": BASE.replace(width=0.25, steps=40, check_every=10, probe_size=128),
             "train_size": None, "lambdas": (0.5,), "optimizers": {"Adam": ("adam", 0.05)}},
    "quick": {"setup": BASE.replace(steps=2000, check_every=50), "train_size": 10000,
              "lambdas": (3e-3, 1e-2, 3e-2)},
    "full": {"setup": BASE.replace(steps=6000, check_every=100), "train_size": None,
             "lambdas": (1e-4, 1e-3, 3e-3, 1e-2)},
}  # fmt: skip


def run(ctx: Context) -> tuple[dict[str, Any], Any]:
    """Train each optimizer x lambda with frequent checks; return overlap curves and a figure."""
    size = SIZES[ctx.size]
    data = ctx.data(size["train_size"])
    optimizers = size.get("optimizers", OPTIMIZERS)
    bar = ctx.bar(len(optimizers) * len(size["lambdas"]), "overlap")
    curves = []
    for opt_name, (opt, lr) in optimizers.items():
        for lam in size["lambdas"]:
            r = train_tracked(size["setup"].replace(optimizer=opt, lr=lr, reg_strength=lam), data)
            defined = [o for o in r["overlap"] if o is not None]
            curves.append({
                "optimizer": opt_name, "lambda": lam, "steps": r["steps"], "dead": r["dead"],
                "overlap": r["overlap"], "min_overlap": min(defined) if defined else None,
                "revived_total": sum(x["revived"] for x in r["revivals"]),
                "died_total": sum(x["died"] for x in r["revivals"]),
            })  # fmt: skip
            bar.update(1)
    bar.close()
    return {"curves": curves}, _plot(curves)


def _plot(curves: list[dict[str, Any]]) -> Any:
    names = list(dict.fromkeys(c["optimizer"] for c in curves))
    fig, axes = subplots(len(names), 5.5, 3.8)
    for ax, opt_name in zip(axes, names, strict=True):
        for c in (c for c in curves if c["optimizer"] == opt_name):
            pts = [(s, o) for s, o in zip(c["steps"], c["overlap"], strict=True) if o is not None]
            ax.plot([s for s, _ in pts], [o for _, o in pts], label=f"{c['lambda']:g}")
        ax.set(xlabel="training step", ylabel="overlap with the final dead set",
               title=f"Lasso(gamma), {opt_name}", ylim=(0, 1.05))  # fmt: skip
        ax.legend(title="lambda", fontsize=7)
        ax.grid(alpha=0.3)
    return fig
