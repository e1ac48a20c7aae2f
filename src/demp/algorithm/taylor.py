"""What the loss would lose if a unit were faded: a first-order (Taylor) estimate per unit.

The fade zeroes a unit's normalization scale and shift (and, after an identity residual
add, its shortcut row). To first order the loss then changes by ``-sum_p p * dL/dp`` over
those entries ``p``; Molchanov et al. (CVPR 2019, "Importance estimation for neural
network pruning") rank units by the square of that change, averaged over minibatches. The
meter adds it up from the gradients the training steps compute anyway (before the
regularizer's term is added), over one check interval; ``fade_score="taylor"`` ranks by it.
A shortcut row is a buffer without a gradient: for it the meter hooks each
:class:`~demp.ops.select.ChannelSelect` and adds ``sum(dL/dy * y)`` per output channel
during the backward pass (:meth:`TaylorMeter.attach`). Under a ``GradScaler`` that term sees
the scaled loss while the parameters' gradients are unscaled: use ``fade_score="output"``
there.

Example:
    >>> meter = TaylorMeter()
    >>> handles = meter.attach(model)        # the shortcut rows' terms
    >>> meter.accumulate(model, structure)   # after backward, before the penalty gradient
    >>> meter.scores()                       # group -> mean squared estimate per unit
    >>> meter.cut(structure.history[-1])     # after a removal: the same numbering as the model
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..ops.select import ChannelSelect
from ..structure import Structure
from .fade import faded_rows


@dataclass
class TaylorMeter:
    """Per group, the sum over steps of each unit's squared first-order loss change.

    Attributes:
        sums: Group name -> per-unit sum (float64, on the model's device).
        count: Steps added up.
    """

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    count: int = 0
    _pending: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def attach(self, model: nn.Module) -> list[RemovableHandle]:
        """Hook every :class:`ChannelSelect`: its rows' terms, from the backward pass."""
        return [
            module.register_forward_hook(partial(self._capture, path))
            for path, module in model.named_modules()
            if isinstance(module, ChannelSelect)
        ]

    def _capture(self, path: str, _module: nn.Module, _args: Any, out: torch.Tensor) -> None:
        if torch.is_grad_enabled() and isinstance(out, torch.Tensor) and out.requires_grad:
            value = out.detach()
            out.register_hook(lambda grad: self._add(path, grad, value))

    @torch.no_grad()
    def _add(self, path: str, grad: torch.Tensor, value: torch.Tensor) -> None:
        term = (grad * value).transpose(0, 1).reshape(value.shape[1], -1).sum(dim=1).double()
        old = self._pending.get(path)
        self._pending[path] = term if old is None or old.numel() != term.numel() else old + term

    @torch.no_grad()
    def accumulate(self, model: nn.Module, structure: Structure) -> None:
        """Add this step's estimate; call with the loss's gradients in ``.grad``.

        The sums stay on the model's device; one host synchronization per step (the
        finiteness check): a step whose estimate is not finite (an inf or NaN gradient) is
        not counted.
        """
        shortcuts = {
            id(m.selection): p for p, m in model.named_modules() if isinstance(m, ChannelSelect)
        }
        squares = {}
        for name, group in structure.groups.items():
            rows = faded_rows(model, structure, name, list(range(group.width)))
            if rows:
                squares[name] = self._change(rows, group.width, shortcuts).pow(2)
        self._pending.clear()
        if not squares:
            return
        if not bool(torch.stack([torch.isfinite(v).all() for v in squares.values()]).all()):
            return
        for name, square in squares.items():
            old = self.sums.get(name)
            fresh = old is None or old.numel() != square.numel()  # a removal it was not told of
            self.sums[name] = square if fresh else old.to(square.device) + square
        self.count += 1

    def _change(
        self, rows: list[tuple[torch.Tensor, torch.Tensor]], width: int, shortcuts: dict[int, str]
    ) -> torch.Tensor:
        """``sum_p p * dL/dp`` per unit over its faded entries (shortcut rows: the hook's)."""
        change = torch.zeros(width, dtype=torch.float64, device=rows[0][0].device)
        for tensor, index in rows:
            at = index.to(tensor.device)
            pending = self._pending.get(shortcuts.get(id(tensor), ""))
            if pending is not None and pending.numel() == tensor.shape[0]:
                change += pending[at].reshape(width, -1).sum(dim=1)
            if tensor.grad is not None:
                term = (tensor.grad[at] * tensor[at]).double().reshape(width, -1)
                change += term.sum(dim=1)
        return change

    def scores(
        self,
        sync: Callable[[torch.Tensor], None] | None = None,
        device: torch.device | str = "cpu",
    ) -> dict[str, torch.Tensor]:
        """Group name -> each unit's mean squared estimate over the steps added up.

        Args:
            sync: Applied in place to each group's scores (on ``device``) in name order,
                e.g. a MAX all-reduce: ranks then rank the same units the same way.
            device: Where ``sync`` needs the tensors (CUDA for NCCL).
        """
        out = {}
        for name in sorted(self.sums):
            score = self.sums[name] / max(1, self.count)
            if sync is not None:
                score = score.to(device)
                sync(score)
            out[name] = score.cpu()
        return out

    def cut(self, removed: Mapping[str, list[int]]) -> None:
        """Drop removed units (group -> indices as numbered before the removal)."""
        for name, units in removed.items():
            if name not in self.sums or not units:
                continue
            keep = torch.ones(self.sums[name].numel(), dtype=torch.bool)
            keep[torch.tensor(list(units), dtype=torch.long)] = False
            keep = keep.to(self.sums[name].device)
            self.sums[name] = self.sums[name][keep]

    def state_dict(self) -> dict[str, Any]:
        """The sums (as lists) and the count (JSON)."""
        return {"sums": {n: s.tolist() for n, s in self.sums.items()}, "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (an empty one: nothing added up yet)."""
        sums = state.get("sums", {})
        self.sums = {str(n): torch.tensor(v, dtype=torch.float64) for n, v in sums.items()}
        self.count = int(state.get("count", 0))

    def reset(self) -> None:
        """Start a new interval."""
        self.sums, self.count = {}, 0
        self._pending.clear()
