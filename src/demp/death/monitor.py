"""Activation statistics at the inputs of the layers that consume each channel group.

:class:`ActivationMonitor` is a context manager: on entry it adds a forward pre-hook to
every consumer layer, on exit it removes them. Each hook keeps, per input feature, the
largest ``|x|`` and the largest ``x`` seen (and, when asked, the count, sum and sum of
squares: the standard deviation, :meth:`ActivationMonitor.spread`), reduced over the batch
and every spatial/token dimension (a conv's features are its dim 1, a linear layer's its last dim:
the ``feature_dim`` of the layer's row in :mod:`demp.ops.rules`).
Statistics live here, never on the user's modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

import torch
from torch import nn

from ..errors import ProbeError
from ..ops.rules import LayerRules, feature_dim


class ActivationMonitor:
    """Record per-feature ``max |x|`` and ``max x`` at the inputs of the given layers.

    Example:
        >>> with ActivationMonitor(model, ["fc2"]) as mon:
        ...     model(x)
        >>> mon.max_abs["fc2"].shape  # one value per input feature of fc2

    Args:
        model: The model whose layers are watched.
        paths: Dotted paths of the conv/linear layers to watch (on their input side).
        rules: The layer table that says where each layer's input features are (default:
            the built-in one).
        moments: Also keep each feature's count, sum and sum of squares
            (:meth:`spread`).

    """

    def __init__(
        self,
        model: nn.Module,
        paths: Iterable[str],
        rules: LayerRules | None = None,
        *,
        moments: bool = False,
    ) -> None:
        self.model = model
        self.paths = sorted(set(paths))
        self.rules = rules
        self.keep_moments = moments
        self.max_abs: dict[str, torch.Tensor] = {}
        self.max_val: dict[str, torch.Tensor] = {}
        self.moments: dict[str, tuple[int, torch.Tensor, torch.Tensor]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> ActivationMonitor:
        try:
            for path in self.paths:
                module = self.model.get_submodule(path)
                self._handles.append(module.register_forward_pre_hook(self._hook(path, module)))
        except Exception:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, path: str, module: nn.Module):  # noqa: ANN202 - torch hook signature
        dim = feature_dim(module, self.rules)

        def hook(_module: nn.Module, args: tuple) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                raise ProbeError(f"{path} was called without a tensor input")
            with torch.no_grad():
                x = args[0].detach()
                x = x.unsqueeze(0) if x.ndim == 1 else x  # amax over no dims reduces all
                dims = [d for d in range(x.ndim) if d != dim % x.ndim]
                top, bottom = x.amax(dims), x.amin(dims)  # no copy of the activation
                self._update(path, torch.maximum(top, bottom.neg()), top)
                if self.keep_moments:
                    self._accumulate(path, x, dims, x.numel() // max(1, x.shape[dim % x.ndim]))

        return hook

    def _accumulate(self, path: str, x: torch.Tensor, dims: list[int], count: int) -> None:
        """Add the batch's count (values per feature), sum and sum of squares (float64)."""
        wide = torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64
        total = x.sum(dims, dtype=wide)
        squares = x.square().sum(dims, dtype=wide)
        if path in self.moments:
            n, s, q = self.moments[path]
            total, squares, count = s + total, q + squares, n + count
        self.moments[path] = (count, total, squares)

    def spread(self, path: str) -> torch.Tensor:
        """Standard deviation of each input feature of ``path`` over everything seen."""
        count, total, squares = self.moments[path]
        mean = total / max(count, 1)
        return (squares / max(count, 1) - mean.square()).clamp_min(0).sqrt()

    def _update(self, path: str, max_abs: torch.Tensor, max_val: torch.Tensor) -> None:
        if path in self.max_abs:
            torch.maximum(self.max_abs[path], max_abs, out=self.max_abs[path])
            torch.maximum(self.max_val[path], max_val, out=self.max_val[path])
        else:
            self.max_abs[path] = max_abs
            self.max_val[path] = max_val
