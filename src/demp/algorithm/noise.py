"""DemP's noise: Gaussian perturbations added after the optimizer step (paper §3.2).

The noise is not scaled by the learning rate. ``"asymmetric"`` adds it only where this
step's loss gradient was non-zero: units that are dead get exactly nothing (their weights
keep their values); ``"symmetric"`` adds it to every trainable parameter. ``std`` is a
standard deviation: the paper calls its 5e-5 a variance, but the authors' code uses it as
a standard deviation (FACTS §1), and so does demp. The noise has its own
``torch.Generator``, saved and restored with the pruner.
"""

from __future__ import annotations

from typing import Any, Literal

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

    def masks(self, params: list[nn.Parameter]) -> list[torch.Tensor | None]:
        """Return where each parameter may receive noise, from its current loss gradient.

        Call before the regularizer touches ``.grad``. None means "nowhere".
        """
        if self.kind != "asymmetric":
            return [None] * len(params)
        return [p.grad != 0 if p.grad is not None else None for p in params]

    def add(
        self,
        params: list[nn.Parameter],
        masks: list[torch.Tensor | None],
        std: float,
        gates: Gates | None = None,
    ) -> None:
        """Add ``N(0, std^2)`` noise to the parameters (where the masks allow).

        One Gaussian draw per device and dtype (in chunks of at most 2**24 entries) covers
        the parameters, masked and added with foreach kernels. Where a mask is 0 the
        parameter gains ``std * 0``: its value is unchanged (a ``-0.0`` becomes ``+0.0``).
        ``gates`` (:mod:`.finite`) multiply the draw by the step's verdict on the device.
        """
        if self.kind == "off" or std == 0.0:
            return
        chosen = [
            (p, m) for p, m in zip(params, masks, strict=True)
            if not (self.kind == "asymmetric" and m is None)
        ]  # fmt: skip
        with torch.no_grad():
            for (device, dtype), items in _chunks(chosen):
                sizes = [p.numel() for p, _ in items]
                flat = torch.randn(sum(sizes), generator=self.generator, device=device, dtype=dtype)
                if gates is not None:
                    flat.mul_(gates[device])
                noises = [n.view_as(p) for n, (p, _) in zip(flat.split(sizes), items, strict=True)]
                if self.kind == "asymmetric":
                    torch._foreach_mul_(noises, [m for _, m in items])
                torch._foreach_add_([p for p, _ in items], noises, alpha=std)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Return the generator state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the generator state."""
        self.generator.set_state(state["generator"].to(torch.uint8).cpu())


_CHUNK = 2**24  # entries per draw: bounds the noise buffer on large models


def _chunks(
    chosen: list[tuple[nn.Parameter, Any]],
) -> list[tuple[tuple[torch.device, torch.dtype], list[tuple[nn.Parameter, Any]]]]:
    """The (parameter, mask) pairs by device and dtype, in runs of at most ``_CHUNK``."""
    out: list[tuple[tuple[torch.device, torch.dtype], list[tuple[nn.Parameter, Any]]]] = []
    open_: dict[tuple[torch.device, torch.dtype], int] = {}  # key -> index in out
    size: dict[int, int] = {}
    for p, m in chosen:
        key = (p.device, p.dtype)
        k = open_.get(key)
        if k is None or size[k] + p.numel() > _CHUNK:
            k = open_[key] = len(out)
            out.append((key, []))
            size[k] = 0
        out[k][1].append((p, m))
        size[k] += p.numel()
    return out
