"""demp: Demon Pruning for PyTorch.

Find the units (channels, neurons) that are dead on a probe set and remove them exactly
from a live model and its optimizer (paper: "Maxwell's Demon at Work", §3).

Example:
    >>> import demp
    >>> dead = demp.find_dead(model, probe)
    >>> report = demp.remove_units(model, dead, optimizer=opt)

"""

from .accounting import PrunerSummary, forward_flops
from .checkpoint import load_checkpoint, save_checkpoint
from .config import DemPConfig
from .criteria import DeadUnits, GroupDeath, find_dead
from .errors import (
    CheckpointError,
    DempError,
    ProbeError,
    StaleStructureError,
    UnsupportedGroupError,
    UnsupportedOptimizerError,
)
from .monitor import ActivationMonitor
from .pruner import DemonPruner
from .records import removal_history
from .schedules import Constant, CosineDecay, OneCycle, Warmup
from .structure import ChannelGroup, Slot, Structure
from .surgery import GroupCut, SurgeryReport, count_trainable, prune_dead, remove_units
from .tracing import build_structure

__version__ = "0.1.0"

__all__ = [
    "ActivationMonitor",
    "ChannelGroup",
    "CheckpointError",
    "Constant",
    "CosineDecay",
    "DeadUnits",
    "DemPConfig",
    "DempError",
    "DemonPruner",
    "GroupCut",
    "GroupDeath",
    "OneCycle",
    "ProbeError",
    "PrunerSummary",
    "Slot",
    "StaleStructureError",
    "Structure",
    "SurgeryReport",
    "UnsupportedGroupError",
    "UnsupportedOptimizerError",
    "Warmup",
    "build_structure",
    "count_trainable",
    "find_dead",
    "forward_flops",
    "load_checkpoint",
    "prune_dead",
    "removal_history",
    "remove_units",
    "save_checkpoint",
]
