"""Schedules against closed-form values."""

import math

import pytest

import demp
from demp.schedules import cosine_decay, one_cycle, warmup_then_constant


def test_one_cycle_linear_warmup_closed_forms():
    peak, span = 2.0, 1000.0  # warm-up ends at 300
    assert one_cycle(0, peak, span) == 0.0
    assert one_cycle(150, peak, span) == pytest.approx(1.0)
    assert one_cycle(300, peak, span) == pytest.approx(peak)
    # half-way through the decay: the mean of peak and end
    end = peak / 2.5e5
    assert one_cycle(650, peak, span) == pytest.approx((peak + end) / 2)
    assert one_cycle(300 + 350 / 2, peak, span) == pytest.approx(
        end + (peak - end) * (1 + math.cos(math.pi / 4)) / 2
    )
    assert one_cycle(1000, peak, span) == pytest.approx(end)
    assert one_cycle(5000, peak, span) == pytest.approx(end)


def test_one_cycle_cosine_warmup_starts_at_peak_over_25():
    peak, span = 1.0, 100.0
    assert one_cycle(0, peak, span, warmup="cosine") == pytest.approx(peak / 25)
    assert one_cycle(15, peak, span, warmup="cosine") == pytest.approx((peak / 25 + peak) / 2)
    assert one_cycle(30, peak, span, warmup="cosine") == pytest.approx(peak)


def test_schedule_objects_use_the_default_span_of_87_percent():
    s = demp.OneCycle()
    total = 1000
    span = 870
    assert s(int(0.3 * span), total) == pytest.approx(261 / 261)
    assert s(870, total) == pytest.approx(1 / 2.5e5)
    assert s(999, total) == pytest.approx(1 / 2.5e5)
    assert demp.Constant()(123, total) == 1.0
    assert demp.Warmup(0.2)(100, total) == pytest.approx(0.5)
    assert demp.Warmup(0.2)(600, total) == 1.0
    assert demp.CosineDecay()(435, total) == pytest.approx(0.5)
    assert demp.CosineDecay(final=0.1)(900, total) == pytest.approx(0.1)


def test_plain_functions():
    assert warmup_then_constant(5, 4.0, 10) == 2.0
    assert warmup_then_constant(50, 4.0, 10) == 4.0
    assert cosine_decay(0, 3.0, 10) == 3.0
    assert cosine_decay(10, 3.0, 10, final=1.0) == pytest.approx(1.0)


def test_bad_schedule_options():
    with pytest.raises(ValueError, match="warmup_frac"):
        demp.OneCycle(warmup_frac=1.5)
    with pytest.raises(ValueError, match="'linear' or 'cosine'"):
        demp.OneCycle(warmup="exp")
