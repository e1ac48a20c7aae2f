"""Per-block residual units: give each identity shortcut a cuttable :class:`ChannelSelect`.

A dependency graph couples a residual channel across a whole stage: ``y = branch(x) + x``
makes channel ``c`` of ``x`` and of ``y`` one group, so it can go only when it is dead
after every add of the stage. :func:`decouple_residuals` rewrites each identity shortcut
as ``y = branch(x) + select(x)`` with ``select`` a fixed 0/1 selection (the identity at
first): each block's post-add channels become a group of their own, and a unit dead after
one block's add is cut there exactly (paper: "Maxwell's Demon at Work", §3, where each
residual block's post-add units are units of their own).

Where the shortcut is an ``nn.Identity`` (or an empty ``nn.Sequential``) of the block, that
module is replaced in place; otherwise (``out += x``, torchvision style) the block is
replaced by a ``torch.fx.GraphModule`` of its own forward with the selection inserted,
holding the same submodules. The model object and every Parameter keep their identity.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from ..batches import Batch, call_model, device_dtype, eval_mode, output_tensors, to_device
from ..errors import DempError
from ..ops.rules import DEFAULT_RULES
from ..ops.select import ChannelSelect
from .residual_graph import (
    BlockView,
    Site,
    Traced,
    add_nodes,
    classify,
    clone,
    replay,
    trace_block,
)


@dataclass
class ResidualReport:
    """What :func:`decouple_residuals` found, add by add (named ``"block path:node"``).

    Attributes:
        decoupled: Add -> path of the :class:`ChannelSelect` now on its identity shortcut.
        already: Adds whose shortcut already is a ``ChannelSelect`` (an earlier call).
        projections: Adds whose operands are both computed by layers demp cuts (a
            projection shortcut): their output channels are a group of their own already.
        coupled: Add (or block) -> why it was left as it was (coupled across the add).

    """

    decoupled: dict[str, str] = field(default_factory=dict)
    already: list[str] = field(default_factory=list)
    projections: list[str] = field(default_factory=list)
    coupled: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"decoupled {len(self.decoupled)} residual adds ({len(self.already)} already, "
            f"{len(self.projections)} projections, {len(self.coupled)} left coupled)"
        )


@dataclass
class _Call:
    """A module's first call in the recorded forward, and how often it ran."""

    args: tuple
    kwargs: dict[str, Any]
    after: Any = None  # (args, kwargs, output) once it returned: inputs changed in place too
    count: int = 1


@dataclass
class _Plan:
    path: str
    module: nn.Module
    graph: fx.Graph
    sites: list[Site]
    labels: dict[fx.Node, str]
    training: bool = True  # the block's mode before decoupling (new modules take it)


def decouple_residuals(model: nn.Module, example_inputs: Batch) -> ResidualReport:
    """Give every identity residual add of ``model`` its own post-add units, in place.

    Each ``y = branch(x) + x`` found by tracing the model's blocks with torch.fx becomes
    ``y = branch(x) + ChannelSelect(x)`` with the identity selection: the model computes
    exactly the same function, and its channel groups (:func:`demp.build_checked_structure`)
    are per block. Adds it does not understand are left as they were and listed with the
    reason; calling it again skips the adds already decoupled.

    Example:
        >>> report = demp.decouple_residuals(model, torch.randn(2, 3, 32, 32))
        >>> dead = demp.find_dead(model, probe)  # each block's post-add units on their own

    Args:
        model: The model (stays the same object; every Parameter keeps its identity, so an
            optimizer built before keeps working).
        example_inputs: One small input batch (tensor, tuple, or dict of kwargs); it is
            moved to the model's device and dtype and run in eval mode (twice or more).

    Returns:
        A :class:`ResidualReport`.

    Raises:
        DempError: The model has no parameters, or the rewritten model computed something
            else (then nothing was changed).

    """
    device, dtype = device_dtype(model)
    example = to_device(example_inputs, device, dtype)
    report = ResidualReport()
    modes = {m: m.training for m in model.modules()}  # new modules take their block's
    with eval_mode(model), torch.no_grad():
        blocks = {p: m for p, m in model.named_modules() if _own_code(m)}
        calls, reference = _record(model, list(blocks.values()), example)
        shared = _shared(model)
        plans = [_plan(p, m, calls.get(m), shared, report) for p, m in blocks.items()]
        undo: list[tuple[nn.Module, str, nn.Module]] = []
        try:
            for plan in filter(None, plans):
                plan.training = modes[plan.module]
                _apply_checked(model, plan, calls[plan.module], report, undo)
            if not _same(call_model(model, example), reference):
                raise DempError("decoupling changed the model's output; the model is unchanged")
        except BaseException:
            _undo(undo)
            raise
    return report


def _own_code(module: nn.Module) -> bool:
    """A module whose forward may hold residual adds: not a torch.nn layer or container."""
    if DEFAULT_RULES.rule_for(module) is not None:
        return False
    return not type(module).__module__.startswith("torch.nn.")


def _shared(model: nn.Module) -> set[int]:
    seen: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        seen[id(module)] = seen.get(id(module), 0) + 1
    return {k for k, n in seen.items() if n > 1}


def _record(
    model: nn.Module, blocks: list[nn.Module], example: Batch
) -> tuple[dict[nn.Module, _Call], Any]:
    """Run the model once; note each block's first inputs and output, and its call count."""
    calls: dict[nn.Module, _Call] = {}

    def before(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if module in calls:
            calls[module].count += 1
        else:
            calls[module] = _Call(clone(args), clone(kwargs))

    def after(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        if calls[module].count == 1 and calls[module].after is None:
            calls[module].after = clone((args, kwargs, output))

    handles = [m.register_forward_pre_hook(before, with_kwargs=True) for m in blocks]
    handles += [m.register_forward_hook(after, with_kwargs=True) for m in blocks]
    try:
        reference = clone(call_model(model, example))
    finally:
        for handle in handles:
            handle.remove()
    return calls, reference


def _plan(
    path: str, module: nn.Module, call: _Call | None, shared: set[int], report: ResidualReport
) -> _Plan | None:
    """Trace one block and sort its adds into the report; return what to rewrite, if any."""
    if call is None:
        return None  # never called: nothing of it reaches the output
    label = path or "<model>"
    try:
        traced = trace_block(module)
    except Exception as err:  # noqa: BLE001 - any tracing failure means "cannot look inside"
        report.coupled[label] = (
            f"torch.fx cannot trace {type(module).__name__}.forward "
            f"({type(err).__name__}: {_first_line(err)}): any residual add in it stays coupled"
        )
        return None
    graph = traced.graph
    adds = add_nodes(graph)
    if not adds:
        return None
    labels = {add: f"{label}:{add.name}" for add in adds}
    try:
        values, produced, _keep = replay(module, graph, call.args, call.kwargs)
    except Exception as err:  # noqa: BLE001
        for add in adds:
            report.coupled[labels[add]] = f"the block could not be replayed ({_first_line(err)})"
        return None
    view = BlockView(module, values, produced, shared)
    sites = []
    for add in adds:
        verdict = classify(add, view)
        if isinstance(verdict, Site):
            reason = _block_reason(path, module, call, verdict, traced, shared)
            if reason is None:
                sites.append(verdict)
            else:
                report.coupled[labels[add]] = reason
        elif verdict == "already":
            report.already.append(labels[add])
        elif verdict == "projection":
            report.projections.append(labels[add])
        elif verdict is not None:
            report.coupled[labels[add]] = verdict
    return _Plan(path, module, graph, sites, labels) if sites else None


def _block_reason(
    path: str, module: nn.Module, call: _Call, site: Site, traced: Traced, shared: set[int]
) -> str | None:
    """Why this block cannot take a selection on ``site``'s shortcut, or None."""
    if call.count > 1:
        return f"the block runs {call.count} times per forward"
    if site.swap is not None:
        return None
    if not path:
        return (
            "the add is in the model's own forward, which is never rewritten: compute its "
            "shortcut with an nn.Identity module, or move the add into a block"
        )
    if id(module) in shared:
        return "the block sits at several places of the model"
    if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks:
        return "the block has hooks, which a rewritten forward would lose"
    if traced.mode_dependent:
        return "the block's forward depends on the training mode (a rewrite would freeze one)"
    if traced.constants or module._non_persistent_buffers_set:
        return "the block's forward uses tensor constants or non-persistent buffers"
    nodes = site.add.graph.nodes
    used = {n.target.split(".")[0] for n in nodes if n.op in ("call_module", "get_attr")}
    unused = sorted(set(module._modules) | set(module._parameters) | set(module._buffers))
    unused = [k for k in unused if k not in used and getattr(module, k) is not None]
    if unused:
        return f"the block holds {unused} that its forward never uses (a rewrite would lose them)"
    return None


def _apply_checked(
    model: nn.Module,
    plan: _Plan,
    call: _Call,
    report: ResidualReport,
    undo: list[tuple[nn.Module, str, nn.Module]],
) -> None:
    """Rewrite one block; keep it only if it reproduces its recorded output."""
    mark = len(undo)
    new, where = _rewrite(model, plan, undo)
    args, kwargs = clone(call.args), clone(call.kwargs)
    output = new(*args, **kwargs)
    if _same((args, kwargs, output), call.after):
        for site in plan.sites:
            report.decoupled[plan.labels[site.add]] = where[site.add]
        return
    _undo(undo[mark:])
    del undo[mark:]
    for site in plan.sites:
        report.coupled[plan.labels[site.add]] = (
            "the rewritten block computed something else (an in-place add changed its input?)"
        )


def _rewrite(
    model: nn.Module, plan: _Plan, undo: list[tuple[nn.Module, str, nn.Module]]
) -> tuple[nn.Module, dict[fx.Node, str]]:
    """Swap identity modules for selections, or rewrite the block's forward; note the undo."""
    prefix = f"{plan.path}." if plan.path else ""
    where: dict[fx.Node, str] = {}
    inserted: dict[str, ChannelSelect] = {}
    for site in plan.sites:
        select = ChannelSelect.identity(site.channels, dtype=site.dtype, device=site.device)
        select.training = plan.training
        if site.swap is not None:
            owner_path, _, name = site.swap.rpartition(".")
            owner = plan.module.get_submodule(owner_path)
            undo.append((owner, name, owner._modules[name]))
            owner._modules[name] = select
            where[site.add] = prefix + site.swap
        else:
            name = _free_name(plan.module, "identity_select", inserted)
            with plan.graph.inserting_before(site.add):
                node = plan.graph.call_module(name, (site.shortcut,))
            site.add.replace_input_with(site.shortcut, node)
            inserted[name] = select
            where[site.add] = prefix + name
    if not inserted:
        return plan.module, where
    new = _graph_module(plan.module, plan.graph, inserted)
    new.training = plan.training
    parent_path, _, name = plan.path.rpartition(".")
    parent = model.get_submodule(parent_path)
    undo.append((parent, name, plan.module))
    parent._modules[name] = new
    return new, where


def _graph_module(
    module: nn.Module, graph: fx.Graph, inserted: dict[str, ChannelSelect]
) -> fx.GraphModule:
    """A GraphModule running ``graph`` on ``module``'s own children, params and buffers."""
    children = OrderedDict(module._modules)
    children.update(inserted)
    root = nn.Module()
    root._modules.update(children)
    root._parameters.update(module._parameters)
    root._buffers.update(module._buffers)
    new = fx.GraphModule(root, graph, class_name=type(module).__name__)
    for own, theirs in (
        (new._modules, children),
        (new._parameters, module._parameters),
        (new._buffers, module._buffers),
    ):
        own.clear()
        own.update(theirs)  # the block's own containers, in its order, not fx's copies
    for key, value in vars(module).items():
        if not key.startswith("_") and not hasattr(new, key):
            setattr(new, key, value)  # plain settings of the block (stride...)
    return new


def _free_name(module: nn.Module, base: str, taken: dict[str, Any]) -> str:
    name, i = base, 1
    while hasattr(module, name) or name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def _undo(undo: list[tuple[nn.Module, str, nn.Module]]) -> None:
    for owner, name, old in reversed(undo):
        owner._modules[name] = old


def _same(a: Any, b: Any) -> bool:
    """Equal outputs, up to a few units in the last place (kernels may pick other paths)."""
    xs, ys = output_tensors(a), output_tensors(b)
    if len(xs) != len(ys):
        return False
    for x, y in zip(xs, ys, strict=True):
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if not x.is_floating_point():
            if not torch.equal(x, y):
                return False
            continue
        eps = torch.finfo(x.dtype).eps
        scale = float(y.abs().max()) if y.numel() else 0.0
        if not torch.allclose(x, y, rtol=8 * eps, atol=8 * eps * max(scale, 1.0), equal_nan=True):
            return False
    return True


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
