"""Whether a step's gradients are finite, decided on the device without waiting for it.

A step whose gradients hold an inf or a NaN gets neither the regularizer nor the noise.
Reading that verdict on the host (``bool(tensor)``) would make the CPU wait for the whole
backward pass at every step, which on a GPU costs more than everything else the pruner
does; so the verdict stays a 0-dim tensor that multiplies the regularizer's and the
noise's terms (1: finite, 0: skip), and the skipped steps are counted on the device and
read only where the pruner waits anyway (at a death check).
"""

from __future__ import annotations

import torch
from torch import nn

Gates = dict[torch.device, torch.Tensor]
"""The verdict (0-dim, 1 or 0) on every device that holds a gradient."""


class FiniteGate:
    """Per step, one verdict on all gradients; a device-side count of the steps skipped."""

    def __init__(self) -> None:
        self._skipped: torch.Tensor | None = None
        self._read = 0

    def gates(self, params: list[nn.Parameter]) -> Gates | None:
        """The verdict on ``params``' gradients, on each of their devices (None: no grads)."""
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for p in params:
            if p.grad is not None:
                by_device.setdefault(p.grad.device, []).append(p.grad)
        if not by_device:
            return None
        flags = [torch.stack(torch._foreach_norm(g)).isfinite().all() for g in by_device.values()]
        ok = flags[0]
        for flag in flags[1:]:
            ok = ok & flag.to(ok.device, non_blocking=True)
        skipped = (~ok).long()
        self._skipped = skipped if self._skipped is None else self._skipped + skipped
        return {device: ok.to(device, non_blocking=True) for device in by_device}

    def newly_skipped(self) -> int:
        """Steps skipped since the last call (reads the device: call where it waits anyway)."""
        if self._skipped is None:
            return 0
        total = int(self._skipped)
        new, self._read = total - self._read, total
        return new


def gated(tensors: list[torch.Tensor], gates: Gates) -> list[torch.Tensor]:
    """``tensors`` times their device's verdict, as new tensors (one foreach per dtype)."""
    out = list(tensors)
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for k, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(k)
    for (device, dtype), ks in groups.items():  # a verdict of the tensors' dtype: fast path
        products = torch._foreach_mul([tensors[k] for k in ks], gates[device].to(dtype))
        for k, product in zip(ks, products, strict=True):
            out[k] = product
    return out
