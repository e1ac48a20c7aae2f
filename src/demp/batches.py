"""Model inputs and modes: what a user passes as a probe set, how it is fed to a model.

A probe is a tensor (one batch), an iterable of tensors, of ``(input, label)`` tuples, or of
dicts (passed to the model as keyword arguments), or a DataLoader yielding any of those.
:func:`eval_mode` puts a model in eval mode and restores every module's mode after;
:func:`device_dtype` is the one place that says where a model lives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .errors import DempError, ProbeError

Batch = torch.Tensor | tuple[torch.Tensor, ...] | dict[str, Any]


def batch_size(batch: Batch) -> int:
    """Return the number of examples in a model-input batch."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.ndim > 0 else 1
    values = batch.values() if isinstance(batch, Mapping) else batch
    for value in values:
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return value.shape[0]
    raise ProbeError("probe batch holds no tensor with a batch dimension")


def take(batch: Batch, n: int) -> Batch:
    """Return the first ``n`` examples of a batch (tensors sliced along dim 0)."""
    if isinstance(batch, torch.Tensor):
        return batch[:n]
    if isinstance(batch, Mapping):
        return {k: _take_value(v, n) for k, v in batch.items()}
    return tuple(_take_value(v, n) for v in batch)


def _take_value(value: Any, n: int) -> Any:
    return value[:n] if isinstance(value, torch.Tensor) and value.ndim > 0 else value


def to_device(batch: Batch, device: torch.device, dtype: torch.dtype | None = None) -> Batch:
    """Move a batch's tensors to ``device``; floating tensors are cast to ``dtype`` if given."""

    def move(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        if dtype is not None and value.is_floating_point():
            return value.to(device=device, dtype=dtype)
        return value.to(device)

    if isinstance(batch, torch.Tensor):
        return move(batch)
    if isinstance(batch, Mapping):
        return {k: move(v) for k, v in batch.items()}
    return tuple(move(v) for v in batch)


def model_input(item: Any) -> Batch:
    """Extract the model input from one probe item.

    A tensor or dict is the input itself; a tuple or list is ``(input, label, ...)`` and its
    first element is the input.
    """
    if isinstance(item, (torch.Tensor, Mapping)):
        return item
    if isinstance(item, (tuple, list)) and item:
        return model_input(item[0]) if not isinstance(item[0], (tuple, list)) else tuple(item[0])
    raise ProbeError(
        f"cannot use a {type(item).__name__} as a probe batch: expected a tensor, a dict, "
        "or an (input, label) tuple"
    )


def call_model(model: nn.Module, batch: Batch) -> Any:
    """Run ``model`` on a batch: ``model(x)``, ``model(*xs)`` or ``model(**kwargs)``."""
    if isinstance(batch, torch.Tensor):
        return model(batch)
    if isinstance(batch, Mapping):
        return model(**batch)
    return model(*batch)


def output_tensors(output: Any) -> list[torch.Tensor]:
    """Every tensor in a model's output (a tensor, or dicts / tuples / lists of them)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for v in output.values() for t in output_tensors(v)]
    if isinstance(output, (tuple, list)):
        return [t for v in output for t in output_tensors(v)]
    return []


def iterate_probe(probe: Any, max_examples: int | None = 512) -> Iterator[Batch]:
    """Yield model-input batches from ``probe`` until ``max_examples`` examples are seen.

    Raises:
        ProbeError: If the probe yields nothing, or an item is not a usable batch.

    """
    if max_examples is not None and max_examples <= 0:
        raise ProbeError(f"max_examples must be positive, got {max_examples}")
    items: Iterable[Any] = (
        [probe] if isinstance(probe, (torch.Tensor, Mapping)) else _as_iterable(probe)
    )
    seen = 0
    for item in items:
        batch = model_input(item)
        n = batch_size(batch)
        if max_examples is not None and seen + n > max_examples:
            batch, n = take(batch, max_examples - seen), max_examples - seen
        if n == 0:
            continue
        yield batch
        seen += n
        if max_examples is not None and seen >= max_examples:
            break
    if seen == 0:
        raise ProbeError("the probe set is empty: pass at least one example")


def _as_iterable(probe: Any) -> Iterable[Any]:
    if isinstance(probe, Iterable):
        return probe
    raise ProbeError(
        f"cannot iterate over a probe of type {type(probe).__name__}: pass a tensor, "
        "an iterable of batches, or a DataLoader"
    )


def first_batch(probe: Any, n: int = 2) -> Batch:
    """Return up to ``n`` examples from the first batch of a probe (for tracing)."""
    batch = next(iterate_probe(probe, None))
    return take(batch, min(n, batch_size(batch)))


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; each module's previous ``training`` flag restored after."""
    with kept_modes(model):
        model.eval()
        yield


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[None]:
    """Restore each module's ``training`` flag on exit, whatever happened inside."""
    modes = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    """Return the device of the model's first parameter and its dtype (None if not float).

    Raises:
        DempError: The model has no parameters.
    """
    for p in model.parameters():
        return p.device, (p.dtype if p.is_floating_point() else None)
    raise DempError("the model has no parameters")
