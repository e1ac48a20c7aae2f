"""Unstructured sparsity: weight masks, how many weights each layer keeps, and schedules.

The unstructured baselines (``magnitude``, ``snip``, ``set``, ``rigl``: :mod:`demp.methods`)
hold some conv/linear weights at exactly zero instead of removing units. Nothing here
changes a layer's shape, so dense hardware runs the masked model at full cost; the
theoretical sparse FLOPs are reported apart (:meth:`WeightMasks.sparse_flops_saved`).
"""

from .distribution import DISTRIBUTIONS, MaskedLayer, layer_counts, maskable_layers
from .masks import WeightMasks
from .schedules import cosine_fraction, cubic_sparsity

__all__ = [
    "DISTRIBUTIONS", "MaskedLayer", "WeightMasks", "cosine_fraction", "cubic_sparsity",
    "layer_counts", "maskable_layers",
]  # fmt: skip
