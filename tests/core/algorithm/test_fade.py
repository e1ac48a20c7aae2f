"""DemP+'s fade: the weakest units chosen by exact cost, faded linearly to zero, then cut."""

from __future__ import annotations

import copy

import pytest
import torch
from nets import VGG, ResNet
from torch import nn

import demp
from demp.algorithm.fade import Fade
from demp.structure.costs import CostModel
from tests.core.algorithm.test_pruner import synthetic, train


def _setup(net=None, length=4, decouple=False, **options):
    """A float64 model, an SGD optimizer with lr 0 (the fade alone moves the scales)."""
    torch.manual_seed(0)
    model = (net or VGG((6, 8), size=8, hidden=12, out=4)).double()
    x = torch.randn(32, 3, 8, 8, dtype=torch.float64)
    if decouple:  # each identity shortcut a ChannelSelect: post-add units per block
        demp.decouple_residuals(model, x[:2])
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                module.weight.uniform_(0.1, 2.0)
                module.bias.uniform_(-0.5, 0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    cfg = demp.DemPConfig(reg_strength=0.0, noise="off", target_sparsity=0.5,
                          prune_every=length + 1, **options)  # fmt: skip
    pruner = demp.DemonPruner(model, opt, x, total_steps=100, config=cfg)
    return model, opt, pruner, x


def _relative(model, structure, name):
    """Each unit's largest |gamma| / rms(|gamma|) over the group's norms (independent)."""
    best = None
    for slot in structure.groups[name].slots:
        if slot.role == "norm":
            w = model.get_submodule(slot.path).weight.detach().abs()
            score = (w / w.pow(2).mean().sqrt())[slot.index].amax(dim=1)
            best = score if best is None else torch.maximum(best, score)
    return best


def _saving(model, structure, chosen):
    """Trainable parameters removed by cutting ``chosen`` out of a copy (independent)."""
    model2, s2 = copy.deepcopy(model), copy.deepcopy(structure)
    demp.remove_units(model2, chosen, structure=s2)
    return demp.count_trainable(model) - demp.count_trainable(model2)


def _relative_spread(spread, name):
    """A unit's standard deviation over its group's root mean square (independent)."""
    values = spread[name]
    return values / values.pow(2).mean().sqrt()


@pytest.mark.parametrize("net", ["vgg", "resnet"])
@pytest.mark.parametrize("by", ["scale", "output"])
def test_plan_takes_the_weakest_relative_units_that_fit_the_budget(net, by):
    model, _, pruner, x = _setup(ResNet() if net == "resnet" else None)
    structure, steering = pruner.structure, pruner.steering
    budget = 0.3 * demp.count_trainable(model)
    fade = Fade(length=4)
    spread = None
    if by == "output":
        spread = demp.find_dead(model, x, structure=structure, spreads=True).unit_spreads()
    n = fade.plan(model, structure, steering.costs, steering.floors(), budget, "weight", 10, spread)
    ranked = []
    for name, group in structure.groups.items():
        score = _relative(model, structure, name)
        if score is not None and spread is not None:
            score = _relative_spread(spread, name)
        if score is not None:  # groups without a norm are never faded
            weakest = sorted((float(s), name, i) for i, s in enumerate(score))
            ranked += weakest[: group.width - 1]  # min_units 1
    ranked.sort()
    chosen = {(g, i) for g, units in fade.chosen.items() for i in units}
    assert len(chosen) == n and fade.start == 10
    order = [(name, i) for _, name, i in ranked]
    first_left = next(k for k, unit in enumerate(order) if unit not in chosen)
    assert chosen >= set(order[:first_left]) and first_left > 0  # a prefix of the weakest...
    assert _saving(model, structure, fade.chosen) <= budget  # ...within the budget
    for unit in order:  # and not one unit more fits
        if unit not in chosen:
            more = {g: [*u] for g, u in fade.chosen.items()}
            more.setdefault(unit[0], []).append(unit[1])
            assert _saving(model, structure, more) > budget, unit


def test_plan_keeps_every_group_above_its_floor_and_skips_unfadeable_ones():
    model, _, pruner, _ = _setup(min_fraction=0.5)
    structure, steering = pruner.structure, pruner.steering
    fade = Fade(length=4, unfadeable={"features.0"})
    huge = 10.0 * demp.count_trainable(model)
    fade.plan(model, structure, steering.costs, steering.floors(), huge, "weight", 0)
    assert "features.0" not in fade.chosen and fade.chosen
    for name, units in fade.chosen.items():
        assert structure.groups[name].width - len(units) >= steering.floors()[name]


def test_the_chosen_scales_and_shifts_go_linearly_to_exactly_zero():
    model, opt, pruner, x = _setup(length=4)
    bn = model.features[1]
    fade = pruner.steering.fade
    fade.chosen, fade.start = {"features.0": [1, 3]}, 0
    start_w, start_b = bn.weight.detach().clone(), bn.bias.detach().clone()

    def step():
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()  # lr 0: only the fade changes the parameters

    for t in range(1, 5):
        step()
        for now, then in ((bn.weight, start_w), (bn.bias, start_b)):
            expected = then.clone()
            expected[[1, 3]] = then[[1, 3]] * (4 - t) / 4
            torch.testing.assert_close(now.detach(), expected, rtol=0, atol=1e-15)
    assert bool((bn.weight[[1, 3]] == 0).all()) and bool((bn.bias[[1, 3]] == 0).all())
    step()  # the check after the fade: the two units are dead, and cut
    assert pruner.history[-1]["removed"] >= 2 and model.features[1].weight.shape[0] <= 4


@pytest.mark.parametrize("stats", ["batch", "running"])
def test_faded_units_are_dead_and_their_removal_leaves_the_output_unchanged(stats):
    model, opt, pruner, x = _setup(length=3, death_stats=stats, count_stale=False)
    fade = pruner.steering.fade
    fade.chosen, fade.start = {"features.0": [0, 2], "features.4": [5]}, 0
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    dead = demp.find_dead(model, x, structure=pruner.structure, stats=stats)
    assert dead.as_dict()["features.0"] == [0, 2] and dead.as_dict()["features.4"] == [5]
    model.train(stats == "batch")  # the statistics the check judged with
    before = model(x).detach()
    assert pruner.steering.settle_fade(dead) == []
    demp.remove_units(model, dead, structure=copy.deepcopy(pruner.structure))
    torch.testing.assert_close(model(x).detach(), before, rtol=0, atol=1e-12)


def test_a_group_whose_faded_units_did_not_die_is_never_faded_again():
    fade = Fade(length=2, chosen={"a": [0, 1], "b": [2]})
    dead = {"a": torch.tensor([True, False, False]), "b": torch.tensor([False, False, True])}
    assert fade.settle(dead) == ["a"]
    assert fade.unfadeable == {"a"} and fade.chosen == {}
    restored = Fade(length=2)
    restored.load_state_dict(fade.state_dict())
    assert restored.unfadeable == {"a"}


def _target_run(fade: bool, steps=200):
    torch.manual_seed(0)
    model, (x, y) = VGG((16, 32), size=8, hidden=32, out=10), synthetic((3, 8, 8))
    cfg = demp.DemPConfig(reg_strength=1e-4, target_sparsity=0.5, prune_every=10,
                          target_max_scale=2.0, target_deadline=1.0, fade=fade)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    pruner = demp.DemonPruner(model, opt, x[:256], steps, cfg)
    train(model, opt, x, y, steps)
    pruner.finalize()
    return pruner


def test_a_target_the_ceiling_cannot_reach_is_reached_by_the_fade():
    short = _target_run(fade=False)
    assert short.steering.controller.stalled_at is not None  # a strength too weak to kill
    assert short.steering.sparsity() < 0.2
    faded = _target_run(fade=True)
    steering = faded.steering
    unit = max(steering.costs.unit_costs("weight").values()) / steering._initial()
    assert 0.5 - unit <= steering.sparsity() <= 0.5  # within one unit, never past it
    assert sum(e.get("faded", 0) for e in faded.history) > 0


def test_fade_is_on_for_dplus_and_off_for_the_paper_variant():
    assert demp.DemPConfig(target_sparsity=0.8).fade is True
    assert demp.DemPConfig().fade is False
    assert demp.DemPConfig(target_sparsity=0.8, variant="paper").fade is False
    old = demp.DemPConfig(target_sparsity=0.8).to_dict()
    del old["fade"]  # configs written before the option still load
    assert demp.DemPConfig.from_dict(old).fade is True
    del old["fade_score"]  # a partial dict (a preset's, a TOML's) gets the default
    assert demp.DemPConfig.from_dict(old).fade_score == "output"


class Squashed(nn.Module):
    """conv-bn-relu, then conv-bn-sigmoid: sigmoid(0) = 1/2, so a zero norm cannot kill."""

    def __init__(self):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.b, self.bn_b = nn.Conv2d(6, 5, 3, padding=1), nn.BatchNorm2d(5)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        h = torch.sigmoid(self.bn_b(self.b(torch.relu(self.bn_a(self.a(x))))))
        return self.fc(h.mean((2, 3)))


def test_the_probe_finds_the_units_a_zero_norm_cannot_kill_and_restores_the_model():
    model, _, pruner, x = _setup(Squashed())
    structure = pruner.structure
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fade = Fade(length=2)
    failed = fade.probe(
        model, structure, lambda: demp.find_dead(model, x, structure=structure, stats="batch")
    )
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert fade.probed and failed == ["b"] and fade.unfadeable == {"b"}
    fade.plan(model, structure, CostModel.measure(model, structure, x[:1]), {}, 1e9, "weight", 0)
    assert set(fade.chosen) == {"a"}


def _post_add(structure):
    """Groups whose units come out of an identity residual add (a ChannelSelect shortcut)."""
    return {
        name
        for name, group in structure.groups.items()
        if any(s.role == "producer" and s.path.endswith("short") for s in group.slots)
    }


def test_post_add_units_fade_with_their_shortcut_and_are_cut_exactly():
    model, opt, pruner, x = _setup(ResNet(), length=3, decouple=True, count_stale=False)
    structure = pruner.structure
    post_add = _post_add(structure)
    assert post_add == {"layers.0.conv2", "layers.1.conv2", "layers.3.conv2"}
    fade = pruner.steering.fade
    find = lambda: demp.find_dead(model, x, structure=structure, stats="batch")  # noqa: E731
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert fade.probe(model, structure, find) == []  # zeroed with their shortcut rows: dead
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # the probe put everything back
    fade.chosen, fade.start = {"layers.1.conv2": [0, 3], "layers.3.conv2": [1, 2, 5]}, 0
    start = model.layers[3].short.selection.clone()
    for t in range(1, 4):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        expected = start.clone()
        expected[[1, 2, 5]] *= (3 - t) / 3  # the shortcut's rows fade with the norm
        torch.testing.assert_close(model.layers[3].short.selection, expected, rtol=0, atol=1e-15)
    for stats in ("batch", "running"):
        dead = demp.find_dead(model, x, structure=structure, stats=stats).as_dict()
        assert dead["layers.1.conv2"] == [0, 3] and dead["layers.3.conv2"] == [1, 2, 5]
    model.train()
    dead = demp.find_dead(model, x, structure=structure, stats="batch")
    before = model(x).detach()
    assert pruner.steering.settle_fade(dead) == []
    demp.remove_units(model, dead, structure=copy.deepcopy(structure))
    assert model.layers[3].short.selection.shape[0] == 5 and model.fc.in_features == 5
    torch.testing.assert_close(model(x).detach(), before, rtol=0, atol=1e-12)


def test_a_fade_is_due_when_deaths_lag_with_the_strength_at_its_ceiling(monkeypatch):
    _, _, pruner, x = _setup(target_max_scale=1.0)  # the scale starts at its ceiling
    steering = pruner.steering
    find = lambda **kw: demp.find_dead(pruner.model, x, structure=pruner.structure, **kw)  # noqa: E731

    def check(step, sparsity):
        monkeypatch.setattr(steering, "sparsity", lambda: sparsity)
        return steering.after_check(step, find)["faded"]

    assert steering.controller.held(10) < 1.0
    assert check(10, 0.0) == 0  # behind, but the schedule is still rising: no full strength
    assert check(30, 0.30) == 0  # behind (0.5), the interval closed 0.30 of 0.20: deaths come
    assert not steering.fade.probed
    assert check(40, 0.32) > 0  # at full strength, closed 0.02 of 0.18: fade
    assert steering.fade.probed and steering.fade.chosen


@pytest.mark.parametrize("by", ["scale", "output"])
def test_the_output_score_plans_with_a_fresh_death_checks_spreads(monkeypatch, by):
    _, _, pruner, x = _setup(target_max_scale=1.0, fade_score=by)
    steering, seen = pruner.steering, []
    find = lambda **kw: demp.find_dead(pruner.model, x, structure=pruner.structure, **kw)  # noqa: E731
    plan = steering.fade.plan
    monkeypatch.setattr(steering.fade, "plan", lambda *a, **k: seen.append(a[-1]) or plan(*a, **k))
    monkeypatch.setattr(steering, "sparsity", lambda: 0.01)
    assert steering.after_check(40, find)["faded"] > 0  # at the ceiling, lagging: fade
    if by == "scale":
        assert seen == [None]
    else:
        want = find(spreads=True).unit_spreads()
        assert len(seen) == 1 and set(seen[0]) == set(want)
        assert all(torch.equal(seen[0][n], want[n]) for n in want)


def test_an_unknown_fade_score_is_refused():
    with pytest.raises(ValueError, match="fade_score"):
        demp.DemPConfig(target_sparsity=0.5, fade_score="gamma")


def test_a_target_given_up_below_the_ceiling_gets_one_fade_for_its_whole_lag(monkeypatch):
    _, _, pruner, x = _setup(target_max_scale=1e6)  # a ceiling never reached
    steering = pruner.steering
    find = lambda **kw: demp.find_dead(pruner.model, x, structure=pruner.structure, **kw)  # noqa: E731

    def check(step, sparsity):
        monkeypatch.setattr(steering, "sparsity", lambda: sparsity)
        return steering.after_check(step, find)["faded"]

    assert check(30, 0.20) == 0 and check(50, 0.22) == 0  # lagging, below the ceiling
    assert check(60, 0.25) > 0  # the deadline (0.6 of the run): given up, and faded
    assert steering.controller.stalled_at == 60 and steering.fade.chosen


@pytest.mark.parametrize("name", ["fade", "revive", "count_stale", "dynamic", "allow_inexact_norm"])
def test_a_flag_that_is_not_a_boolean_is_refused(name):
    with pytest.raises(ValueError, match=f"DemPConfig.{name} must be true or false, got 'no'"):
        demp.DemPConfig(target_sparsity=0.5, **{name: "no"})
