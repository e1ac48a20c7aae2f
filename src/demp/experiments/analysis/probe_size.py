"""``probe-size``: dead units counted on the whole training set vs 512 examples (Fig. 12).

Appendix F.3: a unit is dead if it is zero on the entire training set; checking 512
examples instead is a cheap proxy. Both counts are taken at the same steps of the same
Lasso(gamma) run (nothing removed), with Adam and with SGD + momentum.
"""

from __future__ import annotations

from typing import Any

from .common import Context, Setup, subplots, train_tracked

BASE = Setup(model="mlp-bn", reg="l1", reg_target="norm_scale", probe_size=512)
OPTIMIZERS = {"Adam": ("adam", 5e-3, 1e-2), "SGDM": ("sgdm", 0.05, 1e-2)}
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"setup": BASE.replace(width=0.25, steps=40, check_every=10, probe_size=64),
             "train_size": None, "optimizers": {"Adam": ("adam", 0.05, 0.5)}},
    "quick": {"setup": BASE.replace(steps=2000, check_every=100), "train_size": 10000},
    "full": {"setup": BASE.replace(steps=6000, check_every=250), "train_size": None},
}  # fmt: skip


def run(ctx: Context) -> tuple[dict[str, Any], Any]:
    """Train with both probes watching; return both dead counts per check and a figure."""
    size = SIZES[ctx.size]
    data = ctx.data(size["train_size"])
    optimizers = size.get("optimizers", OPTIMIZERS)
    bar = ctx.bar(len(optimizers), "probe-size")
    curves = []
    for opt_name, (opt, lr, lam) in optimizers.items():
        setup = size["setup"].replace(optimizer=opt, lr=lr, reg_strength=lam)
        r = train_tracked(setup, data, extra_probes={"full": data.train_x})
        curves.append({
            "optimizer": opt_name, "lambda": setup.reg_strength, "steps": r["steps"],
            "probe_examples": setup.probe_size, "train_examples": len(data.train_x),
            "dead_probe": r["dead"], "dead_full": r["dead_full"],
            "max_gap": max(a - b for a, b in zip(r["dead"], r["dead_full"], strict=True)),
            "final_gap": r["dead"][-1] - r["dead_full"][-1],
        })  # fmt: skip
        bar.update(1)
    bar.close()
    return {"curves": curves}, _plot(curves)


def _plot(curves: list[dict[str, Any]]) -> Any:
    fig, axes = subplots(len(curves), 5.5, 3.8)
    for ax, c in zip(axes, curves, strict=True):
        ax.plot(c["steps"], c["dead_full"], label=f"entire training set ({c['train_examples']})")
        ax.plot(c["steps"], c["dead_probe"], "--", label=f"{c['probe_examples']} examples")
        ax.set(xlabel="training step", ylabel="dead units",
               title=f"{c['optimizer']}, Lasso(gamma) {c['lambda']:g}")  # fmt: skip
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig
