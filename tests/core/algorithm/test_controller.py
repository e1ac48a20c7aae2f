"""The target controller's law, in isolation, against closed forms and a scripted plant."""

from __future__ import annotations

import math

import pytest

from demp import Constant, OneCycle
from demp.algorithm.controller import TargetController


def test_reference_held_peak_and_release_closed_forms():
    c = TargetController(0.8, 1000, OneCycle(), reach=0.5, release=0.1)
    assert c.reference(0) == 0 and c.reference(250) == pytest.approx(0.4)
    assert c.reference(500) == pytest.approx(0.8) and c.reference(900) == pytest.approx(0.8)
    # held: the one-cycle rise (peak at 30 % of the 870-step span), then flat at 1
    peak = round(0.3 * 870)
    assert c.held(100) == pytest.approx(OneCycle()(100, 1000) / OneCycle()(peak, 1000))
    assert c.held(peak + 1) == 1.0 and c.held(990) == 1.0  # the schedule's decay is ignored
    assert c.multiplier(600) == 1.0
    c.reached_at = 600
    assert c.multiplier(600) == 1.0
    assert c.multiplier(650) == pytest.approx(0.5)  # half-way through the 100-step release
    assert c.multiplier(700) == pytest.approx(0.0, abs=1e-12) and c.multiplier(950) == 0.0
    c.scale = 3.0
    assert c.noise_multiplier(600) == 1.0  # the noise never exceeds its configured peak
    assert c.noise_multiplier(650) == pytest.approx(0.5)


def test_multiplicative_update_closed_form():
    c = TargetController(0.8, 1000, Constant(), reach=0.5)
    c.update(250, 0.0)  # reference 0.4: half a target behind -> x exp(ln4 / 2) = x2
    assert c.scale == pytest.approx(2.0)
    c.update(300, 0.0)  # a whole target can never move more than x4 per check
    assert c.scale == pytest.approx(2.0 * math.exp(math.log(4) * 0.6))
    scale = c.scale
    c.update(350, 0.7)  # ahead of the reference (0.56) but below the target: held, never down
    assert c.scale == scale
    assert [e["step"] for e in c.trajectory] == [250, 300, 350]


def test_anti_windup_holds_the_scale_while_deaths_keep_up():
    c = TargetController(0.8, 1000, Constant(), reach=0.5)
    c.update(100, 0.0)
    held = c.scale
    c.update(200, 0.22)  # behind (reference 0.32), but rose 0.22 >= half the gap 0.10
    assert c.scale == held
    c.update(300, 0.23)  # behind (0.48) and stalled: the scale grows
    assert c.scale > held


def test_anti_windup_holds_at_exactly_half_the_lag_and_not_below():
    """The closed form: held iff the interval's rise >= 0.5 x the remaining lag."""
    ref = 0.8 * 200 / 500  # reference at step 200 (reach 0.5 of 1000 steps)
    half = ref / 3  # a rise from 0 to s closes half the lag when s = 0.5 (ref - s)
    for sparsity, held in [(half + 1e-12, True), (half - 0.005, False)]:
        c = TargetController(0.8, 1000, Constant(), reach=0.5)
        c.update(100, 0.0)
        before = c.scale
        c.update(200, sparsity)
        assert (c.scale == before) is held, sparsity


def test_reaching_latches_and_stops_pushing():
    c = TargetController(0.5, 1000, Constant(), reach=0.5, release=0.05)
    c.update(100, 0.49, tolerance=0.02)
    assert c.reached_at == 100
    scale = c.scale
    c.update(200, 0.3)  # nothing changes once reached
    assert c.scale == scale and c.reached_at == 100
    assert c.multiplier(150) == 0.0


def test_the_scale_never_passes_its_ceiling():
    c = TargetController(0.9, 1000, Constant(), reach=0.1)
    for step, expected in [(100, 4.0), (200, 16.0), (300, 64.0), (400, 64.0)]:
        c.update(step, 0.0)  # a whole target behind: x4 per check, then the ceiling
        assert c.scale == pytest.approx(expected)
    assert max(e["scale"] for e in c.trajectory) == 64.0


def test_three_checks_at_the_ceiling_without_progress_give_the_target_up():
    c = TargetController(0.9, 1000, Constant(), reach=0.1, release=0.1, max_scale=16.0)
    for step in (100, 200, 300, 400):  # scales 4, 16, 16, 16: at the ceiling from 200 on
        c.update(step, 0.5, tolerance=0.01)
    assert c.stalled_at is None  # only two checks at the ceiling so far
    c.update(500, 0.5 + 0.009, tolerance=0.01)  # three at the ceiling, gained < tolerance
    assert c.stalled_at == 500 and c.reached_at is None and c.released_at == 500
    assert c.trajectory[-1]["stalled"] and not c.trajectory[-1]["reached"]
    assert c.multiplier(550) == pytest.approx(16.0 * 0.5)  # half-way through the release
    assert c.multiplier(600) == pytest.approx(0.0, abs=1e-12) and c.noise_multiplier(700) == 0
    c.update(600, 0.2)  # nothing changes once given up
    assert c.scale == 16.0 and c.stalled_at == 500
    c2 = TargetController(0.9, 1000, Constant(), reach=0.1, release=0.1, max_scale=16.0)
    c2.load_state_dict(c.state_dict())
    assert (c2.stalled_at, c2.released_at, c2.trajectory) == (500, 500, c.trajectory)


def test_response_time_is_measured_from_the_first_rise_to_the_first_deaths():
    c = TargetController(0.9, 1000, Constant(), reach=0.1, max_scale=4.0, stall_window=0.25)
    c.update(100, 0.0)  # the first rise (x4)
    assert c.response_time(0.01) == 250.0  # nothing seen yet: 25 % of the run
    for step in (200, 300):
        c.update(step, 0.0)
    c.update(400, 0.05)  # the first check that gained a unit: 300 steps after the rise
    assert c.response_time(0.01) == 300.0
    for step in (450, 500, 550, 600):  # three checks at the ceiling, but only 200 steps
        c.update(step, 0.05, tolerance=0.01)
    assert c.stalled_at is None
    c.update(700, 0.05, tolerance=0.01)  # now 300 steps without a unit: given up
    assert c.stalled_at == 700


def test_no_stall_before_the_schedules_rise_is_over():
    c = TargetController(0.5, 1000, OneCycle(), reach=0.1, stall_window=0.01)
    peak = round(0.3 * 870)  # the one-cycle peak: full strength from here on
    for step in range(10, 600, 10):  # nothing ever dies
        c.update(step, 0.0, tolerance=0.01)
    first_at_ceiling = min(e["step"] for e in c.trajectory if e["scale"] == 64.0)
    assert first_at_ceiling < peak  # the scale hits its ceiling during the rise...
    assert c.stalled_at is not None and c.stalled_at >= peak + 30  # ...the window starts after


def test_a_state_from_before_the_ceiling_is_clamped_on_load():
    c = TargetController(0.9, 1000, Constant())
    c.load_state_dict({"scale": 32000.0, "reached_at": None, "trajectory": []})
    assert c.scale == 64.0


def test_progress_at_the_ceiling_keeps_pushing():
    c = TargetController(0.9, 1000, Constant(), reach=0.1, max_scale=4.0)
    for k, step in enumerate(range(100, 1000, 100)):
        c.update(step, 0.3 + 0.02 * k, tolerance=0.01)  # slow but steady deaths
    assert c.stalled_at is None and c.scale == 4.0


@pytest.mark.parametrize("options", [{"max_scale": 0.5}, {"patience": 0}])
def test_bad_ceiling_or_patience_is_an_error(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        TargetController(0.9, 1000, Constant(), **options)


def _plant_run(target: float, gain_per_unit_lambda: float, checks: int = 20, total: int = 1000):
    """A lagged plant: the sparsity relaxes toward a saturating function of the strength."""
    c = TargetController(target, total, Constant())
    sparsity, every = 0.0, total // checks
    for k in range(1, checks + 1):
        step = k * every
        for t in range(step - every, step):  # first-order lag of ~100 steps
            goal = 1 - math.exp(-gain_per_unit_lambda * c.multiplier(t))
            sparsity = max(sparsity, sparsity + (goal - sparsity) / 100)
        sparsity = min(sparsity, target)  # the removal cap
        c.update(step, sparsity, tolerance=0.005)
    return c, sparsity


@pytest.mark.parametrize("target", [0.5, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("gain", [0.05, 1.0, 20.0])
def test_scripted_plant_reaches_the_target_whatever_the_starting_strength(target, gain):
    c, sparsity = _plant_run(target, gain)
    assert c.reached_at is not None and c.reached_at <= 900
    assert target - 0.005 <= sparsity <= target
    c2 = TargetController(target, 1000, Constant())
    c2.load_state_dict(c.state_dict())
    assert (c2.scale, c2.reached_at, c2.trajectory) == (c.scale, c.reached_at, c.trajectory)


def test_scripted_plant_that_cannot_reach_gives_up_at_the_ceiling():
    c, sparsity = _plant_run(0.9, 0.005)  # the ceiling's strength saturates near 27 %
    assert max(e["scale"] for e in c.trajectory) == 64.0
    assert c.stalled_at is not None and c.reached_at is None
    assert c.multiplier(c.stalled_at + 50) == 0.0


def test_a_target_not_reached_by_the_deadline_is_given_up_there():
    c = TargetController(0.9, 1000, Constant(), reach=0.1, release=0.1, deadline=0.6)
    for step in (100, 200, 300, 400, 500):  # steady progress, far from the ceiling's stall
        c.update(step, 0.1 * step / 100, tolerance=0.01)
    assert c.stalled_at is None and c.reached_at is None
    c.update(600, 0.62, tolerance=0.01)
    assert c.stalled_at == 600 and c.released_at == 600
    assert c.multiplier(700) == pytest.approx(0.0, abs=1e-12)
    c.update(700, 0.95)  # nothing changes once given up
    assert c.reached_at is None
    reached = TargetController(0.5, 1000, Constant(), deadline=0.6)
    reached.update(600, 0.5, tolerance=0.01)  # at the deadline but there: reached, not given up
    assert reached.reached_at == 600 and reached.stalled_at is None


def test_the_deadline_is_off_by_default():
    c = TargetController(0.9, 1000, Constant(), reach=0.1, max_scale=4.0)
    for k, step in enumerate(range(100, 1000, 100)):
        c.update(step, 0.3 + 0.02 * k, tolerance=0.01)
    assert c.stalled_at is None


@pytest.mark.parametrize("deadline", [0.0, 1.5])
def test_a_bad_deadline_is_an_error(deadline):
    with pytest.raises(ValueError, match="deadline"):
        TargetController(0.9, 1000, Constant(), deadline=deadline)
