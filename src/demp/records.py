"""What demp remembers about a model it has cut: original shapes and removal history.

Kept in a weak registry keyed by the model object, never as attributes on the user's
modules. Checkpoints store it so that a shrunk model reloads into a freshly built one.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class ModelRecord:
    """Original ``state_dict`` shapes and the list of removal events of one model."""

    original_shapes: dict[str, list[int]]
    history: list[dict[str, Any]] = field(default_factory=list)


_RECORDS: weakref.WeakKeyDictionary[nn.Module, ModelRecord] = weakref.WeakKeyDictionary()


def current_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Return ``state_dict`` key -> shape for a model."""
    return {k: list(v.shape) for k, v in model.state_dict().items() if hasattr(v, "shape")}


def record_of(model: nn.Module) -> ModelRecord:
    """Return the model's record, creating one (current shapes = original) if needed."""
    record = _RECORDS.get(model)
    if record is None:
        record = ModelRecord(original_shapes=current_shapes(model))
        _RECORDS[model] = record
    return record


def set_record(model: nn.Module, record: ModelRecord) -> None:
    """Attach a record to a model (used when loading a checkpoint)."""
    _RECORDS[model] = record


def removal_history(model: nn.Module) -> list[dict[str, Any]]:
    """Return the removal events applied to ``model`` so far (a copy).

    Each event maps group name -> removed unit indices (numbered as at that event).
    """
    record = _RECORDS.get(model)
    return [dict(e) for e in record.history] if record else []
