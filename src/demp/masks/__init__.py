"""Unstructured sparsity: weight masks, how many weights each layer keeps, and schedules.

The unstructured baselines (``magnitude``, ``snip``, ``set``, ``rigl``: :mod:`demp.methods`)
hold some conv/linear weights at exactly zero instead of removing units. Nothing here
changes a layer's shape, so dense hardware runs the masked model at full cost; the
theoretical sparse FLOPs are reported apart (:meth:`WeightMasks.flops_saved`).
"""

from .distribution import DISTRIBUTIONS, MaskedLayer, at_least, layer_counts, maskable_layers
from .masks import WeightMasks, zero_entries
from .schedules import cosine_fraction, cubic_sparsity

__all__ = [
    "DISTRIBUTIONS", "MaskedLayer", "WeightMasks", "at_least", "cosine_fraction", "cubic_sparsity",
    "layer_counts", "maskable_layers", "zero_entries",
]  # fmt: skip
