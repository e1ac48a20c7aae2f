"""Exceptions raised by demp.

Every error names what is wrong (module path, shape, option) so that a user can act on it.
All derive from :class:`DempError`, itself a ``ValueError``.
"""

from __future__ import annotations


class DempError(ValueError):
    """Base class of every error demp raises on bad input."""


class UnsupportedGroupError(DempError):
    """A channel group that cannot be cut exactly was asked to be cut."""


class UnsupportedOptimizerError(DempError):
    """An optimizer whose state demp does not know how to slice."""


class StaleStructureError(DempError):
    """A decision or structure no longer matches the model's current shapes."""


class CheckpointError(DempError):
    """A checkpoint that is missing, corrupted, or does not match the given model."""


class ProbeError(DempError):
    """A probe set that is empty or does not fit the model."""
