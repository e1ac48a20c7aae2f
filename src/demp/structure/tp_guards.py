"""Guards around Torch-Pruning's tracing for model code it cannot follow.

Torch-Pruning builds the dependency graph that :mod:`demp.structure.trace` turns into
channel groups. On some models its bookkeeping fails or never ends; these guards turn
each known case into a clear refusal (of the model, or of one group) before it happens:

- a failure inside Torch-Pruning (e.g. ShuffleNet's channel shuffle) becomes a
  :class:`~demp.errors.DempError` naming it, the model's own errors pass through;
- a transformers decoder is traced with ``use_cache=False`` (the key/value cache's
  ``torch.cat`` along a negative dim breaks Torch-Pruning's concat bookkeeping);
- a group that would be refused (an op that mixes channels on its way) is refused before
  Torch-Pruning searches it: on grouped-query attention that search does not end.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..batches import Batch
from ..errors import DempError
from ..ops.rules import LayerRules


def guarded_build(build: Callable[[], Any], model: nn.Module) -> Any:
    """Run ``build`` (Torch-Pruning's graph building); its own failures become DempErrors."""
    try:
        return build()
    except Exception as err:
        frame = _raised_in(err)
        if not frame.startswith("torch_pruning"):
            raise
        raise DempError(
            f"Torch-Pruning could not trace {type(model).__name__} "
            f"({type(err).__name__} in {frame}: {err}); nothing was changed. Known cause: "
            "a channel shuffle (view/transpose/view across the channels, as in ShuffleNet)"
        ) from err


def _raised_in(err: BaseException) -> str:
    """The dotted module (from its package root) of the frame that raised ``err``."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    parts = Path(tb.tb_frame.f_code.co_filename).with_suffix("").parts
    for root in ("torch_pruning", "torch", "demp"):
        if root in parts:
            start = len(parts) - 1 - parts[::-1].index(root)
            return ".".join(parts[start:])
    return parts[-1] if parts else "?"


def without_cache(model: nn.Module, example: Batch) -> Batch:
    """Keyword inputs with ``use_cache=False`` added where the model's forward takes it."""
    if not isinstance(example, Mapping) or "use_cache" in example:
        return example
    try:
        accepted = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return example
    return {**example, "use_cache": False} if "use_cache" in accepted else example


# ops that pass on a range of the channels (concatenation, split, slice): the walk stops
# there, since their other inputs / outputs hold other groups' channels
_CHANNEL_RANGE_OPS = frozenset({"_ConcatOp", "_SplitOp", "_SliceOp", "_UnbindOp"})


def early_reason(
    graph: Any,
    module: nn.Module,
    rules: LayerRules,
    node_reason: Callable[[Any], tuple[int, str] | None],
) -> str | None:
    """Say why ``module``'s output group would be refused, before Torch-Pruning searches it.

    Walks the graph from the module's output through every node that is not a conv/linear
    layer (those bound a group) or a channel-range op, in both directions.
    ``node_reason`` gives each node's ``(rank, reason)`` or None; the reason of the lowest
    rank is returned (a layer's own reason before an operation's). A group the search
    would refuse is not searched at all: on some attention blocks (grouped-query heads
    meeting the rotary embedding's slice / cat) that search does not end.
    """
    start = graph.module2node.get(module)
    if start is None:
        return None
    stack, seen = list(start.outputs), {start}
    found: list[tuple[int, str]] = []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node.module, nn.Module) and rules.kind_of(node.module) == "root":
            continue
        if type(node.module).__name__ in _CHANNEL_RANGE_OPS:
            continue  # only part of its channels are the group's: Torch-Pruning's call
        ranked = node_reason(node)
        if ranked:
            found.append(ranked)
        stack.extend(node.inputs)
        stack.extend(node.outputs)
    return min(found)[1] if found else None
