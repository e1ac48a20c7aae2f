"""``dense``: train without pruning (the reference every method is compared with)."""

from __future__ import annotations

from .base import Method, MethodContext
from .registry import register_method


@register_method("dense", summary="no pruning: the dense reference")
def dense(options: None, ctx: MethodContext) -> Method:
    """A method whose hooks do nothing."""
    return Method()
