"""Memory formats through a cut: a sliced tensor keeps the layout its source had.

``index_select`` returns a contiguous tensor whatever the source's strides. A model a user
converted with ``model.to(memory_format=torch.channels_last)`` would turn back to the
default layout, weight by weight, at its first cut, and oneDNN would then reorder between
layouts at every call. :func:`slice_like` gives channels-last tensors their layout back.
"""

from __future__ import annotations

import torch

_CHANNELS_LAST = {4: (torch.channels_last,), 5: (torch.channels_last_3d,)}


def slice_like(tensor: torch.Tensor, cuts: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """``tensor`` with the indices ``keep`` kept along each ``dim``, in its memory format.

    A tensor contiguous in the default layout (also one that is both, through dimensions
    of size 1) is returned contiguous; a 4-D or 5-D channels-last one, channels-last.
    """
    out = tensor
    for dim, keep in cuts:
        out = out.index_select(dim, keep.to(tensor.device))
    if tensor.is_contiguous():
        return out
    for memory_format in _CHANNELS_LAST.get(tensor.ndim, ()):
        if tensor.is_contiguous(memory_format=memory_format):
            return out.contiguous(memory_format=memory_format)
    return out
