"""``regularization``: final dead-unit ratio vs regularization strength (paper Fig. 2).

Left: L2, Lasso, L2(gamma) and Lasso(gamma) (gamma: only the normalization scales) with
AdamW and SGD with momentum. Right: Lasso(gamma) with asymmetric Gaussian noise of several
standard deviations added to the live units' weights after each step. The regularizer and
the noise are DemP's own (constant schedule, nothing removed); the model is the MLP with
BatchNorm (``mlp-bn``), whose scales the (gamma) variants regularize.
"""

from __future__ import annotations

from typing import Any

from .common import Context, Setup, mean_std, subplots, train_tracked

REGULARIZERS = {
    "L2": ("l2", "all"),
    "Lasso": ("l1", "all"),
    "L2(gamma)": ("l2", "norm_scale"),
    "Lasso(gamma)": ("l1", "norm_scale"),
}
OPTIMIZERS = {"AdamW": ("adamw", 5e-3), "SGDM": ("sgdm", 0.05)}
BASE = Setup(model="mlp-bn", probe_size=512)

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"setup": BASE.replace(width=0.25, steps=40, check_every=40, probe_size=128),
             "train_size": None, "lambdas": (0.0, 0.05), "noise_lambdas": (0.0, 0.05),
             "noises": (0.0, 1e-3), "seeds": 2, "regularizers": ("Lasso", "Lasso(gamma)"),
             "optimizers": ("AdamW",)},
    "quick": {"setup": BASE.replace(steps=1200, check_every=1200), "train_size": 10000,
              "lambdas": (0.0, 0.0025, 0.005, 0.01), "noise_lambdas": (0.0, 0.0025, 0.005, 0.01),
              "noises": (0.0, 5e-5, 1e-4, 5e-4, 1e-3), "seeds": 1},
    "full": {"setup": BASE.replace(steps=3000, check_every=3000), "train_size": None,
             "lambdas": (0.0, 0.001, 0.0025, 0.005, 0.0075, 0.01),
             "noise_lambdas": (0.0, 0.001, 0.002, 0.003, 0.004),
             "noises": (0.0, 5e-5, 1e-4, 5e-4, 1e-3), "seeds": 3},
}  # fmt: skip


def run(ctx: Context) -> tuple[dict[str, Any], Any]:
    """Sweep both panels; return final dead ratios (mean and std over seeds) and a figure."""
    size = SIZES[ctx.size]
    data = ctx.data(size["train_size"])
    regularizers = size.get("regularizers", tuple(REGULARIZERS))
    optimizers = size.get("optimizers", tuple(OPTIMIZERS))
    n_left = len(regularizers) * len(optimizers) * len(size["lambdas"])
    bar = ctx.bar((n_left + len(size["noises"]) * len(size["noise_lambdas"])) * size["seeds"],
                  "regularization")  # fmt: skip

    def final(setup: Setup) -> dict[str, Any]:
        ratios = []
        for seed in range(size["seeds"]):
            ratios.append(train_tracked(setup.replace(seed=seed), data)["ratio"][-1])
            bar.update(1)
        mean, std = mean_std(ratios)
        return {"ratio_mean": mean, "ratio_std": std, "ratios": ratios}

    left = []
    for reg_name in regularizers:
        reg, target = REGULARIZERS[reg_name]
        for opt_name in optimizers:
            opt, lr = OPTIMIZERS[opt_name]
            for lam in size["lambdas"]:
                setup = size["setup"].replace(reg=reg, reg_target=target, reg_strength=lam,
                                              optimizer=opt, lr=lr)  # fmt: skip
                left.append({"regularizer": reg_name, "optimizer": opt_name, "lambda": lam,
                             **final(setup)})  # fmt: skip
    right = []
    opt, lr = OPTIMIZERS["AdamW"]
    for std in size["noises"]:
        for lam in size["noise_lambdas"]:
            setup = size["setup"].replace(reg="l1", reg_target="norm_scale", reg_strength=lam,
                                          optimizer=opt, lr=lr, noise="asymmetric",
                                          noise_std=std)  # fmt: skip
            right.append({"noise_std": std, "lambda": lam, **final(setup)})
    bar.close()
    return {"regularizers": left, "noise": right}, _plot(left, right)


def _plot(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> Any:
    fig, (a, b) = subplots(2, 5.5)
    for reg_name in REGULARIZERS:
        for opt_name, style in zip(OPTIMIZERS, ("-o", "--s"), strict=True):
            rows = [r for r in left if r["regularizer"] == reg_name and r["optimizer"] == opt_name]
            if not rows:
                continue
            a.plot([r["lambda"] for r in rows], [r["ratio_mean"] for r in rows], style,
                   label=f"{reg_name} - {opt_name}", markersize=4)  # fmt: skip
    a.set(xlabel="regularization strength lambda", ylabel="dead units ratio",
          title="Regularizer - optimizer")  # fmt: skip
    a.legend(fontsize=7)
    for std in sorted({r["noise_std"] for r in right}):
        rows = [r for r in right if r["noise_std"] == std]
        b.plot([r["lambda"] for r in rows], [r["ratio_mean"] for r in rows], "-o",
               label=f"{std:g}", markersize=4)  # fmt: skip
    b.set(xlabel="Lasso(gamma) strength lambda", ylabel="dead units ratio",
          title="Asymmetric noise (std), AdamW")  # fmt: skip
    b.legend(title="noise std", fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return fig
