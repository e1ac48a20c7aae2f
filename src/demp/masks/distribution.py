"""Which weights may be masked, and how many each layer loses for a model-wide target.

The target is a **weight sparsity of the whole model**: the fraction of all trainable
parameters held at zero, as the structured methods' ``--target-metric weight`` counts it,
so that every method is compared at the same weight sparsity. The maskable weights are
the conv / linear weights except, by default, the first layer and the output layer
(JaxPruner's defaults); their zeros are spread by:

- ``uniform``: every maskable layer at the same sparsity;
- ``erk``: Erdős-Rényi-Kernel (Evci et al. 2020): density proportional to
  ``sum(shape) / prod(shape)``, layers that would exceed density 1 kept dense;
- ``global``: one ranking over all maskable weights (magnitude and SNIP only).

Per-layer counts are rounded by largest remainder, so the total is exact and each layer
is within one weight of its real-valued share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn
from torch.nn.modules.conv import _ConvNd

from ..accounting import output_positions
from ..batches import Batch
from ..errors import DempError

DISTRIBUTIONS = ("uniform", "erk", "global")


@dataclass(frozen=True)
class MaskedLayer:
    """A maskable weight: the module path, its shape, and its output positions per example."""

    path: str
    shape: tuple[int, ...]
    positions: float

    @property
    def size(self) -> int:
        """The number of weights."""
        return math.prod(self.shape)


def maskable_layers(model: nn.Module, example: Batch, dense_first_last: bool) -> list[MaskedLayer]:
    """The conv / linear layers in the order the forward calls them (first and last dense).

    Measured on ``example`` (eval mode, no grad): the call order, and each layer's output
    positions per example (pixels, tokens; summed over calls) for the FLOPs count. Frozen
    weights (``requires_grad=False``) are left dense: they are not trainable parameters.

    Raises:
        DempError: A weight that is computed (``torch.nn.utils.parametrize``, weight norm)
            or shared by two layers, or no weight left to mask.
    """
    convs_and_linears = _trainable_weights(model)
    positions = output_positions(
        model, convs_and_linears, example, lambda m: 1 if isinstance(m, _ConvNd) else -1
    )  # in call order
    layers = [
        MaskedLayer(p, tuple(convs_and_linears[p].weight.shape), pos)
        for p, pos in positions.items()
    ]
    if dense_first_last:
        layers = layers[1:-1]
    if not layers:
        hint = " (--dense-first-last false masks those two as well)" if dense_first_last else ""
        raise DempError(f"no conv / linear weight can be masked in this model{hint}")
    return layers


def _trainable_weights(model: nn.Module) -> dict[str, nn.Module]:
    """The conv / linear modules with a trainable weight of their own, by path."""
    found: dict[str, nn.Module] = {}
    owner: dict[int, str] = {}
    for path, m in model.named_modules():  # a module registered twice comes once
        if not isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            continue
        weight = dict(m.named_parameters(recurse=False)).get("weight")
        if weight is None:
            raise DempError(
                f"{path}.weight is computed (a parametrization or weight norm): unstructured "
                "masks hold parameters at zero and cannot mask it"
            )
        if not weight.requires_grad:
            continue
        if id(weight) in owner:
            raise DempError(
                f"{owner[id(weight)]} and {path} share one weight (tied weights): unstructured "
                "masks do not support shared weights"
            )
        owner[id(weight)], found[path] = path, m
    return found


def layer_counts(layers: list[MaskedLayer], zeros: int, distribution: str) -> dict[str, int] | None:
    """How many weights each layer holds at zero (None for ``global``: one ranking).

    Raises:
        DempError: An unknown distribution, or more zeros than maskable weights.
    """
    if distribution not in DISTRIBUTIONS:
        raise DempError(
            f"sparsity distribution must be one of {DISTRIBUTIONS}, got {distribution!r}"
        )
    total = sum(layer.size for layer in layers)
    if zeros > total:
        raise DempError(
            f"--target asks for {zeros} zero weights but only {total} can be masked (norms, "
            "biases and, with --dense-first-last, the first and output layers stay dense)"
        )
    if distribution == "global":
        return None
    if distribution == "uniform":
        shares = {layer.path: zeros * layer.size / total for layer in layers}
    else:
        shares = _erk_shares(layers, total - zeros)
    return _round_exactly(shares, zeros, {layer.path: layer.size for layer in layers})


def _erk_shares(layers: list[MaskedLayer], keep: int) -> dict[str, float]:
    """Zeros per layer of the ERK distribution keeping ``keep`` weights in all."""
    dense: set[str] = set()
    while True:
        free = [layer for layer in layers if layer.path not in dense]
        budget = keep - sum(layer.size for layer in layers if layer.path in dense)
        raw = {layer.path: sum(layer.shape) / layer.size for layer in free}
        scale = budget / sum(raw[layer.path] * layer.size for layer in free) if free else 0.0
        over = {path for path, r in raw.items() if r * scale > 1.0}
        if not over:
            break
        dense |= over
    return {
        layer.path: 0.0 if layer.path in dense else layer.size * (1.0 - raw[layer.path] * scale)
        for layer in layers
    }


def _round_exactly(shares: dict[str, float], zeros: int, sizes: dict[str, int]) -> dict[str, int]:
    """Round real shares to integers summing to ``zeros`` (largest remainder, within sizes)."""
    counts = {p: min(sizes[p], math.floor(s)) for p, s in shares.items()}
    order = sorted(shares, key=lambda p: shares[p] - math.floor(shares[p]), reverse=True)
    short = zeros - sum(counts.values())
    for path in order:  # the remainders add up to what is short, each under 1
        if short <= 0:
            break
        if counts[path] < sizes[path]:
            counts[path] += 1
            short -= 1
    return counts


def at_least(counts: dict[str, int], floor: dict[str, int]) -> dict[str, int]:
    """``counts`` raised to ``floor`` in every layer, the same total kept.

    Largest-remainder rounding can give a layer one zero fewer at a higher total (the
    Alabama paradox); a schedule that only adds zeros raises such a layer back to what it
    holds and takes the difference from the layers furthest above theirs.

    Raises:
        DempError: ``floor`` holds more zeros than ``counts``.
    """
    if sum(floor.values()) > sum(counts.values()):
        raise DempError("the masks already hold more zeros than the new counts")
    raised = {p: max(c, floor[p]) for p, c in counts.items()}
    excess = sum(raised.values()) - sum(counts.values())
    while excess > 0:
        path = max(raised, key=lambda p: raised[p] - floor[p])
        raised[path] -= 1
        excess -= 1
    return raised
