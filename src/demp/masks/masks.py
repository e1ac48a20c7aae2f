"""Weight masks: which conv / linear weights are held at exactly zero, and holding them there.

:meth:`WeightMasks.apply` zeroes the masked weights and, for each of them, every optimizer
state entry shaped like the weight (Adam's moments, SGD's momentum), so that the next
step's update of a masked weight starts from nothing; called after every optimizer step,
it keeps masked weights exactly zero through training. Masks are bool tensors (True =
kept) saved with the run's checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import DempError
from .distribution import MaskedLayer


@dataclass
class WeightMasks:
    """The masks of a model's maskable layers.

    Attributes:
        layers: The maskable layers (:func:`~demp.masks.maskable_layers`).
        kept: Module path -> bool tensor shaped like its weight (True = kept).
    """

    layers: list[MaskedLayer]
    kept: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def dense(cls, model: nn.Module, layers: list[MaskedLayer]) -> WeightMasks:
        """Masks that keep every weight."""
        kept = {
            layer.path: torch.ones_like(_weight(model, layer.path), dtype=torch.bool)
            for layer in layers
        }
        return cls(layers, kept)

    # ------------------------------------------------------------------ counts
    def zeros(self) -> int:
        """The number of masked weights."""
        return sum(int((~m).sum()) for m in self.kept.values())

    def layer_zeros(self) -> dict[str, int]:
        """Masked weights per layer."""
        return {path: int((~m).sum()) for path, m in self.kept.items()}

    def flops_saved(self) -> float:
        """Forward FLOPs per example a sparse kernel would skip (2 per zero and position)."""
        zeros = self.layer_zeros()
        return sum(2.0 * zeros[layer.path] * layer.positions for layer in self.layers)

    # ------------------------------------------------------------------ masking
    def mask_lowest(
        self, scores: Mapping[str, torch.Tensor], counts: Mapping[str, int] | None, zeros: int
    ) -> None:
        """Mask the lowest-scored weights: ``counts[path]`` per layer, or ``zeros`` globally.

        Ties are broken by position (stable sort), so equal scores give the same masks on
        every rank and every resume.
        """
        if counts is None:
            flat = torch.cat(
                [scores[layer.path].reshape(-1).double().cpu() for layer in self.layers]
            )
            chosen = torch.zeros(flat.numel(), dtype=torch.bool)
            chosen[torch.argsort(flat, stable=True)[:zeros]] = True
            start = 0
            for layer in self.layers:
                part = chosen[start : start + layer.size].reshape(layer.shape)
                self.kept[layer.path] = ~part.to(self.kept[layer.path].device)
                start += layer.size
            return
        for layer in self.layers:
            score = scores[layer.path].reshape(-1).double().cpu()
            gone = torch.zeros(layer.size, dtype=torch.bool)
            gone[torch.argsort(score, stable=True)[: counts[layer.path]]] = True
            self.kept[layer.path] = ~gone.reshape(layer.shape).to(self.kept[layer.path].device)

    @torch.no_grad()
    def apply(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Zero every masked weight and its optimizer state entries shaped like it."""
        for path, kept in self.kept.items():
            weight = _weight(model, path)
            weight.mul_(kept)  # a bool mask: no float copy per step
            for value in _state_like(weight, optimizer):
                value.mul_(kept)

    def broadcast(self) -> None:
        """Give every rank rank 0's masks (a no-op outside ``torch.distributed``).

        Ranks compute the same masks from synchronized weights and seeded draws, but
        scores from non-deterministic kernels (SNIP's gradients on a GPU) can break a
        near-tie differently; the masks must agree, or the ranks train different models.
        """
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return
        for layer in self.layers:
            flat = self.kept[layer.path].to(torch.uint8)
            dist.broadcast(flat, src=0)
            self.kept[layer.path] = flat.to(torch.bool)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The masks, by ``mask.<path>`` (CPU bool tensors)."""
        return {f"mask.{path}": m.cpu() for path, m in self.kept.items()}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`'s masks (shapes checked before anything changes).

        Raises:
            DempError: A mask is missing or shaped unlike its layer's weight.
        """
        loaded = {}
        for layer in self.layers:
            mask = tensors.get(f"mask.{layer.path}")
            if mask is None or tuple(mask.shape) != layer.shape:
                got = None if mask is None else tuple(mask.shape)
                raise DempError(
                    f"the checkpoint's mask of {layer.path} is {got}, not {layer.shape}"
                )
            loaded[layer.path] = mask.to(torch.bool).to(self.kept[layer.path].device)
        self.kept.update(loaded)


def _weight(model: nn.Module, path: str) -> torch.Tensor:
    return model.get_submodule(path).weight


@torch.no_grad()
def zero_entries(
    weight: torch.Tensor, where: torch.Tensor, optimizer: torch.optim.Optimizer | None
) -> None:
    """Zero ``weight`` where ``where`` is True, and its optimizer state entries shaped like it."""
    weight.masked_fill_(where, 0.0)
    for value in _state_like(weight, optimizer):
        value.masked_fill_(where, 0)


def _state_like(weight: torch.Tensor, optimizer: torch.optim.Optimizer | None) -> list:
    """The optimizer state tensors of ``weight`` shaped like it (Adam's moments, momentum)."""
    if optimizer is None or weight not in optimizer.state:
        return []
    state = optimizer.state[weight].values()
    return [v for v in state if isinstance(v, torch.Tensor) and v.shape == weight.shape]
