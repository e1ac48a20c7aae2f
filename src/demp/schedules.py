"""Schedules: pure functions of the training step, shared by the regularizer and the noise.

Each schedule object maps ``(step, total_steps)`` to a multiplier in ``[0, 1]``; the strength
at a step is the configured peak times that multiplier (paper §3.1, Fig. 4). The plain
functions below take explicit arguments and are what the objects call.

- :class:`OneCycle` (default): warm-up over the first 30 % of the span to the peak, cosine
  decay to ``peak / 2.5e5`` at the end of the span (0.87 x total steps), flat after.
  ``warmup="linear"`` rises linearly from 0 as the paper's text says; ``"cosine"`` rises
  along a half cosine from ``peak / 25`` as the authors' code does (FACTS §1).
- :class:`Constant`, :class:`Warmup` (linear ramp, then flat) and :class:`CosineDecay`
  (peak at step 0, cosine decay to ``final`` over the span, flat after): the alternatives of
  paper Fig. 4.

Any callable ``(step, total_steps) -> float`` can be used as a schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol


class Schedule(Protocol):
    """A multiplier of a peak strength as a function of the step."""

    def __call__(self, step: int, total_steps: int) -> float:
        """Return the multiplier at ``step`` of a run of ``total_steps`` steps."""
        ...


def cosine_ramp(frac: float, start: float, end: float) -> float:
    """Half-cosine interpolation from ``start`` (frac=0) to ``end`` (frac=1)."""
    frac = min(max(frac, 0.0), 1.0)
    return end + (start - end) * (1.0 + math.cos(math.pi * frac)) / 2.0


def one_cycle(
    step: int,
    peak: float,
    span: float,
    warmup_frac: float = 0.3,
    warmup: Literal["linear", "cosine"] = "linear",
    start_div: float = 25.0,
    final_div: float = 2.5e5,
) -> float:
    """One-cycle value at ``step``: warm-up to ``peak``, cosine decay to ``peak/final_div``.

    Example:
        >>> one_cycle(30, peak=1.0, span=100)  # the peak, at 30 % of the span
        1.0
    """
    warm = warmup_frac * span
    end = peak / final_div
    if step >= span:
        return end
    if step < warm:
        if warmup == "linear":
            return peak * step / warm
        return cosine_ramp(step / warm, peak / start_div, peak)
    return cosine_ramp((step - warm) / max(span - warm, 1e-12), peak, end)


def warmup_then_constant(step: int, peak: float, warmup_steps: float) -> float:
    """Linear ramp from 0 to ``peak`` over ``warmup_steps``, then flat."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return peak
    return peak * step / warmup_steps


def cosine_decay(step: int, peak: float, span: float, final: float = 0.0) -> float:
    """Cosine decay from ``peak`` at step 0 to ``final`` at ``span``, flat after."""
    return cosine_ramp(step / max(span, 1e-12), peak, final)


@dataclass(frozen=True)
class OneCycle:
    """One-cycle multiplier (the DemP default). See :func:`one_cycle`."""

    span_frac: float = 0.87
    warmup_frac: float = 0.3
    warmup: Literal["linear", "cosine"] = "linear"
    start_div: float = 25.0
    final_div: float = 2.5e5

    def __post_init__(self) -> None:
        _check_frac("OneCycle.span_frac", self.span_frac, allow_above_one=True)
        _check_frac("OneCycle.warmup_frac", self.warmup_frac)
        if self.warmup not in ("linear", "cosine"):
            raise ValueError(f"OneCycle.warmup must be 'linear' or 'cosine', got {self.warmup!r}")
        if self.start_div <= 0 or self.final_div <= 0:
            raise ValueError("OneCycle.start_div and final_div must be positive")

    def __call__(self, step: int, total_steps: int) -> float:
        """Return the multiplier at ``step``."""
        span = self.span_frac * total_steps
        return one_cycle(
            step, 1.0, span, self.warmup_frac, self.warmup, self.start_div, self.final_div
        )


@dataclass(frozen=True)
class Constant:
    """The peak at every step."""

    def __call__(self, step: int, total_steps: int) -> float:
        """Return 1."""
        return 1.0


@dataclass(frozen=True)
class Warmup:
    """Linear warm-up over ``warmup_frac`` of the run, then the peak."""

    warmup_frac: float = 0.3

    def __post_init__(self) -> None:
        _check_frac("Warmup.warmup_frac", self.warmup_frac)

    def __call__(self, step: int, total_steps: int) -> float:
        """Return the multiplier at ``step``."""
        return warmup_then_constant(step, 1.0, self.warmup_frac * total_steps)


@dataclass(frozen=True)
class CosineDecay:
    """Cosine decay from the peak to ``final`` (a fraction of it) over ``span_frac`` of the run."""

    span_frac: float = 0.87
    final: float = 0.0

    def __post_init__(self) -> None:
        _check_frac("CosineDecay.span_frac", self.span_frac, allow_above_one=True)
        _check_frac("CosineDecay.final", self.final)

    def __call__(self, step: int, total_steps: int) -> float:
        """Return the multiplier at ``step``."""
        return cosine_decay(step, 1.0, self.span_frac * total_steps, self.final)


def _check_frac(name: str, value: float, allow_above_one: bool = False) -> None:
    if not (0.0 <= value and (allow_above_one or value <= 1.0)):
        raise ValueError(f"{name} must be in [0, 1], got {value}")
