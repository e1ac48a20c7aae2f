"""The DemP algorithm: DemonPruner and its config, regularizer, noise, summary, prune_dead."""

from .config import DemPConfig
from .prune import prune_dead
from .pruner import DemonPruner
from .summary import PrunerSummary

__all__ = ["DemPConfig", "DemonPruner", "PrunerSummary", "prune_dead"]
