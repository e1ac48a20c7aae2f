"""Death statistics: criteria against hand-made activations, probe forms, errors."""

import pytest
import torch
from nets import MLP, VGG, kill
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import demp


class Fixed(nn.Module):
    """Hidden units whose activations the test sets directly through ``a``'s bias."""

    def __init__(self, act):
        super().__init__()
        self.a, self.act, self.b = nn.Linear(2, 4), act, nn.Linear(4, 2)
        with torch.no_grad():
            self.a.weight.zero_()
            self.a.weight[3, 0] = 1.0  # unit 3 follows the input
            self.a.bias.copy_(torch.tensor([-5.0, -0.001, 2.0, 0.0]))

    def forward(self, x):
        return self.b(self.act(self.a(x)))


def x_probe():
    return torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.5, 0.0]])


def test_zero_criterion_is_exact():
    dead = demp.find_dead(Fixed(nn.ReLU()), x_probe())
    assert dead.groups["a"].indices.tolist() == [0, 1]


def test_eps_criterion_for_gelu():
    model = Fixed(nn.GELU())
    # GELU(-5) ~ -1.4e-6, GELU(-0.001) ~ -5e-4, GELU(2) ~ 1.95, unit 3 sees +-1
    assert demp.find_dead(model, x_probe(), criterion="zero").num_dead == 0
    assert demp.find_dead(model, x_probe(), criterion="eps").groups["a"].indices.tolist() == [0, 1]
    strict = demp.find_dead(model, x_probe(), criterion="eps", eps=1e-5)
    assert strict.groups["a"].indices.tolist() == [0]


def test_nonpositive_criterion_for_leaky_relu():
    model = Fixed(nn.LeakyReLU(0.1))
    dead = demp.find_dead(model, x_probe(), criterion="nonpositive")
    assert dead.groups["a"].indices.tolist() == [0, 1]
    assert demp.find_dead(model, x_probe()).num_dead == 0


def test_a_unit_alive_in_a_single_example_is_alive():
    model = Fixed(nn.ReLU())
    only_negative = torch.tensor([[-1.0, 0.0], [-2.0, 0.0]])
    assert demp.find_dead(model, only_negative).groups["a"].indices.tolist() == [0, 1, 3]
    mixed = [only_negative, torch.tensor([[0.1, 0.0]])]
    assert demp.find_dead(model, mixed).groups["a"].indices.tolist() == [0, 1]


def test_probe_forms_agree():
    torch.manual_seed(0)
    model = MLP((6, 5), in_dim=3)
    s = demp.build_structure(model, torch.randn(2, 3))
    kill(model, s.groups["body.0"], [1, 4])
    x, y = torch.randn(40, 3), torch.randint(0, 3, (40,))
    want = demp.find_dead(model, x).as_dict()
    loader = DataLoader(TensorDataset(x, y), batch_size=7)
    assert demp.find_dead(model, loader).as_dict() == want
    assert demp.find_dead(model, [(x[:20], y[:20]), (x[20:], y[20:])]).as_dict() == want
    assert demp.find_dead(model, [x[:5], x[5:]]).as_dict() == want

    class Kw(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, features):
            return self.inner(features)

    assert demp.find_dead(Kw(model), [{"features": x}]).as_dict() == {
        f"inner.{k}": v for k, v in want.items()
    }


def test_max_examples_limits_the_probe():
    model = Fixed(nn.ReLU())
    x = torch.cat([-torch.ones(10, 2), torch.ones(10, 2)])
    x[:, 1] = 0
    loader = DataLoader(TensorDataset(x), batch_size=4)
    assert demp.find_dead(model, loader, max_examples=10).num_examples == 10
    assert 3 in demp.find_dead(model, loader, max_examples=10).groups["a"].indices.tolist()
    assert 3 not in demp.find_dead(model, loader, max_examples=11).groups["a"].indices.tolist()


def test_per_consumer_report_and_units_total():
    model = VGG(channels=(4, 4), size=8)
    dead = demp.find_dead(model, torch.randn(8, 3, 8, 8))
    assert dead.num_units == 4 + 4 + 10
    group = dead.groups["features.4"]
    assert set(group.per_consumer) == {"fc1"} and group.width == 4
    assert "skipped fc2" in str(dead)


def test_find_dead_changes_nothing_and_restores_mode():
    model = VGG().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    demp.find_dead(model, torch.randn(8, 3, 8, 8))
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def test_bad_probes_give_clear_errors():
    model = MLP(in_dim=3)
    with pytest.raises(demp.ProbeError, match="empty"):
        demp.find_dead(model, [])
    with pytest.raises(demp.ProbeError, match="cannot iterate"):
        demp.find_dead(model, 3.0)
    with pytest.raises(demp.ProbeError, match="could not trace the model"):
        demp.find_dead(model, torch.randn(4, 7))
    s = demp.build_structure(model, torch.randn(2, 3))
    with pytest.raises(demp.ProbeError, match="model failed on a probe batch"):
        demp.find_dead(model, torch.randn(4, 7), structure=s)
    with pytest.raises(demp.DempError, match="criterion must be one of"):
        demp.find_dead(model, torch.randn(4, 3), criterion="dead")


def test_monitor_context_manager_removes_hooks_on_error():
    model = MLP(in_dim=3)
    with pytest.raises(RuntimeError):
        with demp.ActivationMonitor(model, ["body.2", "head"]) as mon:
            model(torch.randn(2, 3))
            assert mon.max_abs["head"].shape == (6,)
            raise RuntimeError
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_spreads_are_each_units_standard_deviation_over_the_probe():
    """The monitor's moments over several batches against torch.std of every value seen."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 4, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
    ).double()  # fmt: skip
    batches = [torch.randn(n, 3, 6, 6, dtype=torch.float64) for n in (7, 5)]
    assert demp.find_dead(model, batches).unit_spreads() == {}  # measured only when asked
    dead = demp.find_dead(model, batches, max_examples=None, spreads=True)
    spreads = dead.unit_spreads()
    seen = torch.cat([model[:2](b) for b in batches])  # the first group's units, as consumed
    want = seen.transpose(0, 1).reshape(5, -1).std(dim=1, correction=0)
    torch.testing.assert_close(spreads["0"], want.detach(), rtol=1e-10, atol=1e-12)
    flat = torch.cat([model[:5](b) for b in batches])  # a linear consumer: features last
    per_feature = flat.std(dim=0, correction=0).reshape(4, 36)
    torch.testing.assert_close(spreads["2"], per_feature.amax(1).detach(), rtol=1e-10, atol=1e-12)


def test_spreads_go_through_sync_like_the_death_statistics():
    """Under DDP every rank must rank units alike: the spreads are synced too, only if asked."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    calls = []

    def sync(tensor):  # another rank saw twice as much spread: MAX gives its values
        calls.append(tensor.clone())
        tensor.mul_(2)

    plain = demp.find_dead(model, x, sync=sync)
    assert len(calls) == 1 and plain.unit_spreads() == {}  # the death statistic only
    calls.clear()
    alone = demp.find_dead(model, x, spreads=True).unit_spreads()
    synced = demp.find_dead(model, x, sync=sync, spreads=True).unit_spreads()
    assert len(calls) == 2  # the statistic and the spreads
    torch.testing.assert_close(synced["0"], 2 * alone["0"], rtol=1e-12, atol=0)
