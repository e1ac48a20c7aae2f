"""DemP+'s restart: the schedule starts again once the target is reached; rewind: weights too."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from nets import VGG
from torch import nn

import demp
from tests.core.algorithm.test_pruner import synthetic

TOTAL = 300


def _run(rewind, until_rewound=True, copy_at=None, seed=0, restart=True, ask=True):
    """A VGG target run (as in test_steering) stepped until the rewind; returns what it saw."""
    torch.manual_seed(seed)
    model, (x, y) = VGG((16, 32), size=8, hidden=32, out=10), synthetic((3, 8, 8))
    initial = copy.deepcopy(model)
    cfg = demp.DemPConfig(reg_strength=0.3, target_sparsity=0.5, prune_every=10,
                          target_max_scale=6.0, restart=restart, rewind=rewind)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    pruner = demp.DemonPruner(model, opt, x[:256], TOTAL, cfg)
    g = torch.Generator().manual_seed(1)
    early = None
    for step in range(1, TOTAL + 1):
        if restart and ask:  # as a loop whose schedule starts again would
            pruner.restart.position(step - 1, TOTAL)
        i = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == copy_at:
            early = (copy.deepcopy(model), len(pruner.structure.history))
        if until_rewound and pruner.restart.at is not None:
            break
    return model, opt, pruner, initial, early, x


def _replayed(model, events, x):
    """``model`` cut by ``events`` (a removal history) on a copy (independent replay)."""
    model = copy.deepcopy(model)
    structure = demp.build_structure(model, x[:2])
    for event in events:
        demp.remove_units(model, {k: list(v) for k, v in event.items() if v}, structure=structure)
    return model


def _original_rows(now, before):
    """For each output filter of ``now``, the index of the identical filter of ``before``."""
    flat_now, flat_before = now.reshape(len(now), -1), before.reshape(len(before), -1)
    rows = []
    for row in flat_now:
        hits = [j for j, old in enumerate(flat_before) if torch.equal(row, old)]
        assert len(hits) == 1, "a kept unit's filter is not one of the early filters"
        rows.append(hits[0])
    return rows


def test_rewind_to_init_puts_every_kept_unit_back_at_its_initial_weights():
    model, opt, pruner, initial, _, x = _run(0.0)
    done = pruner.restart.at
    assert done is not None and pruner.history[-1]["step"] == done
    assert pruner.history[-1]["rewound"] is True and pruner.history[-1]["restarted"] is True
    assert sum(1 for e in pruner.history if e.get("rewound")) == 1
    controller = pruner.steering.controller
    assert controller.released_at is not None and done > controller.released_at
    assert pruner.reg_strength_at(done) == 0.0  # pushing is over when it rewinds
    assert pruner.structure.num_units < sum(demp.build_structure(initial, x[:2]).widths().values())
    # every tensor equals the initial model's, cut by the run's removals
    expected = _replayed(initial, pruner.structure.history, x).state_dict()
    got = model.state_dict()
    assert expected.keys() == got.keys()
    for key in got:
        assert torch.equal(got[key], expected[key]), key
    # independently: each kept filter of the first conv is one initial filter, in order
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    conv0 = next(m for m in initial.modules() if isinstance(m, nn.Conv2d))
    rows = _original_rows(conv.weight.detach(), conv0.weight.detach())
    assert rows == sorted(rows)
    assert all(not opt.state[p] for p in model.parameters())  # optimizer state cleared


def test_rewind_to_an_early_step_restores_that_steps_weights():
    model, _, pruner, _, early, x = _run(0.05, copy_at=round(0.05 * TOTAL))
    assert round(0.05 * TOTAL) % 10  # not a check step: the copy is taken before any cut
    early_model, cuts_before = early
    expected = _replayed(early_model, pruner.structure.history[cuts_before:], x).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_training_goes_on_after_the_rewind_and_the_run_ends_at_the_target():
    model, _, pruner, _, _, x = _run(0.0, until_rewound=False)
    pruner.finalize()
    assert pruner.restart.at is not None and not pruner.restart.holding
    assert 0.4 <= pruner.steering.sparsity() <= 0.5 + 1e-12
    assert torch.isfinite(model(x[:8])).all()


def test_without_restart_nothing_is_kept_or_cleared():
    _, opt, pruner, _, _, _ = _run(None, until_rewound=False, restart=False)
    assert pruner.restart is None and "restart" not in pruner.state_dict()
    assert not any("restarted" in e for e in pruner.history)
    assert all(opt.state[p] for p in opt.param_groups[0]["params"])


def test_a_restart_alone_keeps_the_weights_and_clears_the_optimizer_state():
    model, opt, pruner, _, _, x = _run(None)
    restart = pruner.restart
    assert restart.at is not None and not restart.holding
    entry = pruner.history[-1]
    assert entry["restarted"] is True and entry["rewound"] is False
    assert all(not opt.state[p] for p in model.parameters())
    # the schedule's position: unchanged before the restart, from zero after it
    assert restart.position(restart.at - 1, TOTAL) == (restart.at - 1, TOTAL)
    assert restart.position(restart.at, TOTAL) == (0, TOTAL - restart.at)
    assert restart.position(TOTAL - 1, TOTAL) == (TOTAL - 1 - restart.at, TOTAL - restart.at)


def test_a_loop_that_does_not_restart_its_schedule_is_warned():
    with pytest.warns(UserWarning, match="restarted at step .* has not asked"):
        _run(None, ask=False)


def test_the_restart_waits_for_the_rewind_copy():
    late = 0.6  # the target is released well before step 180
    _, _, pruner, _, _, _ = _run(late, until_rewound=False)
    released = pruner.steering.controller.released_at
    assert released is not None and released < round(late * TOTAL)
    assert pruner.restart.at is not None and pruner.restart.at >= round(late * TOTAL)
    assert pruner.restart.at % 10 == 0  # at a death check


def test_a_run_resumed_before_the_rewind_rewinds_alike(tmp_path):
    """The held copy travels in the checkpoint: a resumed run rewinds to the same weights."""
    torch.manual_seed(0)
    model, (x, y) = VGG((16, 32), size=8, hidden=32, out=10), synthetic((3, 8, 8))
    fresh = copy.deepcopy(model)
    cfg = demp.DemPConfig(reg_strength=0.3, target_sparsity=0.5, prune_every=10,
                          target_max_scale=6.0, restart=True, rewind=0.0)  # fmt: skip

    def steps(model, opt, start, stop):
        for step in range(start, stop):
            g = torch.Generator().manual_seed(step)
            i = torch.randint(0, len(x), (64,), generator=g)
            loss = nn.functional.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    pruner = demp.DemonPruner(model, opt, x[:256], TOTAL, cfg)
    steps(model, opt, 0, 50)
    assert pruner.restart.holding and pruner.structure.history  # cut, not yet rewound
    demp.save_checkpoint(tmp_path / "ck", model, opt, pruner=pruner)
    steps(model, opt, 50, TOTAL)
    assert pruner.restart.at is not None
    model2 = copy.deepcopy(fresh)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    pruner2 = demp.DemonPruner(model2, opt2, x[:256], TOTAL, cfg)
    demp.load_checkpoint(tmp_path / "ck", model2, opt2, pruner=pruner2)
    assert pruner2.restart.holding
    steps(model2, opt2, 50, TOTAL)
    assert pruner2.restart.at == pruner.restart.at
    for key, value in model.state_dict().items():
        assert torch.equal(value, model2.state_dict()[key]), key


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rewind": 0.0, "restart": True}, "rewind needs target_sparsity"),
        ({"rewind": 0.0, "target_sparsity": 0.5, "restart": False}, "restart=True"),
        ({"rewind": 1.0, "target_sparsity": 0.5, "restart": True}, "and a fraction in"),
        ({"rewind": -0.1, "target_sparsity": 0.5, "restart": True}, "rewind must be a finite"),
        ({"rewind": float("nan"), "target_sparsity": 0.5}, "rewind must be a finite number"),
        ({"rewind": True, "target_sparsity": 0.5}, "rewind must be a finite number"),
        ({"restart": 1, "target_sparsity": 0.5}, "restart must be true or false"),
    ],
)
def test_bad_rewind_is_refused(options, match):
    with pytest.raises(ValueError, match=match):
        demp.DemPConfig(**options)


def test_a_lambda_schedule_starts_again_compressed_at_the_restart():
    from demp.algorithm.restart import Restart, restart_schedulers, restarting

    total, at, base = 100, 37, 0.1
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1, dtype=torch.float64))], lr=base)
    restart = Restart()

    def cosine(step):
        return 0.5 * (1 + math.cos(math.pi * step / total))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, restarting(cosine, restart, total))
    for step in range(1, total):
        if step == at:
            restart.at = at  # what Restart.apply records at the check of step ``at``
        opt.step()  # no gradients: nothing moves
        sched.step()
        span = total if step < at else total - at
        offset = 0 if step < at else at
        expected = base * 0.5 * (1 + math.cos(math.pi * (step - offset) / span))
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    step_lr = torch.optim.lr_scheduler.StepLR(opt, 10)
    other = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    assert restart_schedulers([None, step_lr, other], restart, total) == ["StepLR"]
    assert other.lr_lambdas[0](at) == 1.0 and step_lr.step_size == 10
    assert restart_schedulers([other], None, total) == []
