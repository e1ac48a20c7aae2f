"""demp: Demon Pruning for PyTorch.

Find the units (channels, neurons) that are dead on a probe set and remove them exactly
from a live model and its optimizer (paper: "Maxwell's Demon at Work", §3).

Example:
    >>> import demp
    >>> dead = demp.find_dead(model, probe)
    >>> report = demp.remove_units(model, dead, optimizer=opt)

The library is layered; each layer imports only from the ones above it in this list:
``errors``/``schedules``/``batches``/``accounting`` -> ``ops`` (layer rules, slicing,
optimizer state) -> ``structure`` (trace, groups, trial cuts) -> ``death`` (monitor,
criteria) -> ``surgery`` -> ``algorithm`` (DemonPruner) -> ``tracking``, ``checkpoint``,
``methods``, ``integrations``. ``demp.experiments`` (the ``demp`` command) sits on top.
"""

from .accounting import count_trainable, forward_flops
from .algorithm import DemonPruner, DemPConfig, PrunerSummary, prune_dead
from .checkpoint import load_checkpoint, removal_history, save_checkpoint
from .death import ActivationMonitor, DeadUnits, GroupDeath, find_dead
from .errors import (
    CheckpointError,
    DempError,
    ProbeError,
    StaleStructureError,
    UnsupportedGroupError,
    UnsupportedOptimizerError,
)
from .ops.select import ChannelSelect
from .schedules import Constant, CosineDecay, OneCycle, Warmup
from .structure import (
    ChannelGroup,
    ResidualReport,
    Slot,
    Structure,
    StructureOptions,
    build_checked_structure,
    build_structure,
    decouple_residuals,
)
from .surgery import Decision, GroupCut, SurgeryReport, remove_units
from .tracking import DeathRecord, DeathTracker, overlap_ratio, revivals

__version__ = "0.1.0"

__all__ = [
    "ActivationMonitor",
    "ChannelGroup",
    "ChannelSelect",
    "CheckpointError",
    "Constant",
    "CosineDecay",
    "DeadUnits",
    "DeathRecord",
    "DeathTracker",
    "Decision",
    "DemPConfig",
    "DempError",
    "DemonPruner",
    "GroupCut",
    "GroupDeath",
    "OneCycle",
    "ProbeError",
    "PrunerSummary",
    "ResidualReport",
    "Slot",
    "StaleStructureError",
    "Structure",
    "StructureOptions",
    "SurgeryReport",
    "UnsupportedGroupError",
    "UnsupportedOptimizerError",
    "Warmup",
    "build_checked_structure",
    "build_structure",
    "count_trainable",
    "decouple_residuals",
    "find_dead",
    "forward_flops",
    "load_checkpoint",
    "overlap_ratio",
    "prune_dead",
    "removal_history",
    "remove_units",
    "revivals",
    "save_checkpoint",
]
