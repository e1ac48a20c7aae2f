"""The surgery table: how each supported layer type is cut along a channel dimension.

One row per layer type. A *side* is ``"out"`` (the channels a layer produces; for
normalization layers and depthwise convolutions the only channel dimension) or ``"in"``
(the input channels a convolution or linear layer consumes). Adding a layer type means
adding one branch to :func:`tensors_on_side` and one to :func:`sync_attributes`.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

Side = Literal["out", "in"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def is_depthwise(module: nn.Module) -> bool:
    """Return True for a depthwise convolution (``groups == in_channels == out_channels > 1``)."""
    return (
        isinstance(module, _CONV)
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


def has_rule(module: nn.Module) -> bool:
    """Return True if demp knows how to cut (and reshape) this layer type."""
    return isinstance(module, (nn.Linear, *_CONV, *_BN, nn.LayerNorm, nn.GroupNorm))


def unsupported_reason(module: nn.Module, path: str, allow_inexact_norm: bool) -> str | None:
    """Say why a module cannot sit in a channel group, or return None if it can.

    Args:
        module: The module found in a channel group.
        path: Its dotted path in the model (for the message).
        allow_inexact_norm: Accept LayerNorm / single-group GroupNorm over the channels,
            whose statistics a removed channel changes (removal is then not exact).

    """
    kind = type(module).__name__
    if isinstance(module, (*_BN, nn.LayerNorm, nn.GroupNorm)) and not any(
        getattr(module, n, None) is not None for n in ("weight", "running_mean")
    ):
        return f"{path} ({kind}) has neither affine parameters nor running statistics"
    if isinstance(module, _CONV):
        if module.groups > 1 and not is_depthwise(module):
            return f"{path} ({kind}) is a grouped convolution (groups={module.groups})"
        if module.padding_mode != "zeros" and module.groups > 1:
            return f"{path} ({kind}) uses padding_mode={module.padding_mode!r}"
        return None
    if isinstance(module, (nn.Linear, *_BN)):
        return None
    if isinstance(module, nn.GroupNorm):
        if module.num_groups == module.num_channels:
            return None
        if module.num_groups == 1 and allow_inexact_norm:
            return None
        return (
            f"{path} (GroupNorm, {module.num_groups} groups) normalizes over the channels: "
            "removing a channel changes its statistics"
            + ("" if module.num_groups > 1 else " (pass allow_inexact_norm=True to accept)")
        )
    if isinstance(module, nn.LayerNorm):
        if len(module.normalized_shape) == 1 and allow_inexact_norm:
            return None
        return (
            f"{path} (LayerNorm) normalizes over the channels: removing a channel changes its "
            "statistics (pass allow_inexact_norm=True to accept)"
        )
    return f"{path} ({kind}) is not a layer demp can cut"


def tensors_on_side(module: nn.Module, side: Side) -> list[tuple[str, int]]:
    """List ``(tensor name, dim)`` pairs to slice when cutting ``module`` on ``side``.

    Parameters and buffers that are None (no bias, no affine) are left out.
    """
    if isinstance(module, (nn.Linear, *_CONV)):
        if side == "in" and not is_depthwise(module):
            names = [("weight", 1)]
        else:
            names = [("weight", 0), ("bias", 0)]
    elif isinstance(module, _BN):
        names = [("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)]
    elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        names = [("weight", 0), ("bias", 0)]
    else:  # pragma: no cover - guarded by unsupported_reason
        raise TypeError(f"no surgery rule for {type(module).__name__}")
    return [(n, d) for n, d in names if getattr(module, n, None) is not None]


def side_size(module: nn.Module, side: Side) -> int:
    """Return the current size of ``module``'s channel dimension on ``side``."""
    if isinstance(module, nn.Linear):
        return module.out_features if side == "out" else module.in_features
    if isinstance(module, _CONV):
        return module.out_channels if side == "out" else module.in_channels
    if isinstance(module, _BN):
        return module.num_features
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    if isinstance(module, nn.LayerNorm):
        return module.normalized_shape[0]
    raise TypeError(f"no surgery rule for {type(module).__name__}")  # pragma: no cover


def sync_attributes(module: nn.Module) -> None:
    """Make a module's size attributes agree with its (already sliced) tensors."""
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, _CONV):
        depthwise = is_depthwise(module)
        module.out_channels = module.weight.shape[0]
        if depthwise:
            module.in_channels = module.groups = module.out_channels
        else:
            module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, _BN):
        ref = module.weight if module.weight is not None else module.running_mean
        module.num_features = ref.shape[0]
    elif isinstance(module, nn.GroupNorm):
        per_channel = module.num_groups == module.num_channels
        module.num_channels = module.weight.shape[0]
        if per_channel:
            module.num_groups = module.num_channels
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = (module.weight.shape[0],)
    else:
        raise TypeError(f"no surgery rule for {type(module).__name__}")
