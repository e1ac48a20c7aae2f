"""The death check's BatchNorm statistics: running, the probe batch's own, re-estimated."""

import copy

import pytest
import torch
from nets import stale_net

import demp
from demp.death.norm_stats import norm_statistics


def group_of(dead):
    return next(g for g in dead.groups.values() if g.width == 4)


def test_running_and_batch_statistics_disagree_as_built():
    model, x = stale_net()
    running = group_of(demp.find_dead(model, x, stats="running")).dead.tolist()
    batch = group_of(demp.find_dead(model, x, stats="batch")).dead.tolist()
    assert running[:2] == [False, True]
    assert batch[:2] == [True, False]


def test_a_removal_judged_on_batch_statistics_keeps_the_train_mode_output():
    model, x = stale_net()
    before_state = copy.deepcopy(model.state_dict())
    dead = demp.find_dead(model, x, stats="batch")
    for name, value in model.state_dict().items():  # deciding changed nothing
        assert torch.equal(value, before_state[name]), name
    assert model.training
    assert dead.num_dead >= 1

    def train_out(m):
        twin = copy.deepcopy(m)  # train mode updates running statistics: use a copy
        twin.train()
        with torch.no_grad():
            return twin(x)

    before = train_out(model)
    demp.remove_units(model, dead)
    torch.testing.assert_close(train_out(model), before, rtol=0, atol=1e-10)


def test_a_removal_judged_on_running_statistics_changes_the_train_mode_output():
    model, x = stale_net()
    twin = copy.deepcopy(model).train()
    with torch.no_grad():
        before = twin(x)
    demp.remove_units(model, demp.find_dead(model, x, stats="running"))
    twin = copy.deepcopy(model).train()
    with torch.no_grad():
        assert not torch.allclose(twin(x), before, atol=1e-6)


def test_reestimate_uses_the_probe_population_statistics_and_restores_the_buffers():
    model, x = stale_net()
    bn = model.features[1]
    saved = {k: v.clone() for k, v in bn.state_dict().items()}
    probe = [x[:32], x[32:]]
    seen = {}

    def run_probe():
        for b in probe:
            model(b)

    with norm_statistics(model, "reestimate", run_probe):
        assert not bn.training
        seen["mean"] = bn.running_mean.clone()
        seen["var"] = bn.running_var.clone()
    conv_out = model.features[0](x)
    means = torch.stack([conv_out[:32].mean((0, 2, 3)), conv_out[32:].mean((0, 2, 3))])
    torch.testing.assert_close(seen["mean"], means.mean(0))
    n = 32 * 8 * 8
    halves = (slice(0, 32), slice(32, 64))
    varis = [conv_out[s].var((0, 2, 3), unbiased=False) * n / (n - 1) for s in halves]
    torch.testing.assert_close(seen["var"], (varis[0] + varis[1]) / 2)
    for k, v in bn.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert bn.momentum == 0.1


def test_reestimated_death_agrees_with_batch_death_on_one_probe_batch():
    model, x = stale_net()
    a = demp.find_dead(model, x, stats="batch").as_dict()
    b = demp.find_dead(model, x, stats="reestimate").as_dict()
    assert a == b


def test_statistics_are_restored_when_the_probe_fails():
    model, x = stale_net()
    structure = demp.find_dead(model, x).structure
    saved = copy.deepcopy(model.state_dict())
    bad = [x[:32], torch.randn(4, 5, 8, 8, dtype=torch.float64)]  # the 2nd batch fails
    for stats in ("batch", "reestimate"):
        with pytest.raises(demp.ProbeError):
            demp.find_dead(model, bad, stats=stats, structure=structure)
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name


def test_unknown_statistics_are_refused():
    model, x = stale_net()
    with pytest.raises(ValueError, match="stats must be one of"):
        demp.find_dead(model, x, stats="fresh")
