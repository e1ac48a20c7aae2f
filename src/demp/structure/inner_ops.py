"""The autograd operations inside the layers of the table, noted while a model is traced.

Torch-Pruning sees every autograd operation of a forward pass; those that a layer of the
table runs itself are the layer's, not operations between layers (see :class:`InnerOps`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..batches import Batch, call_model, output_tensors
from ..ops.rules import LayerRules
from .tp_guards import without_cache


class InnerOps:
    """Run the traced forward while noting the autograd ops inside each layer of the table.

    A linear layer on a 3-D input shows up as view/addmm/view ops, and a norm layer that
    applies its activation itself (timm's ``BatchNormAct2d``: ``F.batch_norm``, then the
    activation) as a batch-norm op before the module's output; those are the layer's own,
    not operations between layers, and must not make its group look uncuttable.
    """

    def __init__(self, model: nn.Module, rules: LayerRules) -> None:
        self.model = model
        self.rules = rules
        self.ops: set[int] = set()
        self._inputs: dict[nn.Module, set[Any]] = {}
        self._keep: list[Any] = []  # grad_fns stay alive while the graph is built

    def forward(self, model: nn.Module, example: Batch) -> Any:
        """Run the model on ``example`` (Torch-Pruning's ``forward_fn``), noting inner ops."""
        handles = []
        for module in model.modules():
            if self.rules.kind_of(module) is not None:
                handles.append(module.register_forward_pre_hook(self._pre))
                handles.append(module.register_forward_hook(self._post))
        try:  # the output's tensors only (a transformers output holds caches, tuples...)
            return output_tensors(call_model(model, without_cache(model, example)))
        finally:
            for handle in handles:
                handle.remove()

    def _pre(self, module: nn.Module, args: tuple) -> None:
        self._inputs[module] = {a.grad_fn for a in args if isinstance(a, torch.Tensor)}

    def _post(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.grad_fn is None:
            return
        stop = self._inputs.pop(module, set())
        stack = [f for f, _ in output.grad_fn.next_functions if f is not None]
        while stack:
            fn = stack.pop()
            if fn in stop or id(fn) in self.ops or type(fn).__name__ == "AccumulateGrad":
                continue
            self.ops.add(id(fn))
            self._keep.append(fn)
            stack.extend(f for f, _ in fn.next_functions if f is not None)
