"""Channel groups that are split into equal parts on their way (``chunk``, ``split``).

A layer whose output is split along the channels into ``n`` equal parts of ``C`` (a CSP
block's ``x.chunk(2, dim=1)``, a gated unit's ``a, b = x.chunk(2, -1)``) sends each part to
other layers: its channel ``i * C + u`` reaches only the consumers of part ``i``. A cut
must keep the parts equal, or the model's split would put channels into the wrong part.
So the group's unit ``u`` is the ``n`` channels ``u, C + u, ..., (n - 1) * C + u``, one
per part: removed together, and dead when dead at every consumer of every part.

Splits into unequal parts, splits that Torch-Pruning cannot place on the group's channels,
and slices with fixed bounds (``x[:, :64]``) leave a group that cannot be cut so; it is
refused with the reason. A split by a size written into the model's code
(``x.split(64, dim=1)``) looks the same as a ``chunk`` when traced; the trial cut
(:mod:`demp.structure.verify`) tells them apart and refuses the group when the model's split
does not follow the cut.
"""

from __future__ import annotations

from typing import Any

import torch

_UNSIGNED = 2**64  # autograd saves a negative split dim as an unsigned integer


def align_splits(graph: Any) -> None:
    """Give Torch-Pruning's split nodes their true part sizes and each consumer its part.

    Torch-Pruning infers a split's sizes from the layers around it (wrong when a part is
    concatenated with other channels later, as in a CSP block) and pairs its outputs with
    the parts in the order it met them, one output per part (wrong when a part feeds a
    layer and a residual sum). Autograd recorded both: the sizes on the split's backward
    node, and which part each consumer took (the output number of its edge). Each edge of
    the split gets the index mapping of its part, and Torch-Pruning is told to keep it. A
    split with a consumer of several parts (or none recorded) is left as it was; its groups
    are then refused or caught by the trial cut. Concatenations forget the sizes they
    inferred from the old ones.
    """
    from torch_pruning.dependency.index_mapping import _SplitIndexMapping

    nodes = list(graph.module2node.values())
    aligned = False
    for node in nodes:
        if type(node.module).__name__ != "_SplitOp" or not node.enable_index_mapping:
            continue
        sizes = _part_sizes(node.grad_fn)
        parts = _part_numbers(node)
        if sizes is None or parts is None or max(parts.values()) >= len(sizes):
            continue
        offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        node.outputs.sort(key=lambda out: parts[out])
        node.module.split_sizes = [sizes[parts[out]] for out in node.outputs]  # per output
        node.module.offsets = offsets
        for dep in node.dependencies:
            if dep.target in parts:
                part = parts[dep.target]
                dep.index_mapping[0] = _SplitIndexMapping(offsets[part : part + 2], False)
        for out, part in parts.items():
            for dep in out.dependencies:
                if dep.target is node:
                    dep.index_mapping[0] = _SplitIndexMapping(offsets[part : part + 2], True)
        node.enable_index_mapping = False  # Torch-Pruning's own update would undo this
        aligned = True
    for node in nodes if aligned else ():
        if type(node.module).__name__ == "_ConcatOp":
            node.module.concat_sizes = None
            node.module.offsets = None


def _part_sizes(fn: Any) -> list[int] | None:
    """The part sizes autograd saved for a split, or None."""
    sizes = getattr(fn, "_saved_self_sym_sizes", None)
    dim = getattr(fn, "_saved_dim", None)
    if sizes is None or dim is None:
        return None
    dim = dim - _UNSIGNED if dim >= _UNSIGNED // 2 else dim
    total = int(sizes[dim % len(sizes)])
    if hasattr(fn, "_saved_split_sizes"):
        return [int(s) for s in fn._saved_split_sizes]
    size = int(getattr(fn, "_saved_split_size", 0))
    if size <= 0:
        return None
    return [size] * (total // size) + ([total % size] if total % size else [])


def _part_numbers(node: Any) -> dict[Any, int] | None:
    """Which part of a split each of its output nodes takes; None unless one part each."""
    numbers = {}
    for out in node.outputs:
        taken = {nr for fn, nr in getattr(out.grad_fn, "next_functions", ()) if fn is node.grad_fn}
        if len(taken) != 1:
            return None
        numbers[out] = taken.pop()
    return numbers or None


def split_parts(item: Any) -> list[int] | None:
    """Return the part sizes of a traced split of the group's channels, or None.

    None when the split's input holds other channels besides the group's (a concatenation
    before it), or when autograd did not record the split's sizes.

    Args:
        item: Torch-Pruning's group item on the split node (its ``idxs`` and ``root_idxs``).
    """
    fn = item.dep.target.grad_fn
    parts = _part_sizes(fn)
    if parts is None or list(item.idxs) != list(item.root_idxs):
        return None
    return parts if sum(parts) == len(item.root_idxs) else None


def split_period(splits: list[list[int] | None], width: int, name: str) -> int | str:
    """Return the part size ``C`` of a group whose channels are split, or why it cannot be cut.

    Args:
        splits: The part sizes of every split in the group (None: not followed).
        width: The group's channel count before pairing.
        name: The group's name, for the reason.
    """
    if not splits:
        return (
            f"only part of the channels of {name} reach some layers: a slice with fixed "
            "bounds on the way (x[:, a:b]), which a cut would misalign"
        )
    if any(parts is None for parts in splits):
        return (
            f"the channels of {name} are split where demp cannot follow (not along these "
            "channels alone, e.g. after a concatenation)"
        )
    sizes = {tuple(parts) for parts in splits if parts is not None}
    if any(len(set(parts)) != 1 for parts in sizes):
        return (
            f"the channels of {name} are split into unequal parts {sorted(sizes)[0]}: a cut "
            "cannot keep the sizes the model's code expects"
        )
    periods = {parts[0] for parts in sizes}
    period = periods.pop()
    if periods or width % period:
        return f"the channels of {name} are split into parts of different sizes"
    return period


def index_table(idxs: list[int], roots: list[int], period: int) -> torch.Tensor | None:
    """Build a slot's ``(period, k)`` index table, or return None if the mapping is inconsistent.

    Group channel ``r`` belongs to unit ``r % period`` (``period`` is the group's width when
    nothing is split). Every unit needs the same number ``k`` of module indices, and no
    index may serve two units.
    """
    if len(idxs) != len(roots) or not idxs:
        return None
    per_unit: dict[int, set[int]] = {}
    for idx, root in zip(idxs, roots, strict=True):
        per_unit.setdefault(root % period, set()).add(idx)
    if sorted(per_unit) != list(range(period)):
        return None
    if len({len(v) for v in per_unit.values()}) != 1:
        return None
    if sum(len(v) for v in per_unit.values()) != len(set(idxs)):
        return None  # an index in two units
    return torch.tensor([sorted(per_unit[u]) for u in range(period)], dtype=torch.long)
