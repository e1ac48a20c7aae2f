"""demp.tracking: DeathTracker counts, revival and overlap statistics, logger hooks."""

import pytest
import torch
from nets import MLP
from torch import nn

from demp.errors import DempError
from demp.tracking import DeathTracker, overlap_ratio, print_logger, revivals


def brute_force_dead(model, x):
    """Dead hidden units per ReLU layer, by a plain forward pass (an independent count)."""
    out, h = [], x
    for layer in model.body:
        h = layer(h)
        if isinstance(layer, nn.ReLU):
            out.append(set(torch.nonzero(h.amax(0) <= 0).reshape(-1).tolist()))
    return out


def test_overlap_and_revivals_closed_forms():
    a = frozenset({("l", 1), ("l", 2), ("m", 0)})
    b = frozenset({("l", 2), ("m", 0)})
    assert overlap_ratio(a, b) == 1.0  # the smaller set lies inside the larger
    assert overlap_ratio(a, frozenset({("l", 2), ("l", 9)})) == 0.5
    assert overlap_ratio(a, frozenset()) is None
    assert revivals([a, b, a]) == [
        {"revived": 1, "died": 0, "stayed": 2},
        {"revived": 0, "died": 1, "stayed": 2},
    ]


def test_tracker_counts_match_a_brute_force_count_and_see_a_revival():
    torch.manual_seed(0)
    model = MLP(widths=(8, 12))
    x = torch.randn(64, 5)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # steps change nothing
    logged = []
    tracker = DeathTracker(model, x, optimizer=opt, every=3, loggers=[
        lambda step, stats: logged.append((step, stats))])  # fmt: skip
    saved = model.body[0].weight[2].clone(), model.body[0].bias[2].clone()
    with torch.no_grad():
        model.body[0].weight[[2, 5]] = 0.0
        model.body[0].bias[[2, 5]] = -1.0
    for _ in range(3):
        opt.step()
    assert [r.step for r in tracker.records] == [3]
    first = tracker.records[0]
    expected = brute_force_dead(model, x)
    assert [set(v) for v in first.dead.values()] == expected
    assert first.num_dead == sum(map(len, expected)) and first.num_units == 20
    assert logged[0][0] == 3 and logged[0][1]["dead"] == first.num_dead
    with torch.no_grad():  # unit 2 revives
        model.body[0].weight[2], model.body[0].bias[2] = saved
    for _ in range(3):
        opt.step()
    tracker.detach()
    for _ in range(3):
        opt.step()
    assert tracker.counts() == [(3, first.num_dead), (6, first.num_dead - 1)]
    assert tracker.revivals() == [{"step": 6, "revived": 1, "died": 0,
                                   "stayed": first.num_dead - 1}]  # fmt: skip
    assert tracker.overlap_with_final() == [(3, 1.0), (6, 1.0)]
    final = tracker.check(step=100)
    assert final.step == 100 and tracker.to_dict()["checks"][-1]["dead"] == final.num_dead
    assert list(tracker.per_group().values())[0][:2] == [
        len(first.dead[next(iter(first.dead))]),
        len(first.dead[next(iter(first.dead))]) - 1,
    ]


def test_eps_criterion_and_print_logger(capsys):
    torch.manual_seed(0)
    model = MLP(widths=(6,), act=nn.SiLU)
    with torch.no_grad():
        model.body[0].weight[1] = 0.0
        model.body[0].bias[1] = -30.0  # SiLU(-30) ~ -3e-12: eps-dead, not exactly zero
    tracker = DeathTracker(model, torch.randn(32, 5), criterion="eps", eps=1e-3,
                           loggers=[print_logger])  # fmt: skip
    record = tracker.check()
    assert record.dead == {next(iter(record.dead)): [1]}
    assert "1 dead units" in capsys.readouterr().out
    exact = DeathTracker(model, torch.randn(32, 5)).check()
    assert exact.num_dead == 0


def test_tracker_bad_arguments():
    model, x = MLP(), torch.randn(8, 5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(DempError, match="both optimizer and every"):
        DeathTracker(model, x, optimizer=opt)
    with pytest.raises(DempError, match="every must be >= 1"):
        DeathTracker(model, x, optimizer=opt, every=0)
