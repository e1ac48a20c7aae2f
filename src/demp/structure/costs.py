"""What removing units saves, counted exactly from the structure and the layer shapes.

Removing units of a channel group shrinks one dimension of every tensor its slots touch.
A tensor cut on both sides (rows by one group, columns by another) loses
``r_out * I + r_in * O - r_out * r_in`` entries, so the exact saving of a removal is
computed from the new sizes, never by adding per-unit figures. Three resources
(:data:`Metric`):

- ``"weight"``: trainable parameter entries (``demp``'s weight sparsity);
- ``"neuron"``: units of the prunable groups (one per unit);
- ``"flops"``: forward FLOPs per example as ``torch.utils.flop_counter`` counts them for
  convolutions and linear layers: ``2 * weight entries * output positions``, with the
  output positions (pixels, tokens) of each layer measured once on an example.

:class:`CostModel` answers "how much would this removal save" and "what does one unit of
each group cost now" (the marginal cost, recomputed after every removal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..accounting import output_positions as layer_positions
from ..batches import Batch
from ..ops.rules import feature_dim, tensors_on_side
from .groups import Structure, module_cuts

Metric = Literal["weight", "neuron", "flops"]
METRICS: tuple[str, ...] = ("weight", "neuron", "flops")


@dataclass
class CostModel:
    """Exact savings of unit removals, for one model and its structure.

    Attributes:
        model: The model (read, never changed).
        structure: Its channel groups (kept current by :func:`demp.remove_units`).
        positions: Module path -> output positions per example (pixels of a conv's output,
            tokens of a linear layer's), for the FLOPs metric.
    """

    model: nn.Module
    structure: Structure
    positions: dict[str, float]

    @classmethod
    def measure(cls, model: nn.Module, structure: Structure, example: Batch) -> CostModel:
        """Measure each grouped layer's output positions on ``example`` (eval, no grad)."""
        return cls(model, structure, output_positions(model, structure, example))

    def saving(self, removed: Mapping[str, torch.Tensor], metric: Metric) -> float:
        """Return what removing ``removed`` (group name -> unit indices) would save.

        The count is exact for ``"weight"`` and ``"neuron"``, and for ``"flops"`` as the
        FLOP counter counts convolutions and linear layers.
        """
        if metric == "neuron":
            return float(sum(int(idx.numel()) for idx in removed.values()))
        cut = module_cuts(self.structure, {n: i for n, i in removed.items() if i.numel()})
        by_path: dict[str, dict[str, tuple[int, int]]] = {}
        for (path, side), gone in cut.items():
            size = self.structure.sizes[(path, side)]
            module = self.model.get_submodule(path)
            for name, dim in tensors_on_side(module, side, self.structure.rules):
                by_path.setdefault(path, {})[f"{name}:{dim}"] = (size, size - int(gone.numel()))
        total = 0.0
        for path, dims in by_path.items():
            total += self._module_saving(path, dims, metric)
        return total

    def unit_costs(self, metric: Metric) -> dict[str, float]:
        """Return, per prunable group, what removing one of its units saves now."""
        return {
            name: self.saving({name: torch.tensor([0])}, metric)
            for name, group in self.structure.groups.items()
            if group.width > 0
        }

    def total(self, metric: Metric) -> float:
        """Return the model's current size in ``metric`` (FLOPs: grouped layers only)."""
        if metric == "neuron":
            return float(self.structure.num_units)
        if metric == "weight":
            return float(sum(p.numel() for p in self.model.parameters() if p.requires_grad))
        return sum(
            2.0 * self.model.get_submodule(p).weight.numel() * pos
            for p, pos in self.positions.items()
        )

    def _module_saving(self, path: str, dims: dict[str, tuple[int, int]], metric: Metric) -> float:
        module = self.model.get_submodule(path)
        saved = 0.0
        for name, tensor in module.named_parameters(recurse=False):
            if metric == "weight" and not tensor.requires_grad:
                continue
            if metric == "flops" and (name != "weight" or path not in self.positions):
                continue
            shape = list(tensor.shape)
            for dim in range(len(shape)):
                sizes = dims.get(f"{name}:{dim}")
                if sizes is not None:
                    shape[dim] = shape[dim] * sizes[1] // sizes[0]
            gone = tensor.numel() - math.prod(shape)
            saved += gone * (2.0 * self.positions[path] if metric == "flops" else 1.0)
        return saved


def output_positions(model: nn.Module, structure: Structure, example: Batch) -> dict[str, float]:
    """Return, for each conv/linear layer in a group, its output positions per example.

    A layer's output of shape ``(N, C, H, W)`` has ``H * W`` positions, a linear layer's
    ``(N, T, F)`` has ``T``. Measured with forward hooks in eval mode under ``no_grad``.
    """
    paths = {
        slot.path
        for group in structure.groups.values()
        for slot in group.slots
        if slot.role in ("producer", "consumer", "depthwise")
    }
    modules = {
        path: model.get_submodule(path)
        for path in sorted(paths)
        if isinstance(getattr(model.get_submodule(path), "weight", None), torch.Tensor)
    }
    return layer_positions(model, modules, example, lambda m: feature_dim(m, structure.rules))
