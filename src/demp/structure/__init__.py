"""Channel groups: which slices of which layers move together, and which can be cut exactly.

- :mod:`.groups`: the plain-data :class:`Structure` of :class:`ChannelGroup` / :class:`Slot`.
- :mod:`.trace`: Torch-Pruning's dependency graph turned into a structure.
- :mod:`.verify`: trial cuts that skip the groups whose removal would not be exact.
- :mod:`.build`: the three together, with one :class:`StructureOptions`.
- :mod:`.residuals`: :func:`decouple_residuals`, per-block residual units
  (:mod:`.residual_graph` reads each block's forward with torch.fx).
- :mod:`.costs`: what removing units saves (parameters, units, FLOPs), exactly.
"""

from .build import StructureOptions, build_checked_structure
from .costs import METRICS, CostModel, Metric
from .groups import ChannelGroup, Slot, Structure
from .residuals import ResidualReport, decouple_residuals
from .trace import build_structure

__all__ = [
    "METRICS", "ChannelGroup", "CostModel", "Metric", "ResidualReport", "Slot", "Structure",
    "StructureOptions", "build_checked_structure", "build_structure", "decouple_residuals",
]  # fmt: skip
