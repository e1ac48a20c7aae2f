"""DemP+ in a DemonPruner: cost-weighted penalty, floors, target runs and their resume."""

from __future__ import annotations

import copy

import pytest
import torch
from nets import VGG, ResNet
from torch import nn

import demp
from demp.algorithm.regularizer import add_penalty_gradient, penalty, regularized_parameters
from tests.core.algorithm.test_pruner import synthetic, train


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_weighted_penalty_gradient_equals_autograd(kind):
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(5, dtype=torch.float64)) for _ in range(3)]
    weights = [torch.rand(5, dtype=torch.float64), None, torch.rand(5, dtype=torch.float64)]
    for p in params:
        p.grad = torch.zeros_like(p)
    add_penalty_gradient(params, kind, 0.3, weights)
    total = sum(
        ((w if w is not None else 1.0) * (p.abs() if kind == "l1" else 0.5 * p**2)).sum()
        for p, w in zip(params, weights, strict=True)
    )
    expected = torch.autograd.grad(0.3 * total, params)
    for p, g in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=1e-15)
    assert penalty(params, kind, 0.3, weights) == pytest.approx(float(0.3 * total.detach()))


def _pruner(model, x, total_steps=100, **options):
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    return demp.DemonPruner(model, opt, x, total_steps, demp.DemPConfig(**options)), opt


@pytest.mark.parametrize("weighting,metric", [("params", "weight"), ("flops", "flops")])
def test_weights_are_each_units_saving_counted_by_cutting_it(weighting, metric):
    torch.manual_seed(0)
    model, x = ResNet(), torch.randn(32, 3, 8, 8)
    pruner, _ = _pruner(model, x, reg_weighting=weighting)
    params = pruner._reg_params
    weights = dict(zip(map(id, params), pruner._weights, strict=True))
    saved = {}
    for name in pruner.structure.groups:  # independent: cut one unit, count
        model2, s2 = copy.deepcopy(model), copy.deepcopy(pruner.structure)
        demp.remove_units(model2, {name: [0]}, structure=s2)
        if metric == "weight":
            saved[name] = demp.count_trainable(model) - demp.count_trainable(model2)
        else:
            saved[name] = demp.forward_flops(model, x[:1]) - demp.forward_flops(model2, x[:1])
    entries = []
    for name, group in pruner.structure.groups.items():
        for slot in group.slots:
            if slot.role == "norm":
                w = weights[id(model.get_submodule(slot.path).weight)][slot.index[:, 0]]
                entries.append((w, saved[name]))
    mean = torch.cat([w for w, _ in entries]).mean()
    assert float(mean) == pytest.approx(1.0)
    ratio = float(entries[0][0][0]) / entries[0][1]
    for w, cost in entries:  # every weight is proportional to its unit's saving
        torch.testing.assert_close(w, torch.full_like(w, cost * ratio), rtol=1e-5, atol=0)


class CheapExpensive(nn.Module):
    """An expensive first layer (wide input) and a cheap second one, both with BatchNorm."""

    def __init__(self):
        super().__init__()
        self.a, self.bn_a = nn.Linear(64, 24), nn.BatchNorm1d(24)
        self.b, self.bn_b = nn.Linear(24, 24), nn.BatchNorm1d(24)
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        h = torch.relu(self.bn_a(self.a(x)))
        return self.head(torch.relu(self.bn_b(self.b(h))))


def _units_left(weighting):
    torch.manual_seed(0)
    model, (x, y) = CheapExpensive(), synthetic((64,))
    cfg = demp.DemPConfig(reg_strength=2e-2, reg_weighting=weighting, prune_every=20)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    pruner = demp.DemonPruner(model, opt, x[:256], 300, cfg)
    train(model, opt, x, y, 300)
    pruner.finalize()
    return pruner.structure.widths()


def test_the_expensive_layer_loses_more_units_under_params_weighting():
    uniform, weighted = _units_left("uniform"), _units_left("params")
    assert weighted["a"] < uniform["a"]
    assert uniform["a"] - weighted["a"] > uniform["b"] - weighted["b"]


def test_min_fraction_floor_holds_through_every_removal():
    torch.manual_seed(0)
    model, (x, y) = VGG((16, 32), size=8, hidden=32, out=10), synthetic((3, 8, 8))
    cfg = demp.DemPConfig(reg_strength=1e-1, prune_every=10, min_fraction=0.75)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    pruner = demp.DemonPruner(model, opt, x[:256], 200, cfg)
    initial = pruner.structure.widths()
    train(model, opt, x, y, 200)
    pruner.finalize()
    assert any(e["removed"] for e in pruner.history)
    for event in pruner.history:
        for name, width in event["widths"].items():
            assert width >= -(-3 * initial[name] // 4)
    assert any(w == -(-3 * initial[n] // 4) for n, w in pruner.structure.widths().items())


@pytest.mark.parametrize("weighting", ["uniform", "params"])
def test_a_group_at_its_floor_is_not_pushed(weighting):
    torch.manual_seed(0)
    model, x = VGG((16, 32), size=8, hidden=32, out=10), torch.randn(32, 3, 8, 8)
    pruner, opt = _pruner(model, x, min_fraction=0.5, reg_weighting=weighting)
    name = next(iter(pruner.structure.groups))
    assert name not in pruner.steering.held_groups()
    demp.remove_units(model, {name: list(range(8))}, opt, structure=pruner.structure)
    assert pruner.steering.held_groups() == {name}
    weights = pruner.steering.reg_weights(pruner._reg_params)
    by_param = dict(zip(map(id, pruner._reg_params), weights, strict=True))
    held, pushed = [], []
    for group_name, group in pruner.structure.groups.items():
        for slot in group.slots:
            if slot.role == "norm":
                w = by_param[id(model.get_submodule(slot.path).weight)][slot.index[:, 0]]
                (held if group_name == name else pushed).append(w)
    assert held and all(bool((w == 0).all()) for w in held)
    assert float(torch.cat(pushed).mean()) == pytest.approx(1.0)
    assert all(bool((w > 0).all()) for w in pushed)
    for p in pruner._reg_params:
        p.grad = torch.zeros_like(p)
    add_penalty_gradient(pruner._reg_params, "l1", 0.5, weights)
    scales = [model.get_submodule(s.path).weight for s in pruner.structure.groups[name].slots
              if s.role == "norm"]  # fmt: skip
    assert scales and all(bool((p.grad == 0).all()) for p in scales)


@pytest.mark.parametrize("metric", ["weight", "neuron", "flops"])
def test_a_target_run_lands_at_or_just_below_the_target(metric):
    torch.manual_seed(0)
    model, (x, y) = VGG((16, 32), size=8, hidden=32, out=10), synthetic((3, 8, 8))
    # a tiny net in 300 steps needs a strength near its loss gradients: the controller
    # reaches at most target_max_scale x reg_strength (DemP+'s 3 is too little here)
    cfg = demp.DemPConfig(reg_strength=0.3, target_sparsity=0.5, target_metric=metric,
                          prune_every=10, target_max_scale=6.0)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    pruner = demp.DemonPruner(model, opt, x[:256], 300, cfg)
    train(model, opt, x, y, 300)
    pruner.finalize()
    reached = pruner.steering.sparsity()
    steps = [e["target_sparsity"] for e in pruner.history]
    assert steps == sorted(steps) and max(steps) <= 0.5 + 1e-12  # never past the target
    steering = pruner.steering
    granularity = max(steering.costs.unit_costs(metric).values()) / steering._initial()
    assert 0.5 - max(granularity, 0.02) <= reached <= 0.5
    assert pruner.steering.controller.reached_at is not None
    assert all("lambda" in e and "lambda_scale" in e for e in pruner.history)


def test_a_target_given_up_releases_and_says_so():
    torch.manual_seed(0)
    model, (x, y) = VGG((16, 32), size=8, hidden=32, out=10), synthetic((3, 8, 8))
    cfg = demp.DemPConfig(reg_strength=0.0, noise="off", target_sparsity=0.5, fade=False,
                          prune_every=10, target_max_scale=8.0, target_deadline=1.0)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    pruner = demp.DemonPruner(model, opt, x[:256], 100, cfg)
    assert pruner.steering.shortfall() is not None  # nothing removed yet
    train(model, opt, x, y, 100)
    pruner.finalize()
    controller = pruner.steering.controller
    assert controller.scale == 8.0 and controller.stalled_at is not None
    assert pruner.history[-1]["target_given_up"] and controller.multiplier(99) == 0.0
    note = pruner.steering.shortfall()
    assert note is not None and "not reached" in note and "given up" in note
    assert "ceiling" in note


def test_a_target_given_up_at_the_deadline_says_so():
    torch.manual_seed(0)
    model, (x, y) = VGG((16, 32), size=8, hidden=32, out=10), synthetic((3, 8, 8))
    cfg = demp.DemPConfig(reg_strength=0.0, noise="off", target_sparsity=0.5, fade=False,
                          prune_every=10, target_deadline=0.3)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    pruner = demp.DemonPruner(model, opt, x[:256], 100, cfg)
    train(model, opt, x, y, 100)
    pruner.finalize()
    assert pruner.steering.controller.stalled_at == 30
    note = pruner.steering.shortfall()
    assert note is not None and "deadline (0.3 of the run)" in note


def test_a_target_run_that_lands_has_no_shortfall_note():
    torch.manual_seed(0)
    model, (x, y) = VGG((16, 32), size=8, hidden=32, out=10), synthetic((3, 8, 8))
    cfg = demp.DemPConfig(reg_strength=0.3, target_sparsity=0.5, prune_every=10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    pruner = demp.DemonPruner(model, opt, x[:256], 300, cfg)
    train(model, opt, x, y, 300)
    pruner.finalize()
    assert pruner.steering.shortfall() is None


@pytest.mark.parametrize("target,within", [(0.7, 0.005), (0.9, 0.002), (0.95, 0.001)])
def test_reached_means_within_half_a_point_and_2_percent_of_what_the_target_keeps(target, within):
    torch.manual_seed(0)
    width = 1024  # a unit here is under 0.07 % of the weights: the tolerance is the rule's
    layers = [nn.Linear(8, width), nn.BatchNorm1d(width), nn.ReLU()]
    for _ in range(3):
        layers += [nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(width, 2))
    pruner, _ = _pruner(model, torch.randn(16, 8), target_sparsity=target)
    steering = pruner.steering
    one_unit = min(steering.costs.unit_costs("weight").values()) / steering._initial()
    assert one_unit < 0.001
    assert steering._granularity() == pytest.approx(within, rel=1e-12)


def test_target_max_scale_below_one_is_an_error():
    with pytest.raises(ValueError, match="target_max_scale"):
        demp.DemPConfig(target_sparsity=0.5, target_max_scale=0.5)


@pytest.mark.parametrize("case", ["target", "mid-fade"])
def test_target_run_resumes_bit_exactly(tmp_path, case):
    x, y = synthetic((3, 8, 8), n=256, dtype=torch.float64)
    cfg = demp.DemPConfig(reg_strength=5e-2, noise_std=1e-3, prune_every=10,
                          target_sparsity=0.5, reg_weighting="params")  # fmt: skip
    if case == "mid-fade":  # a strength too weak to kill: the fade does it
        cfg = demp.DemPConfig(reg_strength=1e-4, noise_std=1e-3, prune_every=10,
                              target_sparsity=0.5, target_max_scale=2.0,
                              target_deadline=1.0)  # fmt: skip

    def make(seed=0):
        torch.manual_seed(seed)
        model = VGG((6, 8), size=8, hidden=12, out=10).double()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        return model, opt, demp.DemonPruner(model, opt, x[:64], total_steps=80, config=cfg)

    def batches(start, stop, model, opt):
        for step in range(start, stop):
            i = torch.arange(step * 16, step * 16 + 16) % len(x)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()

    model_a, opt_a, pruner_a = make()
    batches(0, 80, model_a, opt_a)
    model_b, opt_b, pruner_b = make()
    stop = 35
    if case == "mid-fade":  # saved inside a fade
        stop = next(e["step"] for e in pruner_a.history if e.get("faded")) + 4
    batches(0, stop, model_b, opt_b)
    assert case != "mid-fade" or pruner_b.steering.fade.chosen
    demp.save_checkpoint(tmp_path / "ck", model_b, opt_b, pruner=pruner_b)
    pruner_b.detach()
    model_c, opt_c, pruner_c = make(seed=99)
    demp.load_checkpoint(tmp_path / "ck", model_c, opt_c, pruner=pruner_c)
    batches(stop, 80, model_c, opt_c)

    assert sum(e["removed"] for e in pruner_a.history) > 0
    assert pruner_a.steering.controller.trajectory == pruner_c.steering.controller.trajectory
    assert len(pruner_a.steering.controller.trajectory) == 8
    state_a, state_c = model_a.state_dict(), model_c.state_dict()
    assert state_a.keys() == state_c.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_c[key]), key


def test_regularized_parameters_unchanged_by_steering_defaults():
    model = VGG()
    pruner, _ = _pruner(model, torch.randn(16, 3, 8, 8))
    assert pruner._weights is None
    assert pruner._reg_params == regularized_parameters(model, "norm_scale")


@pytest.mark.parametrize(
    "options,expected",
    [({}, "uniform"), ({"target_sparsity": 0.5}, "params"),
     ({"target_sparsity": 0.5, "target_metric": "flops"}, "flops"),
     ({"target_sparsity": 0.5, "target_metric": "neuron"}, "uniform"),
     ({"target_sparsity": 0.5, "reg_target": "all"}, "uniform"),
     ({"target_sparsity": 0.5, "reg_weighting": "uniform"}, "uniform"),
     ({"reg_weighting": "flops"}, "flops")],
)  # fmt: skip
def test_auto_weighting_is_the_cost_in_the_targets_metric(options, expected):
    assert demp.DemPConfig(**options).weighting == expected


def test_a_weight_target_weighs_the_penalty_by_params_by_default():
    torch.manual_seed(0)
    model, x = VGG((16, 32), size=8, hidden=32, out=10), torch.randn(32, 3, 8, 8)
    twin = copy.deepcopy(model)
    auto, _ = _pruner(model, x, target_sparsity=0.5)
    explicit, _ = _pruner(twin, x, target_sparsity=0.5, reg_weighting="params")
    assert auto._weights is not None
    for a, b in zip(auto._weights, explicit._weights, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
