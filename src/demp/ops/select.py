"""A fixed channel selection: the identity shortcut of a residual block, made cuttable.

``y = branch(x) + x`` makes channel ``c`` of ``x`` and of ``y`` one channel group, so a
generic dependency graph couples a residual channel across a whole stage. With the
shortcut written as ``y = branch(x) + select(x)``, where ``select`` is a fixed 0/1 matrix
(the identity at first), the block's output channels become a group of their own: a unit
dead after one block's add is removed there (the selection's row) and at the next block's
inputs (the next selection's column), exactly (paper: "Maxwell's Demon at Work", §3).

:class:`ChannelSelect` holds that matrix as a frozen buffer and applies it as a gather
(no matmul, so it adds no FLOPs); its row in :mod:`demp.ops.rules` cuts the buffer's rows
on the ``"out"`` side and its columns on the ``"in"`` side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class ChannelSelect(nn.Module):
    """Copy input channels to output channels as a fixed 0/1 selection matrix says.

    ``y[:, o] = x[:, i]`` where ``selection[o, i] == 1``, and ``y[:, o] = 0`` where row
    ``o`` is all zeros (an output whose source was cut). Channels are dim 1 of the input
    (2-D ``(N, C)`` up to 5-D ``(N, C, D, H, W)``). The selection is a buffer (saved in the
    ``state_dict``, never trained); each row holds at most one nonzero, 1 as built. A
    value ``g`` in (0, 1) scales its copy: ``y[:, o] = g * x[:, i]`` (DemP+'s fade takes a
    shortcut to zero this way, :mod:`demp.algorithm.fade`).

    Example:
        >>> select = ChannelSelect.identity(64)
        >>> torch.equal(select(x), x)
        True

    Args:
        selection: The ``(out_channels, in_channels)`` 0/1 matrix (copied).

    Raises:
        ValueError: Not a 2-D matrix of values in [0, 1] with at most one nonzero per row.

    """

    selection: torch.Tensor

    def __init__(self, selection: torch.Tensor) -> None:
        super().__init__()
        check_selection(selection)
        dtype = selection.dtype if selection.is_floating_point() else torch.get_default_dtype()
        self.register_buffer("selection", selection.detach().to(dtype=dtype, copy=True))
        self.out_channels, self.in_channels = (int(n) for n in selection.shape)

    @classmethod
    def identity(
        cls,
        channels: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> ChannelSelect:
        """Return the identity selection of ``channels`` channels."""
        return cls(torch.eye(channels, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gather the selected channels of ``x`` (dim 1); rows with no source give zeros."""
        selection = self.selection
        if x.dim() < 2 or x.shape[1] != selection.shape[1]:
            raise ValueError(
                f"ChannelSelect expects {selection.shape[1]} channels in dim 1, got an input "
                f"of shape {tuple(x.shape)}"
            )
        if selection.shape[1] == 0:
            return x.new_zeros((x.shape[0], selection.shape[0], *x.shape[2:]))
        index = selection.argmax(dim=1)
        has_source = selection.amax(dim=1).to(x.dtype)
        out = x.index_select(1, index)
        return out * has_source.reshape(-1, *([1] * (x.dim() - 2)))

    def extra_repr(self) -> str:
        """Sizes, as in ``ChannelSelect(64 -> 64)``."""
        return f"{self.in_channels} -> {self.out_channels}"


def check_selection(selection: torch.Tensor) -> None:
    """Raise ValueError unless ``selection`` has values in [0, 1], at most one nonzero per row."""
    if not isinstance(selection, torch.Tensor) or selection.dim() != 2:
        raise ValueError("a channel selection must be a 2-D (out_channels, in_channels) tensor")
    values = selection.detach()
    if not bool(((values >= 0) & (values <= 1)).all()):
        raise ValueError("a channel selection holds values in [0, 1] (zeros and ones, or gains)")
    if values.numel() and int((values != 0).sum(dim=1).max()) > 1:
        raise ValueError("a channel selection has at most one nonzero per row (one source each)")


def selection_sizes(module: nn.Module) -> Mapping[str, Any]:
    """The size attributes of a :class:`ChannelSelect`, read from its (sliced) buffer."""
    out_channels, in_channels = module.selection.shape
    return {"out_channels": int(out_channels), "in_channels": int(in_channels)}
