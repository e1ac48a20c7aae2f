"""DemP's remedies for units that go linear: polarization, the proximal step, the shift push,
and death checks on the statistics of the network being trained."""

import copy

import pytest
import torch
from nets import VGG, stale_net
from torch import nn

import demp
from demp.algorithm.regularizer import (
    add_penalty_gradient,
    polarization_grad,
    polarization_value,
    proximal_l1,
)
from demp.algorithm.shift_push import MARGIN_FLOOR, MARGIN_SCALE, add_shift_push, shift_pairs


def bn_net():
    torch.manual_seed(0)
    return VGG(channels=(4, 6), size=8).double(), torch.randn(16, 3, 8, 8, dtype=torch.float64)


@pytest.mark.parametrize("weighted", [False, True])
def test_polarization_gradient_equals_autograd(weighted):
    torch.manual_seed(1)
    p = torch.randn(7, dtype=torch.float64, requires_grad=True)
    w = torch.rand(7, dtype=torch.float64) if weighted else None
    polarization_value(p, w, 1.3).backward()
    torch.testing.assert_close(polarization_grad(p.detach(), w, 1.3), p.grad, rtol=0, atol=1e-12)


def test_polarization_pushes_below_mean_scales_harder():
    p = torch.tensor([0.1, 0.2, 1.0, 1.1], dtype=torch.float64)
    g = polarization_grad(p, None, 1.2)
    assert g[0] == pytest.approx(2.2) and g[3] == pytest.approx(0.2)  # t + 1, t - 1


def test_polarization_through_add_penalty_gradient():
    torch.manual_seed(2)
    params = [nn.Parameter(torch.randn(5, dtype=torch.float64)) for _ in range(2)]
    for p in params:
        p.grad = torch.zeros_like(p)
    add_penalty_gradient(params, "polarization", 0.3, None, None, 1.2)
    for p in params:
        q = p.detach().clone().requires_grad_(True)
        (0.3 * polarization_value(q, None, 1.2)).backward()
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-12)


def test_proximal_l1_is_a_soft_threshold():
    p = nn.Parameter(torch.tensor([0.5, -0.05, 0.02, -2.0], dtype=torch.float64))
    w = torch.tensor([1.0, 1.0, 0.0, 2.0], dtype=torch.float64)
    proximal_l1([p], [0.1], [w])
    expected = torch.tensor([0.4, 0.0, 0.02, -1.8], dtype=torch.float64)
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-15)


def test_proximal_update_in_the_pruner_matches_lr_times_lambda():
    model, x = bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    cfg = demp.DemPConfig(
        reg_strength=0.5, reg_update="proximal", schedule=demp.Constant(), noise="off"
    )
    pruner = demp.DemonPruner(model, opt, x, total_steps=100, config=cfg)
    twin = copy.deepcopy(model)
    loss = model(x).square().mean()
    opt.zero_grad()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    assert pruner.step == 1
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        after_sgd = q.detach() - 0.01 * grads[name]  # the loss gradient only: no penalty term
        if name in ("features.1.weight", "features.5.weight"):
            tau = 0.01 * 0.5
            after_sgd = torch.sign(after_sgd) * (after_sgd.abs() - tau).clamp_min(0)
        torch.testing.assert_close(p.detach(), after_sgd, rtol=0, atol=1e-14)


def test_proximal_needs_l1():
    with pytest.raises(ValueError, match="proximal"):
        demp.DemPConfig(reg="l2", reg_update="proximal")


def test_shift_push_acts_only_on_small_scales_with_unsafe_shifts():
    bn = nn.BatchNorm1d(5).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1e-4, 1e-4, 0.5, 1e-4, -1e-4]))
        # unit 1 is already safely negative; unit 3 just above the margin; unit 4 |gamma|
        bn.bias.copy_(
            torch.tensor([0.2, -0.01, 0.2, -(MARGIN_SCALE * 1e-4 + MARGIN_FLOOR) + 1e-6, 0.0])
        )
    bn.weight.grad = torch.zeros(5, dtype=torch.float64)
    bn.bias.grad = torch.full((5,), 0.5, dtype=torch.float64)
    pairs = shift_pairs(bn, [bn.weight])
    assert pairs[0][1] is bn.bias
    w = torch.tensor([2.0, 2.0, 2.0, 2.0, 0.0], dtype=torch.float64)
    add_shift_push(pairs, 0.1, 1e-3, [w])
    expected = torch.tensor([0.5 + 0.2, 0.5, 0.5, 0.5 + 0.2, 0.5], dtype=torch.float64)
    torch.testing.assert_close(bn.bias.grad, expected, rtol=0, atol=1e-15)
    assert torch.equal(bn.weight.grad, torch.zeros(5, dtype=torch.float64))


def test_relative_shift_push_picks_units_small_against_their_layer():
    """rms of (3, 4, 0.2, 0.3) is sqrt((9 + 16 + 0.04 + 0.09) / 4) = 2.5067...; 0.1 of it
    is 0.2507: the unit at 0.2 is pushed; 0.3 and the large ones are not."""
    bn = nn.BatchNorm1d(4).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([3.0, 4.0, 0.2, 0.3]))
        bn.bias.copy_(torch.tensor([0.1, 0.1, 0.1, 0.1]))
    rms = ((9 + 16 + 0.04 + 0.09) / 4) ** 0.5
    assert 0.2 < 0.1 * rms < 0.3
    bn.bias.grad = torch.zeros(4, dtype=torch.float64)
    add_shift_push(shift_pairs(bn, [bn.weight]), 0.5, 1e-3, relative=0.1)
    expected = torch.tensor([0.0, 0.0, 0.5, 0.0], dtype=torch.float64)
    torch.testing.assert_close(bn.bias.grad, expected, rtol=0, atol=0)
    bn.bias.grad.zero_()
    add_shift_push(shift_pairs(bn, [bn.weight]), 0.5, 1e-3)  # relative off: none is small
    assert not bn.bias.grad.any()


def test_shift_push_turns_a_linear_unit_into_a_dead_one():
    """A unit with a tiny scale and a positive shift is always on; the push kills it."""
    model, x = bn_net()
    bn = model.features[1]
    with torch.no_grad():
        bn.weight[0], bn.bias[0] = 1e-4, 0.05
    opt = torch.optim.Adam([bn.weight, bn.bias], lr=1e-2)  # no loss gradient: the push only
    cfg = demp.DemPConfig(
        reg="off", reg_strength=1.0, shift_push=1.0, schedule=demp.Constant(), noise="off",
        prune_every=1000, death_stats="batch",
    )  # fmt: skip
    demp.DemonPruner(model, opt, x, total_steps=1000, config=cfg)
    for _ in range(30):
        opt.zero_grad()
        model(x).sum().mul(0).backward()  # no loss gradient: only the push moves beta
        opt.step()
    margin = -(MARGIN_SCALE * 1e-4 + MARGIN_FLOOR)
    # pushed past the margin, then left to Adam's momentum (unpushed: 0.05 - 30 * 0.01)
    assert -0.2 < float(bn.bias.detach()[0]) < margin
    assert float(bn.bias.detach()[1]) == 0.0  # a unit with a large scale is not pushed
    dead = demp.find_dead(model, x, stats="batch")
    assert 0 in dead.as_dict()["features.0"]


def test_the_pruner_counts_what_stale_statistics_would_have_cut():
    model, x = stale_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    cfg = demp.DemPConfig(reg="off", noise="off", death_stats="batch", prune_every=1)
    pruner = demp.DemonPruner(model, opt, x, total_steps=10, config=cfg)
    pruner.prune_now()
    event = pruner.history[-1]
    assert event["dead"] >= 1 and event["dead_running"] >= 1
    assert "dead_running" not in _history_of("running")


def _history_of(stats):
    model, x = stale_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    cfg = demp.DemPConfig(reg="off", noise="off", death_stats=stats, prune_every=1)
    pruner = demp.DemonPruner(model, opt, x, total_steps=10, config=cfg)
    pruner.prune_now()
    return pruner.history[-1]


@pytest.mark.parametrize(
    "field, value",
    [("shift_push", -1.0), ("shift_push", float("nan")), ("shift_push_below", float("inf")),
     ("shift_push_relative", -0.1), ("shift_push_relative", float("nan")),
     ("polarization_t", -0.5), ("death_stats", "stale"), ("reg", "l0"),
     ("reg_strength", float("nan")), ("reg_strength", float("inf")), ("noise_std", float("nan")),
     ("prune_every", 2.5), ("prune_every", 0), ("probe_size", True), ("seed", -1),
     ("eps", float("nan")), ("target_max_scale", float("inf")), ("target_deadline", float("nan")),
     ("target_reach", 0.0), ("min_fraction", float("nan")), ("min_fraction", "0.1"),
     ("min_fraction", 1.0), ("target_release", "0.05"), ("target_deadline", "0.6")],
)  # fmt: skip
def test_bad_remedy_options_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        demp.DemPConfig(**{field: value})


def test_variants_resolve_the_remedies_unless_given():
    from demp.algorithm.config import VARIANTS

    paper, plus = VARIANTS["paper"], VARIANTS["plus"]
    plain = demp.DemPConfig()
    assert plain.resolved_variant == "paper"
    assert {k: getattr(plain, k) for k in paper} == paper
    target = demp.DemPConfig(target_sparsity=0.8)
    assert target.resolved_variant == "plus"
    assert {k: getattr(target, k) for k in plus} == plus
    forced = demp.DemPConfig(target_sparsity=0.8, variant="paper")
    assert {k: getattr(forced, k) for k in paper} == paper
    mixed = demp.DemPConfig(target_sparsity=0.8, variant="paper", shift_push=2.0)
    assert mixed.shift_push == 2.0 and mixed.death_stats == "running"
    assert demp.DemPConfig(variant="plus").shift_push == plus["shift_push"]
    # the measured second start and floor (RESULTS-demp.md): DemP+ only, off when given
    assert (plus["restart"], plus["min_fraction"]) == (True, 0.1)
    assert (paper["restart"], paper["min_fraction"]) == (False, 0.0)
    off = demp.DemPConfig(target_sparsity=0.8, restart=False, min_fraction=0.0)
    assert (off.restart, off.min_fraction) == (False, 0.0)
    # the earlier reference (RESULTS-demp.md, "95 %: the reference earlier"): DemP+ only
    assert (plus["target_reach"], paper["target_reach"]) == (0.15, 0.3)
    assert demp.DemPConfig(target_sparsity=0.8, target_reach=0.3).target_reach == 0.3
    for config in (plain, target, forced, mixed):
        assert demp.DemPConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="variant"):
        demp.DemPConfig(variant="best")
