"""DemP's noise: Gaussian perturbations added after the optimizer step (paper §3.2).

The noise is not scaled by the learning rate. ``"asymmetric"`` adds it only where this
step's loss gradient was non-zero: units that are dead get exactly nothing (their weights
keep their values); ``"symmetric"`` adds it to every trainable parameter. ``std`` is a
standard deviation: the paper calls its 5e-5 a variance, but the authors' code uses it as
a standard deviation (FACTS §1), and so does demp. The noise has its own
``torch.Generator``, saved and restored with the pruner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .finite import Gates

NoiseKind = Literal["asymmetric", "symmetric", "off"]


class NoiseInjector:
    """Draws and adds the noise, from its own generator.

    Args:
        kind: ``"asymmetric"``, ``"symmetric"`` or ``"off"``.
        seed: Seed of the generator.
        device: Device of the generator (that of the model's parameters).
    """

    def __init__(self, kind: NoiseKind, seed: int, device: torch.device) -> None:
        self.kind = kind
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def plan(self, params: list[nn.Parameter]) -> NoisePlan | None:
        """Return this step's draws: which parameters, and where they may move.

        Call before the regularizer touches ``.grad``: an asymmetric plan keeps, per draw,
        one flat boolean mask of where the loss gradient is non-zero (parameters without a
        gradient get nothing). None: no noise.
        """
        if self.kind == "off":
            return None
        masked = self.kind == "asymmetric"
        chosen = [p for p in params if p.grad is not None] if masked else list(params)
        draws = []
        for key, items in _chunks(chosen):
            mask = torch.cat([p.grad.reshape(-1) for p in items]) != 0 if masked else None
            draws.append(_Draw(key, items, mask))
        return NoisePlan(draws)

    def add(self, plan: NoisePlan | None, std: float, gates: Gates | None = None) -> None:
        """Add ``N(0, std^2)`` noise to the plan's parameters (where its masks allow).

        One Gaussian draw per device and dtype (in chunks of at most 2**24 entries) covers
        the parameters; it is masked, gated and added with one foreach kernel. Where a
        mask is 0 the parameter gains ``std * 0``: its value is unchanged (a ``-0.0``
        becomes ``+0.0``). ``gates`` (:mod:`.finite`) multiply the draw by the step's
        verdict on its gradients, on the device.
        """
        if plan is None or std == 0.0:
            return
        with torch.no_grad():
            for draw in plan.draws:
                (device, dtype), items = draw.key, draw.params
                sizes = [p.numel() for p in items]
                flat = torch.randn(sum(sizes), generator=self.generator, device=device, dtype=dtype)
                if draw.mask is not None:
                    flat.mul_(draw.mask)
                if gates is not None:
                    flat.mul_(gates[device])
                noises = [n.view_as(p) for n, p in zip(flat.split(sizes), items, strict=True)]
                torch._foreach_add_(items, noises, alpha=std)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Return the generator state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the generator state."""
        self.generator.set_state(state["generator"].to(torch.uint8).cpu())


_CHUNK = 2**24  # entries per draw: bounds the noise buffer on large models


@dataclass(frozen=True)
class _Draw:
    """One Gaussian draw: its (device, dtype), its parameters, their flat mask (or None)."""

    key: tuple[torch.device, torch.dtype]
    params: list[nn.Parameter]
    mask: torch.Tensor | None


@dataclass(frozen=True)
class NoisePlan:
    """The draws of one step's noise (from :meth:`NoiseInjector.plan`)."""

    draws: list[_Draw]


def _chunks(
    chosen: list[nn.Parameter],
) -> list[tuple[tuple[torch.device, torch.dtype], list[nn.Parameter]]]:
    """The parameters by device and dtype, in runs of at most ``_CHUNK`` entries."""
    out: list[tuple[tuple[torch.device, torch.dtype], list[nn.Parameter]]] = []
    open_: dict[tuple[torch.device, torch.dtype], int] = {}  # key -> index in out
    size: dict[int, int] = {}
    for p in chosen:
        key = (p.device, p.dtype)
        k = open_.get(key)
        if k is None or size[k] + p.numel() > _CHUNK:
            k = open_[key] = len(out)
            out.append((key, []))
            size[k] = 0
        out[k][1].append(p)
        size[k] += p.numel()
    return out
