"""`demp analyze`: the paper's analyses at the tiny size, and the theory against closed forms."""

import json
import math

import matplotlib.image
import pytest

from demp.experiments.analysis import ANALYSES, theory
from demp.experiments.cli.main import main


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze")
    assert main(["analyze", "all", "--size", "tiny", "--out", str(out), "--no-progress"]) == 0
    return out


def load(out, name):
    return json.loads((out / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_each_analysis_writes_its_json_and_png(results, name):
    data = load(results, name)
    assert data["analysis"] == name and data["size"] == "tiny" and data["seconds"] > 0
    png = results / f"{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(png).ndim == 3


def test_dead_ratio_curves(results):
    curves = load(results, "dead-ratio")["curves"]
    assert {c["activation"] for c in curves} == {"relu", "leaky_relu", "silu"}
    for c in curves:
        assert c["steps"][0] == 0 and all(0 <= r <= 1 for r in c["ratio_mean"])


def test_regularization_never_lowers_deaths_in_the_tiny_setting(results):
    """Observed direction (2 seeds, tiny): more Lasso never gives fewer dead units."""
    rows = load(results, "regularization")["regularizers"]
    for reg in {r["regularizer"] for r in rows}:
        sel = sorted((r for r in rows if r["regularizer"] == reg), key=lambda r: r["lambda"])
        means = [r["ratio_mean"] for r in sel]
        assert means == sorted(means), (reg, means)
    lasso = [r for r in rows if r["regularizer"] == "Lasso"]
    assert max(r["ratio_mean"] for r in lasso) > 0  # and some units do die


def test_probe_subset_never_sees_fewer_dead_units(results):
    """A unit dead on the whole training set is dead on any subset of it."""
    for c in load(results, "probe-size")["curves"]:
        assert all(p >= f for p, f in zip(c["dead_probe"], c["dead_full"], strict=True))
        assert c["train_examples"] > c["probe_examples"]
        assert max(c["dead_full"]) > 0


def test_overlap_ratios(results):
    for c in load(results, "overlap")["curves"]:
        defined = [o for o in c["overlap"] if o is not None]
        assert defined and all(0 <= o <= 1 for o in defined)
        assert c["overlap"][-1] == 1.0  # the final set against itself


def test_noise_regimes_and_sweeps_have_every_configuration(results):
    regimes = {c["regime"] for c in load(results, "noise-regimes")["curves"]}
    assert regimes == {"sgd-noise", "asymmetric", "symmetric", "sgd"}
    variation = load(results, "hyperparameters")["variation"]
    assert {v["vary"] for v in variation} == {"lr", "batch_size"}
    assert any(v["relative"] == 1.0 for v in variation)  # the base configuration itself
    rows = load(results, "adam-epsilon")["rows"]
    assert {r["adam_eps"] for r in rows} == {1e-10, 1e-4}


@pytest.mark.parametrize("w0,eta,t", [(1.0, 0.01, 25.0), (0.5, 0.01, 25.0), (0.3, 0.05, 4.0)])
def test_absorbing_walk_survival_matches_proposition_b1(w0, eta, t):
    paths = 20000
    p = float(theory.simulate_survival(w0, eta, t, paths, grid=100, seed=1)[-1])
    exact = math.erf(w0 / math.sqrt(2 * eta * t))
    se = math.sqrt(exact * (1 - exact) / paths)
    assert abs(p - exact) < 3 * se, (p, exact, se)


def test_bridge_correction_matters():
    """Without the crossing probability between grid points, survival is overestimated."""
    import torch

    gen = torch.Generator().manual_seed(0)
    w0, eta, t, grid, paths = 0.5, 0.01, 25.0, 20, 20000
    steps = torch.randn(paths, grid, generator=gen, dtype=torch.float64) * math.sqrt(eta * t / grid)
    naive = float(((w0 + steps.cumsum(1)).amin(1) > 0).double().mean())
    exact = theory.survival_closed_form(w0, eta, t)
    corrected = float(theory.simulate_survival(w0, eta, t, paths, grid, seed=2)[-1])
    se = math.sqrt(exact * (1 - exact) / paths)
    assert naive - exact > 5 * se and abs(corrected - exact) < 3 * se


def test_lemma_b3_interval_and_decay():
    h = -0.01
    lo, hi = theory.stable_interval(h)
    assert 0 < lo < hi and lo < 1 / (abs(h) + theory.SIGMA)  # non-empty below eta|zeta| < 1
    for eta in (lo * 0.5, lo * 2, 0.5):
        assert theory.growth_rate(eta, h) <= theory.growth_bound(eta, h)  # Eq. 15
    assert theory.growth_bound(lo * 0.5, h) > 0 and theory.growth_bound(lo * 2, h) < 0
    eta = 0.5  # inside the interval and the stability condition
    sim = theory.simulate_growth(eta, h, walks=2000, steps=2000, seed=0)
    mu = theory.growth_rate(eta, h)
    assert mu < 0 and abs(sim["rate"] - mu) < 3 * sim["se"]
    assert sim["decayed"] > 0.99  # the unstable direction decays anyway
    grows = theory.simulate_growth(lo * 0.2, h, walks=2000, steps=2000, seed=1)
    assert grows["rate"] > 0  # below the interval the walk grows, as h < 0 alone says
    assert theory.stable_interval(-1.0) is None  # |h| / sigma too large: no interval
