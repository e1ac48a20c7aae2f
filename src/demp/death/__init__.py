"""Deciding which units are dead: activation statistics and criteria. Never mutates a model."""

from .criteria import Criterion, DeadUnits, GroupDeath, find_dead
from .monitor import ActivationMonitor

__all__ = ["ActivationMonitor", "Criterion", "DeadUnits", "GroupDeath", "find_dead"]
