"""The schedules of the unstructured baselines, as closed forms of the step."""

from __future__ import annotations

import math


def cubic_sparsity(step: int, start: int, end: int, final: float, initial: float = 0.0) -> float:
    """Gradual magnitude pruning's sparsity at ``step`` (Zhu & Gupta 2017, eq. 1).

    ``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_end - t_0))^3`` between ``start`` and
    ``end``; ``initial`` before, ``final`` after.
    """
    if step >= end:  # first: a schedule with start == end jumps to final there
        return final
    if step <= start:
        return initial
    left = 1.0 - (step - start) / (end - start)
    return final + (initial - final) * left**3


def cosine_fraction(step: int, end: int, fraction: float) -> float:
    """The drop fraction of SET / RigL at ``step``: ``f / 2 (1 + cos(pi t / T_end))``, 0 after.

    (Evci et al. 2020, eq. 1: the cosine-decayed update fraction.)
    """
    if step >= end:
        return 0.0
    return fraction / 2.0 * (1.0 + math.cos(math.pi * step / end))
