"""Coupled channel groups of a model: which slices of which layers move together.

A :class:`ChannelGroup` is a set of channels (units) that must be removed together: the
output channels of the producing layers, the per-channel entries of normalization layers
and depthwise convolutions, and the input columns of every consuming layer. Each
:class:`Slot` maps group channel ``j`` to the indices ``index[j]`` along one side of one
module (a flatten maps one channel to ``H*W`` input features of the next linear layer).

The structure holds no reference to the model or to Torch-Pruning: it is plain data,
built once by :func:`demp.structure.build_structure` and renumbered in place after each cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..errors import StaleStructureError, UnsupportedGroupError
from ..ops.rules import DEFAULT_RULES, LayerRules, Side, side_size

Role = Literal["producer", "consumer", "norm", "depthwise"]


@dataclass
class Slot:
    """One module's share of a channel group.

    Attributes:
        path: Dotted module path in the model.
        role: ``producer`` (output channels of a conv/linear), ``consumer`` (input columns
            of a conv/linear), ``norm`` (per-channel normalization entries) or
            ``depthwise`` (a depthwise convolution, cut on its single channel dimension).
        index: LongTensor of shape ``(width, k)``: group channel ``j`` is indices
            ``index[j]`` of the module's channel dimension on :attr:`side`.

    """

    path: str
    role: Role
    index: torch.Tensor

    @property
    def side(self) -> Side:
        """The module dimension this slot cuts: ``"in"`` for consumers, else ``"out"``."""
        return "in" if self.role == "consumer" else "out"


@dataclass
class ChannelGroup:
    """Channels that are removed together. Named after the first producing layer.

    Attributes:
        name: The first producing layer's path.
        width: Number of units.
        slots: Each module's share.
        parts: 1, or the number of equal parts the producer's channels are split into on
            their way (:mod:`demp.structure.splits`): each unit then holds one channel of
            every part, so a producer's or norm's slot has up to ``parts`` indices per unit.
    """

    name: str
    width: int
    slots: list[Slot]
    parts: int = 1

    @property
    def consumers(self) -> list[Slot]:
        """The slots whose inputs decide whether a channel is dead."""
        return [s for s in self.slots if s.role == "consumer"]


@dataclass
class Structure:
    """All channel groups of a model, plus what was left out and why.

    Attributes:
        groups: Prunable groups, by name.
        skipped: Groups (by name) that cannot be cut exactly, with the reason.
        output_layers: Module paths whose outputs are the model's outputs (never cut).
        sizes: Expected size of each ``(path, side)`` the groups touch, to detect staleness.
        history: One entry per removal made through this structure: group name -> removed
            unit indices (numbered as at that removal).
        rules: The layer table the structure was built with; every later size check and
            cut of its modules reads the same rows.

    """

    groups: dict[str, ChannelGroup]
    skipped: dict[str, str] = field(default_factory=dict)
    output_layers: list[str] = field(default_factory=list)
    sizes: dict[tuple[str, Side], int] = field(default_factory=dict)
    history: list[dict[str, list[int]]] = field(default_factory=list)
    rules: LayerRules = field(default=DEFAULT_RULES, repr=False, compare=False)

    @property
    def num_units(self) -> int:
        """Total channels (units) over the prunable groups."""
        return sum(g.width for g in self.groups.values())

    def widths(self) -> dict[str, int]:
        """Return each prunable group's current width."""
        return {name: g.width for name, g in self.groups.items()}

    def group(self, name: str) -> ChannelGroup:
        """Return a prunable group by name, or raise a clear error."""
        if name in self.groups:
            return self.groups[name]
        if name in self.skipped:
            raise UnsupportedGroupError(f"cannot cut group {name!r}: {self.skipped[name]}")
        raise UnsupportedGroupError(
            f"no channel group named {name!r}; groups are named after their first producing "
            f"layer: {sorted(self.groups)[:8]}"
        )

    def check_matches(self, model: nn.Module) -> None:
        """Raise :class:`StaleStructureError` unless the model still has the recorded sizes."""
        modules = dict(model.named_modules())
        for (path, side), size in self.sizes.items():
            module = modules.get(path)
            if module is None:
                raise StaleStructureError(f"module {path!r} is not in the model")
            now = side_size(module, side, self.rules)
            if now != size:
                raise StaleStructureError(
                    f"{path} has {now} {side}put channels but the structure expects {size}: "
                    "the model changed since the structure was built; rebuild it"
                )

    def renumber(self, removed: dict[str, torch.Tensor]) -> dict[tuple[str, Side], torch.Tensor]:
        """Update every index after channels were removed from some groups.

        Args:
            removed: Group name -> sorted LongTensor of removed group channels.

        Returns:
            ``(path, side)`` -> sorted removed module indices (what was cut where).

        """
        cut = module_cuts(self, removed)
        for name, idx in removed.items():
            group = self.groups[name]
            keep = _complement(idx, group.width)
            group.width = int(keep.numel())
            for slot in group.slots:
                slot.index = slot.index[keep]
        for group in self.groups.values():
            for slot in group.slots:
                gone = cut.get((slot.path, slot.side))
                if gone is not None and gone.numel():
                    slot.index = slot.index - torch.searchsorted(gone, slot.index)
        for key, gone in cut.items():
            self.sizes[key] -= int(gone.numel())
        return cut


def module_cuts(
    structure: Structure, removed: dict[str, torch.Tensor]
) -> dict[tuple[str, Side], torch.Tensor]:
    """Translate removed group channels into removed indices per ``(module path, side)``."""
    parts: dict[tuple[str, Side], list[torch.Tensor]] = {}
    for name, idx in removed.items():
        if idx.numel() == 0:
            continue
        for slot in structure.group(name).slots:
            parts.setdefault((slot.path, slot.side), []).append(slot.index[idx].reshape(-1))
    return {key: torch.unique(torch.cat(chunks)) for key, chunks in parts.items()}


def keep_indices(removed: torch.Tensor, size: int) -> torch.Tensor:
    """Return the sorted indices of ``range(size)`` that are not in ``removed``."""
    return _complement(removed, size)


def _complement(removed: torch.Tensor, size: int) -> torch.Tensor:
    mask = torch.ones(size, dtype=torch.bool)
    mask[removed] = False
    return torch.nonzero(mask).reshape(-1)


def first_difference(now: dict[str, int], saved: dict[str, int]) -> str:
    """The first group whose width differs between two width maps, said in words."""
    for name in sorted(set(now) | set(saved)):
        if now.get(name) != saved.get(name):
            return f"group {name}: model {now.get(name)}, state {saved.get(name)}"
    return "same widths"
