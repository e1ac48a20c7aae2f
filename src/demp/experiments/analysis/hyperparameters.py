"""``hyperparameters``: width, learning rate and batch size vs dead units (paper Fig. 10).

Left: live-unit ratio at the end vs the width multiplier, for Adam and SGD with momentum
at two learning rates each. Right: dead units at the end relative to a base configuration
(Adam, batch 128, lr 0.01 for the MLP; the paper's ResNet-18 base is lr 0.05, which kills
almost every unit of the plain MLP), varying the learning rate, then the batch size at a
fixed number of steps. No regularization.
"""

from __future__ import annotations

from typing import Any

from .common import Context, Setup, mean_std, subplots, train_tracked

OPTIMIZERS = (("adam", 0.05), ("adam", 0.01), ("sgdm", 0.3), ("sgdm", 0.5))
LRS = (0.0025, 0.005, 0.01, 0.02, 0.04)
BATCHES = (16, 32, 64, 128, 256)
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"setup": Setup(steps=30, check_every=30, probe_size=128), "train_size": None,
             "widths": (0.25, 0.5), "optimizers": OPTIMIZERS[:1], "lrs": (0.01, 0.04),
             "batches": (32, 128), "seeds": 1},
    "quick": {"setup": Setup(steps=400, check_every=400), "train_size": 10000,
              "widths": (0.25, 0.5, 1.0, 2.0), "optimizers": OPTIMIZERS, "lrs": LRS,
              "batches": BATCHES, "seeds": 1},
    "full": {"setup": Setup(steps=3000, check_every=3000), "train_size": None,
             "widths": (0.25, 0.5, 1.0, 2.0, 4.0), "optimizers": OPTIMIZERS, "lrs": LRS,
             "batches": BATCHES, "seeds": 3},
}  # fmt: skip
BASE_LR, BASE_BATCH = 0.01, 128


def run(ctx: Context) -> tuple[dict[str, Any], Any]:
    """Sweep width x optimizer, then learning rate and batch size; return numbers and a figure."""
    size = SIZES[ctx.size]
    data = ctx.data(size["train_size"])
    total = len(size["widths"]) * len(size["optimizers"]) + len(size["lrs"]) + len(size["batches"])
    bar = ctx.bar(total * size["seeds"], "hyperparameters")

    def final(setup: Setup) -> list[dict[str, Any]]:
        runs = []
        for seed in range(size["seeds"]):
            runs.append(train_tracked(setup.replace(seed=seed), data))
            bar.update(1)
        return runs

    width_rows = []
    for opt, lr in size["optimizers"]:
        for width in size["widths"]:
            runs = final(size["setup"].replace(optimizer=opt, lr=lr, width=width))
            live = mean_std([1 - r["ratio"][-1] for r in runs])
            width_rows.append({
                "optimizer": opt, "lr": lr, "width": width, "units": runs[0]["units"],
                "live_ratio_mean": live[0], "live_ratio_std": live[1],
            })  # fmt: skip
    dead = {}
    for kind, values in (("lr", size["lrs"]), ("batch_size", size["batches"])):
        for value in values:
            setup = size["setup"].replace(**{"lr": BASE_LR, "batch_size": BASE_BATCH, kind: value})
            dead[(kind, value)] = mean_std([r["dead"][-1] for r in final(setup)])[0]
    base = dead.get(("lr", BASE_LR), dead.get(("batch_size", BASE_BATCH)))
    if base is None:
        base = mean_std([r["dead"][-1] for r in final(size["setup"].replace(lr=BASE_LR))])[0]
    variation = [{"vary": k, "value": v, "dead_mean": d, "relative": d / base if base else None}
                 for (k, v), d in dead.items()]  # fmt: skip
    bar.close()
    result = {"width": width_rows, "variation": variation, "base_dead": base,
              "base": {"optimizer": "adam", "lr": BASE_LR, "batch_size": BASE_BATCH}}  # fmt: skip
    return result, _plot(width_rows, variation)


def _plot(width_rows: list[dict[str, Any]], variation: list[dict[str, Any]]) -> Any:
    fig, (a, b, c) = subplots(3, 4.3, 3.8)
    for opt, lr in sorted({(r["optimizer"], r["lr"]) for r in width_rows}):
        rows = [r for r in width_rows if (r["optimizer"], r["lr"]) == (opt, lr)]
        a.plot([r["width"] for r in rows], [r["live_ratio_mean"] for r in rows], "-o",
               label=f"{opt} - {lr:g}", markersize=4)  # fmt: skip
    widths = sorted({r["width"] for r in width_rows})
    a.set(xlabel="width multiplier (1 = 100-300)", ylabel="live units ratio", xscale="log",
          title="Width", xticks=widths, xticklabels=[f"{w:g}" for w in widths])  # fmt: skip
    a.minorticks_off()
    a.legend(fontsize=7, title="optimizer - lr")
    for ax, kind, label in ((b, "lr", "learning rate"), (c, "batch_size", "batch size")):
        rows = [r for r in variation if r["vary"] == kind]
        ax.bar([str(r["value"]) for r in rows], [r["relative"] or 0.0 for r in rows])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set(xlabel=label, ylabel="dead units / base config", title=f"{label} (Adam)")
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
    return fig
