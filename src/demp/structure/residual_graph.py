"""Reading one block's own forward with torch.fx: its adds, and which are identity residuals.

:func:`trace_block` traces a module one level deep (its children are leaves, except
non-empty ``nn.Sequential`` containers, which are inlined so that a projection shortcut's
conv and norm show up), :func:`replay` runs that graph on the block's recorded inputs to
read every node's value, and :func:`classify` says what an add is: an identity residual to
decouple (a :class:`Site`), one already decoupled, a projection (both operands computed by
layers demp cuts), or something left coupled, with the reason. Used by
:func:`demp.structure.residuals.decouple_residuals`; nothing here changes a model.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import fx, nn
from torch.utils._pytree import tree_map

from ..ops.rules import DEFAULT_RULES
from ..ops.select import ChannelSelect

ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
ADD_METHODS = ("add", "add_", "__add__", "__iadd__")
Verdict = Literal["already", "projection"]


@dataclass
class Site:
    """An identity residual add to decouple: ``add(branch, shortcut)``, shortcut = identity.

    Attributes:
        add: The add node.
        shortcut: The operand that becomes ``ChannelSelect(shortcut)``.
        channels: Channels (dim 1) of the shortcut.
        dtype: Its dtype (the selection's).
        device: Its device.
        swap: Target (relative to the block) of an ``nn.Identity`` / empty ``nn.Sequential``
            that computes the shortcut and can be replaced in place, or None (the block's
            forward is rewritten instead).

    """

    add: fx.Node
    shortcut: fx.Node
    channels: int
    dtype: torch.dtype
    device: torch.device
    swap: str | None


@dataclass
class BlockView:
    """What classifying a block's adds needs: the block, its node values, who made them."""

    module: nn.Module
    values: dict[fx.Node, Any]
    produced: dict[int, nn.Module]  # id(output tensor) -> the layer (with a rule) that made it
    shared: set[int]  # ids of modules that sit at several places of the model


class _OneLevel(fx.Tracer):
    """Children are leaves, except non-empty ``nn.Sequential`` containers (inlined)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return not (type(m) is nn.Sequential and len(m) > 0)


@dataclass
class Traced:
    """A block's own forward as traced in eval mode.

    Attributes:
        graph: The graph (children are leaves, non-empty ``nn.Sequential`` inlined).
        constants: Tensor constants fx had to add to the module (taken off it again).
        mode_dependent: The forward traces differently in training mode (``if
            self.training``, ``F.dropout(..., training=self.training)``): a rewritten
            forward would freeze one mode.

    """

    graph: fx.Graph
    constants: dict[str, Any]
    mode_dependent: bool


def trace_block(module: nn.Module) -> Traced:
    """Trace ``module``'s own forward in both modes; the module is left as it was."""
    before, mode = set(vars(module)), module.training
    try:
        module.training = True
        train_code = _OneLevel().trace(module).python_code("self").src
        module.training = False
        graph = _OneLevel().trace(module)
    finally:
        module.training = mode
        added = {k: vars(module)[k] for k in set(vars(module)) - before}
        for key in added:
            delattr(module, key)
    return Traced(graph, added, graph.python_code("self").src != train_code)


def add_nodes(graph: fx.Graph) -> list[fx.Node]:
    """The nodes of ``graph`` that add two values (``+``, ``+=``, ``torch.add``, ``.add_``)."""
    return [
        n
        for n in graph.nodes
        if (n.op == "call_function" and n.target in ADD_FUNCTIONS)
        or (n.op == "call_method" and n.target in ADD_METHODS)
    ]


def replay(
    module: nn.Module, graph: fx.Graph, args: tuple, kwargs: dict[str, Any]
) -> tuple[dict[fx.Node, Any], dict[int, nn.Module], list[torch.Tensor]]:
    """Run ``graph`` on (copies of) recorded inputs; return node values and their producers.

    Returns:
        Node -> value, ``id(tensor)`` -> the layer with a rule that returned it, and the
        tensors those ids refer to (keep them alive while the ids are used).

    """
    produced: dict[int, nn.Module] = {}
    keep: list[torch.Tensor] = []

    def note(layer: nn.Module, _args: tuple, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            produced[id(output)] = layer
            keep.append(output)

    layers = [m for m in module.modules() if m is not module and _is_layer(m)]
    handles = [m.register_forward_hook(note) for m in layers]
    try:
        recorder = _Recorder(module, graph)
        recorder.run(*_positional(graph, clone(args), clone(kwargs)))
    finally:
        for handle in handles:
            handle.remove()
    return recorder.values, produced, keep


class _Recorder(fx.Interpreter):
    def __init__(self, module: nn.Module, graph: fx.Graph) -> None:
        super().__init__(module, garbage_collect_values=False, graph=graph)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.values[n] = result
        return result


def _positional(graph: fx.Graph, args: tuple, kwargs: dict[str, Any]) -> list[Any]:
    """The recorded call's arguments, one per placeholder of the graph."""
    out = []
    for i, node in enumerate(n for n in graph.nodes if n.op == "placeholder"):
        if str(node.target).startswith("*"):
            raise ValueError("a forward with *args or **kwargs cannot be replayed")
        if i < len(args):
            out.append(args[i])
        elif node.target in kwargs:
            out.append(kwargs[node.target])
        elif node.args:
            out.append(node.args[0])
        else:
            raise ValueError(f"no recorded value for the argument {node.target!r}")
    return out


def clone(value: Any) -> Any:
    """Copy every tensor of a nested structure (recorded inputs must not be mutated)."""
    return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, value)


def _is_layer(module: nn.Module) -> bool:
    return DEFAULT_RULES.rule_for(module) is not None and not isinstance(module, ChannelSelect)


def identity_like(module: nn.Module) -> bool:
    """``nn.Identity``, an empty ``nn.Sequential`` or a :class:`ChannelSelect`."""
    if isinstance(module, (nn.Identity, ChannelSelect)):
        return True
    return type(module) is nn.Sequential and len(module) == 0


def classify(add: fx.Node, view: BlockView) -> Site | Verdict | str | None:
    """Say what ``add`` is: a :class:`Site`, ``"already"``, ``"projection"``, a reason, or None.

    None means the add is not between two computed tensors (a constant, a parameter or a
    buffer is added): it is no residual connection and is not reported.
    """
    pair = _operands(add)
    if pair is None or any(n.op == "get_attr" for n in pair):
        return None
    a, b = pair
    for short, branch in ((b, a), (a, b)):
        source, chain = _strip(short, view.module)
        if source is branch or source not in _ancestors(branch):
            continue
        if any(isinstance(view.module.get_submodule(n.target), ChannelSelect) for n in chain):
            return "already"
        return _residual(add, short, branch, chain, view)
    made = [_layer_output(n, view) is not None for n in (a, b)]
    if all(made):
        return "projection"
    other = b if made[0] else a
    if not any(made):
        return "neither operand is the identity of the other's input nor a layer's output"
    return (
        f"the shortcut ({_describe(other, view.module)}) is neither the identity of the "
        "branch's input nor computed by a layer demp cuts"
    )


def _residual(
    add: fx.Node, short: fx.Node, branch: fx.Node, chain: list[fx.Node], view: BlockView
) -> Site | str:
    """Check an identity residual; return its site or why it stays coupled."""
    in_place = add.target in ("add_", "__iadd__", operator.iadd)
    if in_place and add.args[0] is short:
        return "an in-place add writes into the shortcut tensor itself"
    x, y = view.values.get(short), view.values.get(branch)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        return "the operands are not tensors"
    if x.shape != y.shape:
        return f"the shapes differ ({tuple(y.shape)} + {tuple(x.shape)}): a broadcast add"
    if x.dim() < 2 or not x.is_floating_point():
        return f"the operands are not floating tensors with a channel dim (shape {tuple(x.shape)})"
    layer = _layer_output(branch, view)
    dim = DEFAULT_RULES.rule_for(layer).feature_dim if layer is not None else None
    if x.dim() > 2 and dim == -1:
        return f"the channels are last ({type(layer).__name__} output); ChannelSelect needs dim 1"
    if x.dim() == 3 and dim is None:
        return "a 3-D add whose branch does not end in a conv or norm layer: channel dim unknown"
    return Site(add, short, int(x.shape[1]), x.dtype, x.device, _swappable(short, chain, view))


def _swappable(short: fx.Node, chain: list[fx.Node], view: BlockView) -> str | None:
    """The target of the identity module computing ``short``, if it can be replaced in place."""
    if not chain or chain[0] is not short:
        return None
    uses = [n for n in short.graph.nodes if n.op == "call_module" and n.target == short.target]
    module = view.module.get_submodule(short.target)
    return short.target if len(uses) == 1 and id(module) not in view.shared else None


def _operands(add: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    first = add.args[0] if add.args else add.kwargs.get("input")
    second = add.args[1] if len(add.args) > 1 else add.kwargs.get("other")
    if isinstance(first, fx.Node) and isinstance(second, fx.Node):
        return first, second
    return None


def _strip(node: fx.Node, module: nn.Module) -> tuple[fx.Node, list[fx.Node]]:
    """Follow identity-like modules back from ``node``; return the source and the chain."""
    chain = []
    while (
        node.op == "call_module"
        and len(node.args) == 1
        and not node.kwargs
        and isinstance(node.args[0], fx.Node)
        and identity_like(module.get_submodule(node.target))
    ):
        chain.append(node)
        node = node.args[0]
    return node, chain


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = list(node.all_input_nodes)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return seen


def _layer_output(node: fx.Node, view: BlockView) -> nn.Module | None:
    value = view.values.get(node)
    return view.produced.get(id(value)) if isinstance(value, torch.Tensor) else None


def _describe(node: fx.Node, module: nn.Module) -> str:
    if node.op == "call_module":
        return f"{type(module.get_submodule(node.target)).__name__} {node.target}"
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return f".{node.target}()"
    return f"{node.op} {node.name}"
