"""Watching units die in a model that is not pruned: periodic dead-unit counts, revival.

- :class:`DeathTracker`: dead-unit counts per layer group every N optimizer steps (or when
  called), in any training loop, with logger hooks; nothing is removed.
- :func:`overlap_ratio`, :func:`revivals`: how many units dead at one check are still dead
  later (paper appendix C, Fig. 8), and how many came back between checks.
"""

from .revival import overlap_ratio, revivals
from .tracker import DeathRecord, DeathTracker, print_logger

__all__ = [
    "DeathRecord", "DeathTracker", "overlap_ratio", "print_logger",
    "revivals",
]  # fmt: skip
