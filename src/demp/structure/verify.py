"""Trial cuts: check once per group that removing a unit is exact before trusting it.

For one unit ``j`` of each group, the model's output with ``j`` zeroed at the inputs of
every consumer (what a dead unit looks like) is compared with its output after ``j`` is
actually cut. If the cut crashes, changes the output's shape, or changes its values, the
group's graph holds something demp does not follow (a buffer broadcast over channels, a
reduction over channels, a reshape into heads...) and the group is skipped with that
reason. The model is restored exactly after each trial (same Parameter objects and data).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..batches import Batch, call_model, eval_mode, output_tensors
from ..ops.rules import LayerRules
from ..ops.slicing import apply_cuts
from .groups import ChannelGroup, Structure, keep_indices, module_cuts


def verify_groups(model: nn.Module, structure: Structure, example: Batch, exact: bool) -> None:
    """Trial-cut one unit of every group; move the groups that fail to ``structure.skipped``.

    All groups are tried together first (two forward passes); only if that fails are they
    split in halves until the failing ones are found.

    Args:
        model: The model (left exactly as it was).
        structure: Its structure; failing groups are moved to ``skipped`` in place.
        example: A small input batch on the model's device.
        exact: Compare output values (False when inexact norms were allowed: then groups
            holding a LayerNorm/GroupNorm are only checked for crashes and shape changes).
    """
    for name in [n for n, g in structure.groups.items() if g.parts > 1 and g.width < 2]:
        del structure.groups[name]
        structure.skipped[name] = (
            "its channels are split into equal parts of one "
            "channel: too few to check that the model's split follows a cut"
        )
    with eval_mode(model), torch.no_grad():
        names = [n for n, g in structure.groups.items() if g.width >= 2]
        loose = {
            n
            for n in names
            if not exact and _has_inexact_norm(model, structure.groups[n], structure.rules)
        }
        _bisect(model, structure, [n for n in names if n not in loose], example, True)
        _bisect(model, structure, sorted(loose), example, False)


def _bisect(
    model: nn.Module, structure: Structure, names: list[str], example: Batch, compare: bool
) -> None:
    if not names:
        return
    reason = _trial(model, structure, names, example, compare)
    if reason is None:
        return
    if len(names) == 1:
        group = structure.groups.pop(names[0])
        structure.skipped[names[0]] = reason + (_SPLIT_NOTE if group.parts > 1 else "")
        return
    half = len(names) // 2
    _bisect(model, structure, names[:half], example, compare)
    _bisect(model, structure, names[half:], example, compare)


_SPLIT_NOTE = (
    "; its channels are split into equal parts on the way, and the model's split does not "
    "follow a cut (a split by sizes fixed in its code, e.g. x.split(64, dim=1))"
)


def _has_inexact_norm(model: nn.Module, group: ChannelGroup, rules: LayerRules) -> bool:
    return any(
        rules.require(model.get_submodule(s.path)).inexact for s in group.slots if s.role == "norm"
    )


def _trial(
    model: nn.Module, structure: Structure, names: list[str], example: Batch, compare: bool
) -> str | None:
    """Cut the middle unit of each named group at once; say what went wrong, if anything."""
    units = {n: torch.tensor([structure.groups[n].width // 2]) for n in names}
    rules = structure.rules
    with _zeroed(model, [structure.groups[n] for n in names], units, rules):
        reference = output_tensors(call_model(model, example))
    cuts = {
        key: keep_indices(gone, structure.sizes[key])
        for key, gone in module_cuts(structure, units).items()
    }
    with _restored(model, {path for path, _ in cuts}, rules):
        try:
            apply_cuts(model, cuts, trial=True, rules=rules)
            result = output_tensors(call_model(model, example))
        except Exception as err:  # noqa: BLE001 - any failure means "cannot cut"
            return f"a trial cut of one unit made the model fail ({type(err).__name__}: {err})"
    if [t.shape for t in reference] != [t.shape for t in result]:
        return "a trial cut of one unit changed the shape of the model output"
    if compare and not all(_close(a, b) for a, b in zip(reference, result, strict=True)):
        return "a trial cut of one unit changed the model output (channels are mixed somewhere)"
    return None


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not a.is_floating_point():
        return bool(torch.equal(a, b))
    scale = float(a.abs().max()) if a.numel() else 0.0
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * max(scale, 1.0)))


@contextmanager
def _zeroed(
    model: nn.Module,
    groups: list[ChannelGroup],
    units: dict[str, torch.Tensor],
    rules: LayerRules,
) -> Iterator[None]:
    """Zero the given units at the input of every consumer, with forward pre-hooks."""
    per_module: dict[str, list[torch.Tensor]] = {}
    for group in groups:
        for slot in group.consumers:
            per_module.setdefault(slot.path, []).append(slot.index[units[group.name]].reshape(-1))
    handles = []
    for path, parts in per_module.items():
        module = model.get_submodule(path)
        dim = rules.require(module).feature_dim
        index = torch.cat(parts)

        def hook(_m: nn.Module, args: tuple, dim: int = dim, index: torch.Tensor = index) -> tuple:
            x = args[0]
            return (x.index_fill(dim, index.to(x.device), 0.0), *args[1:])

        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _restored(model: nn.Module, paths: set[str], rules: LayerRules) -> Iterator[None]:
    """Put back every tensor and size attribute (any row's, see the rules) of the given modules."""
    names = rules.size_attributes()
    saved = []
    for path in paths:
        module = model.get_submodule(path)
        params = {n: (p, p.data, p.grad) for n, p in module._parameters.items() if p is not None}
        buffers = dict(module._buffers)
        attrs = {a: getattr(module, a) for a in names if hasattr(module, a)}
        saved.append((module, params, buffers, attrs))
    try:
        yield
    finally:
        for module, params, buffers, attrs in saved:
            for p, data, grad in params.values():
                p.data = data  # the shapes autograd cached are the original ones again
                p.grad = grad
            module._buffers.update(buffers)
            for attr, value in attrs.items():
                setattr(module, attr, value)
