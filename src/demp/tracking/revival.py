"""Revival statistics between dead sets (paper appendix C, after Sokar et al. 2023).

A dead set is a set of ``(group, unit)`` pairs of a model whose structure does not change.
"""

from __future__ import annotations

from collections.abc import Sequence

DeadSet = frozenset[tuple[str, int]]


def overlap_ratio(earlier: DeadSet, later: DeadSet) -> float | None:
    """``|X & Y| / min(|X|, |Y|)``: 1 when the smaller set lies inside the other.

    Returns None when either set is empty (the ratio is undefined).

    Example:
        >>> overlap_ratio(frozenset({("fc", 1), ("fc", 2)}), frozenset({("fc", 2)}))
        1.0
    """
    smaller = min(len(earlier), len(later))
    if smaller == 0:
        return None
    return len(earlier & later) / smaller


def revivals(sets: Sequence[DeadSet]) -> list[dict[str, int]]:
    """Per consecutive pair of dead sets: units that revived, died, and stayed dead."""
    out = []
    for before, after in zip(sets, sets[1:], strict=False):
        out.append(
            {
                "revived": len(before - after),
                "died": len(after - before),
                "stayed": len(before & after),
            }
        )
    return out
