"""``theory``: Monte Carlo checks of the paper's random-walk models (appendix B).

Absorbing random walk (Proposition B.1): ``dw = sqrt(eta) dB`` while ``w > 0``, stopped
at 0. The survival probability is ``P(w_t > 0 | w0) = erf(w0 / sqrt(2 eta t))``. The
simulation is exact, not a discretization: Gaussian increments on a grid, and between two
grid points ``a, b > 0`` the path is killed with the Brownian-bridge crossing probability
``exp(-2 a b / (eta dt))``.

Geometric random walk (Lemmas B.2, B.3): ``w_{t+1} = w_t - eta (h + zeta_t) w_t`` with
negative curvature ``h`` and symmetric noise ``zeta = +-sigma``. The log growth rate is
``mu = E log|1 - eta (h + zeta)|``; Eq. 15 bounds it by ``eta * P(eta)`` with
``P(eta) = |h| - eta (h^2 + sigma^2) / 2 + eta^2 |h| (h^2 + 3 sigma^2) / 3``, whose two
positive roots (for small ``|h| / sigma``) bound learning rates where the unstable direction
decays anyway.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .common import Context, subplots

SURVIVAL_CASES = ((1.0, 0.01, 25.0), (0.5, 0.01, 25.0), (1.0, 0.05, 10.0), (0.2, 0.004, 50.0))
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"paths": 4000, "grid": 100, "walks": 500, "walk_steps": 400},
    "quick": {"paths": 40000, "grid": 200, "walks": 4000, "walk_steps": 2000},
    "full": {"paths": 400000, "grid": 400, "walks": 20000, "walk_steps": 10000},
}
CURVATURES = (-0.01, -0.05)
SIGMA = 1.0


def survival_closed_form(w0: float, eta: float, t: float) -> float:
    """Proposition B.1: ``erf(w0 / sqrt(2 eta t))``."""
    return math.erf(w0 / math.sqrt(2 * eta * t))


def simulate_survival(w0: float, eta: float, t: float, paths: int, grid: int,
                      seed: int = 0) -> torch.Tensor:  # fmt: skip
    """Fraction of absorbing walks alive at each of ``grid`` times up to ``t`` (exact)."""
    gen = torch.Generator().manual_seed(seed)
    var = eta * t / grid
    w = torch.full((paths,), w0, dtype=torch.float64)
    alive = torch.ones(paths, dtype=torch.bool)
    out = torch.empty(grid, dtype=torch.float64)
    for k in range(grid):
        new = w + math.sqrt(var) * torch.randn(paths, generator=gen, dtype=torch.float64)
        crossed = torch.exp(-2 * w.clamp(min=0) * new.clamp(min=0) / var)
        u = torch.rand(paths, generator=gen, dtype=torch.float64)
        alive &= (new > 0) & (u >= crossed)
        w = torch.where(alive, new, torch.zeros_like(new))
        out[k] = alive.double().mean()
    return out


def growth_rate(eta: float, h: float, sigma: float = SIGMA) -> float:
    """Exact ``mu = E log|1 - eta (h + zeta)|`` for ``zeta = +-sigma`` with probability 1/2."""
    return 0.5 * (math.log(abs(1 - eta * (h + sigma))) + math.log(abs(1 - eta * (h - sigma))))


def growth_bound(eta: float, h: float, sigma: float = SIGMA) -> float:
    """Eq. 15's upper bound on ``mu``."""
    s2 = sigma**2
    return -eta * h - eta**2 / 2 * (h**2 + s2) - eta**3 / 3 * (h**3 + 3 * h * s2)


def stable_interval(h: float, sigma: float = SIGMA) -> tuple[float, float] | None:
    """The roots of ``P(eta)``: learning rates where the bound (so ``mu``) is negative.

    Returns None when ``P`` has no real roots (``|h| / sigma`` too large).
    """
    a = abs(h) * (h**2 + 3 * sigma**2) / 3
    b = -(h**2 + sigma**2) / 2
    c = abs(h)
    disc = b * b - 4 * a * c
    if disc < 0:
        return None
    return ((-b - math.sqrt(disc)) / (2 * a), (-b + math.sqrt(disc)) / (2 * a))


def simulate_growth(eta: float, h: float, walks: int, steps: int, seed: int = 0) -> dict:
    """Geometric walks from ``w0 = 1``: mean log growth per step (and its standard error)."""
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (walks, steps), generator=gen, dtype=torch.float64) * 2 - 1
    logs = torch.log(torch.abs(1 - eta * (h + SIGMA * signs))).sum(1)  # log|w_T / w_0|
    rate = logs / steps
    return {"rate": float(rate.mean()), "se": float(rate.std() / math.sqrt(walks)),
            "decayed": float((logs < 0).double().mean())}  # fmt: skip


def run(ctx: Context) -> tuple[dict[str, Any], Any]:
    """Both simulations against their closed forms; return the numbers and a figure."""
    size = SIZES[ctx.size]
    survival = []
    for i, (w0, eta, t) in enumerate(SURVIVAL_CASES):
        curve = simulate_survival(w0, eta, t, size["paths"], size["grid"], seed=i)
        times = [t * (k + 1) / size["grid"] for k in range(size["grid"])]
        p = float(curve[-1])
        survival.append({
            "w0": w0, "eta": eta, "t": t, "simulated": p,
            "closed_form": survival_closed_form(w0, eta, t),
            "standard_error": math.sqrt(max(p * (1 - p), 1e-12) / size["paths"]),
            "times": times[:: max(1, size["grid"] // 50)],
            "curve": curve.tolist()[:: max(1, size["grid"] // 50)],
        })  # fmt: skip
    walks = []
    for h in CURVATURES:
        interval = stable_interval(h)
        etas = [10 ** (-3 + 3 * k / 24) for k in range(25)]
        etas = [e for e in etas if e * (abs(h) + SIGMA) < 1]  # the lemma's eta |zeta| < 1
        sims = [simulate_growth(e, h, size["walks"], size["walk_steps"], seed=k)
                for k, e in enumerate(etas)]  # fmt: skip
        walks.append({
            "h": h, "sigma": SIGMA, "interval": interval, "etas": etas,
            "mu": [growth_rate(e, h) for e in etas], "bound": [growth_bound(e, h) for e in etas],
            "simulated": sims,
        })  # fmt: skip
    return {"survival": survival, "geometric": walks}, _plot(survival, walks)


def _plot(survival: list[dict[str, Any]], walks: list[dict[str, Any]]) -> Any:
    fig, (a, b) = subplots(2)
    for s in survival:
        ts = [x for x in s["times"]]
        line = a.plot(ts, [survival_closed_form(s["w0"], s["eta"], x) for x in ts],
                      label=f"w0={s['w0']}, eta={s['eta']}")  # fmt: skip
        a.plot(ts, s["curve"], "o", ms=2.5, color=line[0].get_color())
    a.set(xlabel="time t", ylabel="P(w_t > 0)",
          title="Absorbing walk: Prop. B.1 (lines), Monte Carlo (dots)")  # fmt: skip
    a.legend(fontsize=7)
    for w in walks:  # divided by eta: the bound becomes P(eta); the sign is mu's
        etas = w["etas"]
        line = b.plot(etas, [m / e for m, e in zip(w["mu"], etas, strict=True)],
                      label=f"mu / eta exact, h={w['h']}")  # fmt: skip
        color = line[0].get_color()
        b.plot(etas, [m / e for m, e in zip(w["bound"], etas, strict=True)], ":", color=color,
               label=f"Eq. 15 bound / eta = P(eta), h={w['h']}")  # fmt: skip
        b.errorbar(etas, [s["rate"] / e for s, e in zip(w["simulated"], etas, strict=True)],
                   yerr=[3 * s["se"] / e for s, e in zip(w["simulated"], etas, strict=True)],
                   fmt="o", ms=3, color=color)  # fmt: skip
        if w["interval"]:
            lo, hi = w["interval"]
            b.axvspan(lo, min(hi, 1 / (abs(w["h"]) + SIGMA)), color=color, alpha=0.08)
    b.axhline(0, color="k", lw=0.8)
    b.set(xscale="log", xlabel="learning rate eta", ylabel="log growth rate / eta",
          title="Geometric walk (sigma=1): decays where < 0 (shaded: Lemma B.3)")  # fmt: skip
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return fig
