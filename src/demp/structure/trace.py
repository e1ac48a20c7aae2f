"""Build a :class:`~demp.structure.Structure` with Torch-Pruning's dependency graph.

This is the only module that talks to Torch-Pruning. It uses the graph for grouping
alone and turns each group into plain data, checking it against what demp can cut
exactly: every module in the group has a surgery rule, every operation between them is
channel-wise, and every index mapping is consistent. The graph (and the autograd graph it
holds) is dropped before returning. Training/eval mode and grad mode are restored.

Which layers exist is read from the layer table (:mod:`demp.ops.rules`). Torch-Pruning keeps
its own pruners for the types it knows (conv, linear, the norms: its depthwise, grouped and
LayerNorm handling stays as it was); a row whose type it does not know gets a generated
``customized_pruner`` (sizes from the row, in and out coupled for a norm row), so that
Torch-Pruning traces it as a layer instead of an unknown op with a bare parameter.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..batches import Batch, kept_modes
from ..ops.rules import DEFAULT_RULES, LayerRule, LayerRules, side_size, unsupported_reason
from .groups import ChannelGroup, Role, Slot, Structure
from .inner_ops import InnerOps
from .splits import align_splits, index_table, split_parts, split_period
from .tp_guards import early_reason, guarded_build

# Autograd ops that act on each channel separately (or only reduce/reshape other dims).
# Anything else inside a group makes it refused; the trial cut (structure.verify) is the last gate.
CHANNELWISE_OPS = frozenset(
    """Relu Relu6 Hardtanh LeakyRelu Gelu Silu Sigmoid Tanh Hardswish Hardsigmoid Elu Selu Celu
    Softplus Mish Threshold Add Sub Mul Div Neg Abs Exp Pow Sqrt Rsqrt Clamp ClampMin ClampMax
    Maximum Minimum Clone ToCopy NativeDropout Dropout Alias Detach Identity
    MaxPool1DWithIndices MaxPool2DWithIndices MaxPool3DWithIndices AvgPool1D AvgPool2D AvgPool3D
    AdaptiveAvgPool1D AdaptiveAvgPool2D AdaptiveAvgPool3D AdaptiveMaxPool1D AdaptiveMaxPool2D
    Mean Sum Squeeze Unsqueeze UpsampleNearest1D UpsampleNearest2D UpsampleBilinear2D
    ConstantPadNd ReflectionPad1D ReflectionPad2D ReplicationPad2D View Reshape
    UnsafeView Flatten Transpose Permute""".split()
)


def build_structure(
    model: nn.Module,
    example: Batch,
    ignored_layers: Iterable[nn.Module | str] = (),
    allow_inexact_norm: bool = False,
    rules: LayerRules | None = None,
) -> Structure:
    """Trace ``model`` on ``example`` and return its channel groups.

    Args:
        model: Any ``nn.Module`` Torch-Pruning can trace.
        example: One small input batch (tensor, tuple of tensors, or dict of kwargs).
        ignored_layers: Modules (or dotted paths) whose outputs are never cut, added to the
            output layers found automatically. Their inputs may still be cut.
        allow_inexact_norm: Accept LayerNorm / single-group GroupNorm over the channels.
        rules: The layer table (default: :data:`demp.ops.rules.DEFAULT_RULES`); the
            structure keeps it.

    Returns:
        The structure, with every group that cannot be cut listed in ``skipped``.

    """
    import torch_pruning as tp  # heavy import, kept out of `import demp`

    rules = DEFAULT_RULES if rules is None else rules
    paths = {m: p for p, m in model.named_modules()}
    inner = InnerOps(model, rules)
    try:
        with kept_modes(model), torch.enable_grad():
            pruners = _customized_pruners(tp, model, rules)
            graph = guarded_build(
                lambda: tp.DependencyGraph().build_dependency(
                    model,
                    example_inputs=example,
                    forward_fn=inner.forward,
                    customized_pruners=pruners,
                    verbose=False,
                ),
                model,
            )
            align_splits(graph)
            outputs = _output_layers(graph, paths, rules)
            ignored = set(outputs) | {_path_of(x, paths) for x in ignored_layers}
            context = _Context(paths, ignored, allow_inexact_norm, inner.ops, rules)
            structure = _collect_groups(model, graph, context)
            structure.output_layers = sorted(outputs)
    finally:
        if "graph" in locals():
            _release(graph)
    return structure


def _release(graph: Any) -> None:
    """Drop the autograd graph the dependency graph holds (its nodes form reference cycles)."""
    for node in graph.module2node.values():
        node.grad_fn = None
        node.inputs.clear()
        node.outputs.clear()
        node.dependencies.clear()
    graph.module2node.clear()


def _customized_pruners(tp: Any, model: nn.Module, rules: LayerRules) -> dict[type, Any]:
    """Generated Torch-Pruning pruners for the model's row types that it does not know.

    Torch-Pruning only reads sizes from them and uses their methods as labels of the
    dependencies (a norm row's in/out methods are one, which couples its two sides); demp
    never lets it prune. Types it knows keep its own pruners.
    """
    root, norm = _pruner_classes(tp.pruner.function.BasePruningFunc)
    found: dict[type, Any] = {}
    for module in model.modules():
        row = rules.rule_for(module)
        if row is None or type(module) in found:
            continue
        if tp.ops.module2type(module) == tp.ops.OPTYPE.ELEMENTWISE:  # unknown to it
            found[type(module)] = (root if row.kind == "root" else norm)(row)
    return found


@functools.cache
def _pruner_classes(base: type) -> tuple[type, type]:
    """Torch-Pruning pruner classes that read a :class:`LayerRule` (made once, lazily)."""

    class RulePruner(base):
        def __init__(self, rule: LayerRule) -> None:
            super().__init__()
            self.rule = rule

        def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            raise NotImplementedError("demp cuts layers with its own surgery")

        def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            raise NotImplementedError("demp cuts layers with its own surgery")

        def get_out_channels(self, layer: nn.Module) -> int:
            return self.rule.size(layer, "out")

        def get_in_channels(self, layer: nn.Module) -> int:
            return self.rule.size(layer, "in")

    class CoupledPruner(RulePruner):
        prune_in_channels = RulePruner.prune_out_channels  # in and out are one dimension

    return RulePruner, CoupledPruner


@dataclass(frozen=True)
class _Context:
    """What turning Torch-Pruning groups into channel groups needs besides the graph."""

    paths: dict[nn.Module, str]
    ignored: set[str]
    allow_inexact_norm: bool
    inner_ops: set[int]
    rules: LayerRules


def _path_of(item: nn.Module | str, paths: dict[nn.Module, str]) -> str:
    if isinstance(item, str):
        if item not in paths.values():
            raise ValueError(f"ignored_layers: no module named {item!r} in the model")
        return item
    if item not in paths:
        raise ValueError(f"ignored_layers: {type(item).__name__} is not a module of the model")
    return paths[item]


def _output_layers(graph: Any, paths: dict[nn.Module, str], rules: LayerRules) -> list[str]:
    """Find conv/linear layers whose outputs reach the model output through no other layer."""
    sinks = [n for n in graph.module2node.values() if not n.outputs]
    found, stack, seen = set(), list(sinks), set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node.module, nn.Module) and rules.kind_of(node.module) == "root":
            found.add(paths[node.module])
            continue
        stack.extend(node.inputs)
    return sorted(found)


def _collect_groups(model: nn.Module, graph: Any, context: _Context) -> Structure:
    structure = Structure(groups={}, rules=context.rules)
    covered: set[nn.Module] = set()
    node_reason = functools.partial(_node_reason, context, model)
    for path, module in model.named_modules():
        if context.rules.kind_of(module) != "root" or module in covered:
            continue
        if module not in graph.module2node:
            continue  # never called in the traced forward
        reason = early_reason(graph, module, context.rules, node_reason)
        if reason:
            structure.skipped[path] = reason
            continue
        pruner = graph.get_pruner_of_module(module)
        width = pruner.get_out_channels(module)
        group = graph.get_pruning_group(module, pruner.prune_out_channels, list(range(width)))
        for item in group.items:
            if graph.is_out_channel_pruning_fn(item.dep.handler):
                target = item.dep.target.module
                if isinstance(target, nn.Module):
                    covered.add(target)
        result = _convert(path, width, group, graph, context)
        if isinstance(result, str):
            structure.skipped[path] = result
        else:
            structure.groups[path] = result
    for group in structure.groups.values():
        for slot in group.slots:
            module = model.get_submodule(slot.path)
            structure.sizes[(slot.path, slot.side)] = side_size(module, slot.side, context.rules)
    return structure


def _convert(
    name: str, width: int, group: Any, graph: Any, context: _Context
) -> ChannelGroup | str:
    """Turn a Torch-Pruning group into a ChannelGroup, or return why it cannot be cut."""
    if name in context.ignored:
        return f"{name} is an output layer or ignored: its outputs are kept"
    found = _pieces(group, graph, context)
    if isinstance(found, str):
        return found
    pieces, splits = found
    period = width
    if any(set(roots) != set(range(width)) for _, roots in pieces.values()):
        period = split_period(splits, width, name)  # a unit per channel of each equal part
        if isinstance(period, str):
            return period
    slots = []
    for (path, role), (idxs, roots) in pieces.items():
        index = index_table(idxs, roots, period)
        module = graph.model.get_submodule(path)
        size = side_size(module, "in" if role == "consumer" else "out", context.rules)
        per_unit = 1 if role == "consumer" else width // period  # producers: one per part
        if (
            index is None
            or int(index.max()) >= size
            or (role != "consumer" and index.shape[1] > per_unit)
        ):
            ranged = splits or any(_is_slice(item) for item in group.items)
            note = "; the channels are split or sliced on the way" if ranged else ""
            return f"the channel index mapping at {path} is inconsistent (could not trace it{note})"
        slots.append(Slot(path=path, role=role, index=index))
    if not any(s.role == "consumer" for s in slots):
        return f"no layer consumes the channels of {name}: they reach the model output"
    return ChannelGroup(name=name, width=period, slots=slots, parts=width // period)


_Pieces = dict[tuple[str, Role], tuple[list[int], list[int]]]


def _pieces(
    group: Any, graph: Any, context: _Context
) -> tuple[_Pieces, list[list[int] | None]] | str:
    """Collect module indices and group channels per (layer, role), and split part sizes.

    Returns:
        The pieces and the part sizes of every split, or why an item makes the group
        uncuttable.
    """
    paths, rules = context.paths, context.rules
    pieces: _Pieces = {}
    splits: list[list[int] | None] = []
    for item in group.items:
        target = item.dep.target
        module = target.module
        if type(module).__name__ == "_SplitOp":
            splits.append(split_parts(item))
            continue
        if not isinstance(module, nn.Module) or module not in paths:
            inner = id(target.grad_fn) in context.inner_ops
            reason = None if inner else _op_reason(target, module)
            if reason and isinstance(module, nn.Parameter):
                reason += _owner_note(graph.model, module, rules)
            if reason:
                return reason
            continue
        path = paths[module]
        reason = unsupported_reason(module, path, context.allow_inexact_norm, rules)
        if reason:
            return reason
        out_side = graph.is_out_channel_pruning_fn(item.dep.handler)
        role = _role(rules.require(module), module, out_side)
        if role != "consumer" and path in context.ignored:
            return f"cutting these channels would cut the outputs of {path} (output or ignored)"
        idxs, roots = pieces.setdefault((path, role), ([], []))
        idxs.extend(int(i) for i in item.idxs)
        roots.extend(int(r) for r in item.root_idxs)
    return pieces, splits


def _is_slice(item: Any) -> bool:
    return type(item.dep.target.module).__name__ == "_SliceOp"


def _node_reason(context: _Context, model: nn.Module, node: Any) -> tuple[int, str] | None:
    """Why a node near a group makes it uncuttable, ranked by how much it tells the user.

    0: a layer of the table refuses (a LayerNorm over the channels, a grouped conv); 1: a
    layer the table lacks; 2: an operation. None if the node is harmless (or a layer's own
    operation).
    """
    module = node.module
    if isinstance(module, nn.Module) and module in context.paths:
        path = context.paths[module]
        reason = unsupported_reason(module, path, context.allow_inexact_norm, context.rules)
        rank = 0 if context.rules.rule_for(module) is not None else 1
        return (rank, reason) if reason else None
    if id(node.grad_fn) in context.inner_ops:
        return None
    reason = _op_reason(node, module)
    if reason and isinstance(module, nn.Parameter):
        reason += _owner_note(model, module, context.rules)
    return (2, reason) if reason else None


def _role(row: LayerRule, module: nn.Module, out_side: bool) -> Role:
    if row.kind == "norm":
        return "norm"
    if row.depthwise(module):
        return "depthwise"
    return "producer" if out_side else "consumer"


def _pooled_restride(grad_fn: Any) -> bool:
    """Whether an ``as_strided`` only restrides an ``[N, C, 1, ...]`` tensor, channel for channel.

    Adaptive pooling to 1 in the channels-last layout ends with such a restride (its mean
    is followed by an ``as_strided`` to the channels-last strides). For a size ``[N, C, 1,
    ...]`` with stride ``(C, 1, ...)`` element ``(n, c)`` sits at ``n * C + c`` in either
    layout, so the channels keep their order. Any other ``as_strided`` stays refused, and
    the trial cut (:mod:`demp.structure.verify`) checks the values.
    """
    size = getattr(grad_fn, "_saved_size", None)
    stride = getattr(grad_fn, "_saved_stride", None)
    if size is None or stride is None or len(size) < 3 or len(stride) != len(size):
        return False
    if getattr(grad_fn, "_saved_storage_offset", None) not in (None, 0):
        return False
    return (
        all(n == 1 for n in size[2:])
        and (size[1] == 1 or stride[1] == 1)
        and (size[0] == 1 or stride[0] == size[1])
    )


def _op_reason(node: Any, module: Any) -> str | None:
    """Say why a non-module node makes a group uncuttable, or None if it is harmless."""
    kind = type(module).__name__
    if kind in ("_ConcatOp", "_ReshapeOp", "_SplitOp", "_SliceOp"):
        return None  # a split or slice that drops part of the channels: see split_period
    if kind == "_ElementWiseOp":
        if not node.inputs:  # a view of a weight (e.g. the transpose inside a linear layer)
            return None
        op = re.sub(r"Backward\d*$", "", node.grad_fn.name()) if node.grad_fn else "?"
        if op in CHANNELWISE_OPS or (op == "AsStrided" and _pooled_restride(node.grad_fn)):
            return None
        return f"operation {op} between layers may mix channels"
    if isinstance(module, nn.Parameter):
        return f"a bare parameter of shape {tuple(module.shape)} is applied to these channels"
    if kind == "_OutputOp":
        return "these channels reach the model output"
    return f"operation {kind.strip('_')} is not supported inside a channel group"


def _owner_note(model: nn.Module, param: nn.Parameter, rules: LayerRules) -> str:
    """Name a bare parameter's module, and say so when its layer type has no rule."""
    for path, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if p is param:
                kind = type(module).__name__
                if rules.rule_for(module) is not None:
                    return f" ({path}.{name})" if path else f" ({name})"
                where = f"{path} ({kind})" if path else kind
                return f" ({where}: no row of the layer table covers {kind})"
    return ""
