"""Tracing plus trial cuts: the channel groups of a model that demp can cut exactly.

:func:`build_checked_structure` is what every user of the structure calls (``find_dead``,
the pruner, the trackers, the experiments): trace the model on the probe's first examples,
trial-cut one unit of every group (:mod:`demp.structure.verify`), and refuse a model with
nothing to cut. Its options travel as one :class:`StructureOptions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..batches import device_dtype, first_batch, to_device
from ..errors import DempError, ProbeError
from ..ops.rules import DEFAULT_RULES, LayerRules
from .groups import Structure
from .trace import build_structure
from .verify import verify_groups


@dataclass(frozen=True)
class StructureOptions:
    """How to find a model's channel groups.

    Attributes:
        ignored_layers: Modules (or dotted paths) whose outputs are never cut, on top of the
            output layers found automatically.
        allow_inexact_norm: Accept LayerNorm / single-group GroupNorm over the channels
            (their statistics change when a channel goes: removal is then approximate).
        verify: Trial-cut one unit of every group and skip the groups whose cut is not exact.
        rules: The layer table (:mod:`demp.ops.rules`): which layer types can be cut and
            how. ``DEFAULT_RULES.with_rule(row)`` adds a layer type; the structure keeps it.
    """

    ignored_layers: tuple[nn.Module | str, ...] = ()
    allow_inexact_norm: bool = False
    verify: bool = True
    rules: LayerRules = DEFAULT_RULES

    @classmethod
    def of(
        cls,
        ignored_layers: Iterable[nn.Module | str] = (),
        allow_inexact_norm: bool = False,
        verify: bool = True,
        rules: LayerRules | None = None,
    ) -> StructureOptions:
        """Build options from any iterable of ignored layers (``rules``: None for the default)."""
        rules = DEFAULT_RULES if rules is None else rules
        return cls(tuple(ignored_layers), bool(allow_inexact_norm), bool(verify), rules)


def build_checked_structure(
    model: nn.Module, probe: Any, options: StructureOptions | None = None
) -> Structure:
    """Trace ``model`` on the probe's first examples and verify each group by a trial cut.

    Example:
        >>> structure = build_checked_structure(model, probe, StructureOptions(verify=True))
        >>> structure.skipped  # group name -> why it cannot be cut exactly

    Args:
        model: The model (left exactly as it was).
        probe: Anything :func:`demp.batches.iterate_probe` accepts; its first two examples
            are moved to the model's device and dtype.
        options: A :class:`StructureOptions` (defaults if None).

    Raises:
        ProbeError: The model cannot be traced on the probe.
        DempError: The model has no parameters, or no group that can be cut.
    """
    options = options or StructureOptions()
    device, dtype = device_dtype(model)
    example = to_device(first_batch(probe), device, dtype)
    try:
        structure = build_structure(
            model, example, options.ignored_layers, options.allow_inexact_norm, options.rules
        )
    except (RuntimeError, TypeError, IndexError) as err:
        raise ProbeError(f"could not trace the model on the probe's first batch: {err}") from err
    if options.verify:
        verify_groups(model, structure, example, exact=not options.allow_inexact_norm)
    if not structure.groups:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(structure.skipped.items())[:5])
        raise DempError(f"no prunable channel group found in the model ({reasons})")
    return structure
