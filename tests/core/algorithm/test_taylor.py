"""The Taylor meter (fade_score="taylor") and the fade's per-cost ranking (fade_per_cost)."""

from __future__ import annotations

import pytest
import torch
from nets import ResNet
from torch import nn

import demp
from demp.algorithm.fade import Fade, _candidates
from demp.algorithm.taylor import TaylorMeter
from tests.core.algorithm.test_fade import _setup


def _loss(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def _directional(model, x, y, name, structure, unit, h=1e-6):
    """d/dt of the loss with the unit's faded entries times (1 - t), at t = 0 (central FD)."""
    from demp.algorithm.fade import faded_rows

    rows = faded_rows(model, structure, name, [unit])
    saved = [(t, i.clone(), t.detach()[i].clone()) for t, i in rows]

    def at(t):
        with torch.no_grad():
            for tensor, index, value in saved:
                tensor[index] = value * (1.0 - t)
            return float(_loss(model, x, y))

    up, down = at(h), at(-h)
    at(0.0)
    return (up - down) / (2 * h)


@pytest.mark.parametrize("decouple", [False, True])
def test_the_meter_is_the_square_of_the_loss_change_of_zeroing_a_unit_to_first_order(decouple):
    model, _, pruner, x = _setup(ResNet(), decouple=decouple)
    model.train()
    y = torch.arange(len(x)) % 4
    structure = pruner.structure
    meter = TaylorMeter()
    handles = meter.attach(model)  # the shortcut rows' terms
    assert bool(handles) == decouple
    model.zero_grad()
    _loss(model, x, y).backward()
    meter.accumulate(model, structure)
    model.zero_grad()
    scores = meter.scores()
    normed = {n for n, g in structure.groups.items() if any(s.role == "norm" for s in g.slots)}
    assert meter.count == 1 and set(scores) == normed
    checked = 0
    for name, score in scores.items():
        for unit in range(0, structure.groups[name].width, 3):
            want = _directional(model, x, y, name, structure, unit) ** 2
            assert score[unit].item() == pytest.approx(want, rel=1e-5, abs=1e-14), (name, unit)
            checked += 1
    assert checked > 10


def test_a_step_with_a_non_finite_gradient_is_not_counted():
    model, _, pruner, x = _setup(ResNet())
    y = torch.arange(len(x)) % 4
    meter = TaylorMeter()
    _loss(model, x, y).backward()
    meter.accumulate(model, pruner.structure)
    before = {n: v.clone() for n, v in meter.sums.items()}
    norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    norm.weight.grad[0] = float("nan")
    meter.accumulate(model, pruner.structure)
    assert meter.count == 1 and all(torch.equal(meter.sums[n], v) for n, v in before.items())


def test_the_meter_averages_over_steps_follows_removals_and_reloads():
    meter = TaylorMeter()
    meter.sums, meter.count = {"a": torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)}, 2
    assert torch.equal(meter.scores()["a"], torch.tensor([0.5, 2.0, 4.5], dtype=torch.float64))
    meter.cut({"a": [1], "b": [0]})
    assert torch.equal(meter.sums["a"], torch.tensor([1.0, 9.0], dtype=torch.float64))
    again = TaylorMeter()
    again.load_state_dict(meter.state_dict())
    assert again.count == 2 and torch.equal(again.sums["a"], meter.sums["a"])
    meter.reset()
    assert meter.count == 0 and meter.sums == {}


def test_the_pruner_sums_the_losss_gradients_alone_and_plans_the_fade_with_them_synced(monkeypatch):
    model, opt, pruner, x = _setup(target_max_scale=1.0, fade_score="taylor")
    y = torch.arange(len(x)) % 4
    steering = pruner.steering
    assert steering.taylor is not None
    pruner.config = demp.DemPConfig(**{**pruner.config.to_dict(), "reg_strength": 10.0,
                                       "schedule": demp.Constant()})  # fmt: skip
    model.zero_grad()
    _loss(model, x, y).backward()
    independent = TaylorMeter()
    independent.accumulate(model, pruner.structure)  # before the penalty's gradient is added
    opt.step()
    assert steering.taylor.count == 1
    for name, want in independent.scores().items():
        assert torch.equal(steering.taylor.scores()[name], want)
    saved = TaylorMeter()  # the sums travel in the pruner's one checkpoint state
    saved.load_state_dict(pruner.state_dict()["steering"]["taylor"])
    assert saved.count == 1
    assert all(torch.equal(saved.sums[n], v) for n, v in independent.sums.items())
    seen, synced = [], []
    steering.sync = lambda t: synced.append(t.numel()) or t.add_(1.0)  # a rank's all-reduce
    plan = steering.fade.plan
    monkeypatch.setattr(steering.fade, "plan", lambda *a, **k: seen.append((a, k)) or plan(*a, **k))
    monkeypatch.setattr(steering, "sparsity", lambda: 0.01)
    find = lambda **kw: demp.find_dead(pruner.model, x, structure=pruner.structure, **kw)  # noqa: E731
    assert steering.after_check(40, find)["faded"] > 0
    ((args, kwargs),) = seen
    assert kwargs == {"relative": False}
    want = independent.scores()  # through the sync, in name order: ranks fade the same units
    assert all(torch.equal(args[-1][n], v + 1.0) for n, v in want.items())
    assert synced == [want[n].numel() for n in sorted(want)]
    assert steering.taylor.count == 0  # a new interval after each check


def test_per_cost_ranks_by_score_over_the_units_cost():
    model, _, pruner, _ = _setup(ResNet())
    structure, steering = pruner.structure, pruner.steering
    costs = steering.costs.unit_costs("weight")
    score = {n: torch.rand(g.width, dtype=torch.float64) for n, g in structure.groups.items()}
    floors = steering.floors()
    ranked = _candidates(model, structure, floors, set(), score, costs, relative=False)
    assert len({costs[n] for n, _ in ranked}) > 2  # groups of different costs compete
    ratio = [float(score[n][i]) / costs[n] for n, i in ranked]  # independent: score / cost
    assert ratio == sorted(ratio)
    plain = _candidates(model, structure, floors, set(), score, None, relative=False)
    assert [float(score[n][i]) for n, i in plain] == sorted(float(score[n][i]) for n, i in plain)
    assert plain != ranked
    budget = 0.2 * demp.count_trainable(model)
    fade = Fade(length=4, per_cost=True)
    fade.plan(model, structure, steering.costs, floors, budget, "weight", 0, score, relative=False)
    first = ranked[0]
    assert first[1] in fade.chosen[first[0]]  # the plan takes the ranking's weakest first


def test_the_new_options_are_checked():
    with pytest.raises(ValueError, match="fade_per_cost"):
        demp.DemPConfig(target_sparsity=0.5, fade_per_cost=1)
    assert demp.DemPConfig(target_sparsity=0.5, fade_score="taylor").fade_score == "taylor"
