"""Counting what a model costs: forward FLOPs per example and trainable parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .batches import Batch, batch_size, call_model, eval_mode


def forward_flops(model: nn.Module, example: Batch) -> float:
    """Return the forward FLOPs per example, counted by ``torch.utils.flop_counter``.

    The model runs once in eval mode under ``no_grad`` (its mode is restored). FLOPs are
    those PyTorch's counter attributes to matmuls and convolutions (2 per multiply-add).
    """
    from torch.utils.flop_counter import FlopCounterMode

    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        call_model(model, example)
    return counter.get_total_flops() / batch_size(example)


def output_positions(
    model: nn.Module,
    modules: dict[str, nn.Module],
    example: Batch,
    channel_dim: Callable[[nn.Module], int],
) -> dict[str, float]:
    """Return each module's output positions per example (pixels, tokens), in call order.

    A module's output of shape ``(N, C, H, W)`` has ``H * W`` positions per example (``C``
    along ``channel_dim(module)``), summed over the module's calls (a module the forward
    calls twice does its work twice). Measured in eval mode under ``no_grad``, ordered by
    each module's first call; modules the forward does not call are left out.
    """
    found: dict[str, float] = {}
    handles = []
    for path, module in modules.items():

        def hook(mod: nn.Module, _args: tuple, out: object, path: str = path) -> None:
            if isinstance(out, torch.Tensor):
                channels = out.shape[channel_dim(mod)] if out.dim() else 1
                found[path] = found.get(path, 0.0) + out.numel() / max(1, int(channels))

        handles.append(module.register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            call_model(model, example)
    finally:
        for handle in handles:
            handle.remove()
    n = batch_size(example)
    return {path: count / n for path, count in found.items()}


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Count parameter entries (only ``requires_grad`` ones by default)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def describe(model: nn.Module, example: Batch) -> dict[str, Any]:
    """Return trainable parameters and forward FLOPs per example, for reports."""
    return {"params": count_parameters(model), "flops": forward_flops(model, example)}


def count_trainable(model: nn.Module) -> int:
    """Count the trainable (``requires_grad``) parameter entries."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class CostLedger:
    """What a training run has cost so far, in FLOPs, for any method (DemP or not).

    ``initial`` holds the units, trainable parameters and forward FLOPs per example before
    any removal; ``flops_now`` is the forward FLOPs per example of the model now (call
    :meth:`remeasure` after a removal) and ``flops_sum`` their sum over the steps taken, so
    the training FLOPs are ``3 * batch * flops_sum`` (FACTS §1) and the ratio to the dense
    run over the same steps is ``flops_sum / (steps * initial flops)``.

    Masked (unstructured) methods pass :meth:`remeasure` the FLOPs a sparse kernel would
    skip: ``flops_now`` / ``flops_sum`` are then the theoretical sparse counts, and
    ``executed_now`` / ``executed_sum`` what dense hardware runs (the model's own shapes).
    Without masks the two are equal.

    Example:
        >>> costs = CostLedger.start(model, example, units=structure.num_units)
        >>> costs.step()                       # after every optimizer step
        >>> costs.remeasure(model)             # after every removal
    """

    example: Batch
    initial: dict[str, float]
    flops_now: float
    flops_sum: float = 0.0
    executed_now: float = 0.0
    executed_sum: float = 0.0

    @classmethod
    def start(cls, model: nn.Module, example: Batch, units: int) -> CostLedger:
        """Measure the model as it is now (one example)."""
        flops = forward_flops(model, example)
        initial = {"units": units, "params": count_trainable(model), "flops": flops}
        return cls(example, initial, flops, executed_now=flops)

    def step(self) -> None:
        """Count one optimizer step at the current cost."""
        self.flops_sum += self.flops_now
        self.executed_sum += self.executed_now

    def remeasure(self, model: nn.Module, skipped: float = 0.0) -> None:
        """Measure the forward FLOPs per example again (after the model or its masks changed).

        Args:
            model: The model.
            skipped: Forward FLOPs per example a sparse kernel would skip (masked weights).
        """
        self.executed_now = forward_flops(model, self.example)
        self.flops_now = self.executed_now - skipped

    def train_flops_ratio(self, steps: int, executed: bool = False) -> float:
        """Training FLOPs so far / those of the dense model over ``steps`` steps.

        ``executed``: what dense hardware ran instead of the theoretical (sparse) count.
        """
        dense = steps * self.initial["flops"]
        done = self.executed_sum if executed else self.flops_sum
        return done / dense if dense else 1.0

    def inference_flops_ratio(self, executed: bool = False) -> float:
        """Forward FLOPs per example now / initially (``executed``: on dense hardware)."""
        return (self.executed_now if executed else self.flops_now) / self.initial["flops"]

    def state_dict(self) -> dict[str, Any]:
        """The initial sizes and the FLOPs sums (the current FLOPs are measured again)."""
        return {
            "initial": dict(self.initial),
            "train_flops_sum": self.flops_sum,
            "executed_flops_sum": self.executed_sum,
        }

    def load_state_dict(self, state: dict[str, Any], model: nn.Module) -> None:
        """Restore :meth:`state_dict` and measure the (reloaded) model."""
        self.initial = dict(state["initial"])
        self.flops_sum = float(state["train_flops_sum"])
        self.executed_sum = float(state.get("executed_flops_sum", self.flops_sum))
        self.remeasure(model)
