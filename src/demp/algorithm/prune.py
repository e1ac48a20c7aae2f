"""``prune_dead``: find the dead units and remove them, one call (find_dead + remove_units)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..death.criteria import find_dead
from ..surgery import SurgeryReport, remove_units


def prune_dead(
    model: nn.Module,
    probe: Any,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    min_units: int = 1,
    round_to: int | None = None,
    **find_kwargs: Any,
) -> SurgeryReport:
    """Find the dead units on ``probe`` and remove them: :func:`find_dead` + :func:`remove_units`.

    Extra keyword arguments go to :func:`find_dead`.
    """
    dead = find_dead(model, probe, **find_kwargs)
    return remove_units(model, dead, optimizer, min_units=min_units, round_to=round_to)
