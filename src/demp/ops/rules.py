"""The layer table: how each supported layer type is cut along a channel dimension.

Everything demp knows about a layer type is one :class:`~demp.ops.table.LayerRule` row
(module types, kind, tensors per side, size attributes and how to recompute them, the
feature dim of its input, why an instance cannot be cut); this module holds the built-in
rows, :data:`DEFAULT_RULES`, and the lookups every other module reads. A *side* is
``"out"`` (the channels a layer produces; for norm layers and depthwise convolutions the
only channel dimension) or ``"in"`` (the input channels a conv/linear layer consumes).

Supporting a new layer type is one new row, passed explicitly::

    rules = DEFAULT_RULES.with_rule(LayerRule(types=(Scale,), kind="norm", ...))
    dead = demp.find_dead(model, probe, rules=rules)  # the structure keeps the table

The table is immutable; the lookups below take an optional ``rules`` and fall back to
:data:`DEFAULT_RULES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import Any

from torch import nn

from .select import ChannelSelect, selection_sizes
from .table import Kind, LayerRule, LayerRules, Side
from .third_party import THIRD_PARTY_ROWS

__all__ = [
    "DEFAULT_RULES", "Kind", "LayerRule", "LayerRules", "Side", "feature_dim", "has_rule",
    "is_depthwise", "norm_types", "root_types", "rule_for", "side_size", "size_attributes",
    "sync_attributes", "tensors_on_side", "unsupported_reason",
]  # fmt: skip

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def is_depthwise(module: nn.Module) -> bool:
    """Return True for a depthwise convolution (``groups == in_channels == out_channels > 1``)."""
    return (
        isinstance(module, _CONV)
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


# --- why an instance cannot be cut ------------------------------------------------------


def _stateless_reason(module: nn.Module, path: str) -> str | None:
    if any(getattr(module, n, None) is not None for n in ("weight", "running_mean")):
        return None
    return f"{path} ({type(module).__name__}) has neither affine parameters nor running statistics"


def _conv_reason(module: nn.Module, path: str, _allow_inexact_norm: bool) -> str | None:
    kind = type(module).__name__
    if module.groups > 1 and not is_depthwise(module):
        return f"{path} ({kind}) is a grouped convolution (groups={module.groups})"
    if module.padding_mode != "zeros" and module.groups > 1:
        return f"{path} ({kind}) uses padding_mode={module.padding_mode!r}"
    return None


def _bn_reason(module: nn.Module, path: str, _allow_inexact_norm: bool) -> str | None:
    return _stateless_reason(module, path)


def _group_norm_reason(module: nn.Module, path: str, allow_inexact_norm: bool) -> str | None:
    stateless = _stateless_reason(module, path)
    if stateless or module.num_groups == module.num_channels:
        return stateless
    if module.num_groups == 1 and allow_inexact_norm:
        return None
    return (
        f"{path} (GroupNorm, {module.num_groups} groups) normalizes over the channels: "
        "removing a channel changes its statistics"
        + ("" if module.num_groups > 1 else " (pass allow_inexact_norm=True to accept)")
    )


def _layer_norm_reason(module: nn.Module, path: str, allow_inexact_norm: bool) -> str | None:
    stateless = _stateless_reason(module, path)
    if stateless or (len(module.normalized_shape) == 1 and allow_inexact_norm):
        return stateless
    return (
        f"{path} (LayerNorm) normalizes over the channels: removing a channel changes its "
        "statistics (pass allow_inexact_norm=True to accept)"
    )


# --- size attributes recomputed from the (sliced) tensors --------------------------------


def _linear_sizes(module: nn.Module) -> Mapping[str, Any]:
    out_features, in_features = module.weight.shape
    return {"out_features": out_features, "in_features": in_features}


def _conv_sizes(module: nn.Module) -> Mapping[str, Any]:
    out = module.weight.shape[0]
    if is_depthwise(module):  # read before any attribute changes
        return {"out_channels": out, "in_channels": out, "groups": out}
    return {"out_channels": out, "in_channels": module.weight.shape[1] * module.groups}


def _bn_sizes(module: nn.Module) -> Mapping[str, Any]:
    ref = module.weight if module.weight is not None else module.running_mean
    return {"num_features": ref.shape[0]}


def _group_norm_sizes(module: nn.Module) -> Mapping[str, Any]:
    channels = module.weight.shape[0]
    if module.num_groups == module.num_channels:  # per-channel stays per-channel
        return {"num_channels": channels, "num_groups": channels}
    return {"num_channels": channels}


def _layer_norm_sizes(module: nn.Module) -> Mapping[str, Any]:
    return {"normalized_shape": (module.weight.shape[0],)}


def _layer_norm_size(module: nn.Module) -> int:
    return module.normalized_shape[0]


# --- the table ------------------------------------------------------------------------

_AFFINE = (("weight", 0), ("bias", 0))

BUILTIN_ROWS: tuple[LayerRule, ...] = (
    LayerRule(
        types=(nn.Linear,),
        kind="root",
        out_tensors=_AFFINE,
        in_tensors=(("weight", 1),),
        size_attributes=("in_features", "out_features"),
        sync=_linear_sizes,
        out_size=attrgetter("out_features"),
        in_size=attrgetter("in_features"),
        feature_dim=-1,
    ),
    LayerRule(
        types=_CONV,
        kind="root",
        out_tensors=_AFFINE,
        in_tensors=(("weight", 1),),
        size_attributes=("in_channels", "out_channels", "groups"),
        sync=_conv_sizes,
        out_size=attrgetter("out_channels"),
        in_size=attrgetter("in_channels"),
        feature_dim=1,
        reason=_conv_reason,
        depthwise=is_depthwise,
    ),
    LayerRule(
        types=_BN,
        kind="norm",
        out_tensors=(*_AFFINE, ("running_mean", 0), ("running_var", 0)),
        size_attributes=("num_features",),
        sync=_bn_sizes,
        out_size=attrgetter("num_features"),
        feature_dim=1,
        reason=_bn_reason,
        # the regularizer has always penalized every BatchNorm-like scale (SyncBatchNorm,
        # InstanceNorm...), also those demp does not cut
        scale_types=(nn.modules.batchnorm._NormBase,),
    ),
    LayerRule(
        types=(nn.LayerNorm,),
        kind="norm",
        out_tensors=_AFFINE,
        size_attributes=("normalized_shape",),
        sync=_layer_norm_sizes,
        out_size=_layer_norm_size,
        feature_dim=-1,
        reason=_layer_norm_reason,
        inexact=True,
    ),
    LayerRule(
        types=(nn.GroupNorm,),
        kind="norm",
        out_tensors=_AFFINE,
        size_attributes=("num_channels", "num_groups"),
        sync=_group_norm_sizes,
        out_size=attrgetter("num_channels"),
        feature_dim=1,
        reason=_group_norm_reason,
        inexact=True,
    ),
    LayerRule(  # a residual block's identity shortcut (demp.decouple_residuals)
        types=(ChannelSelect,),
        kind="root",
        out_tensors=(("selection", 0),),
        in_tensors=(("selection", 1),),
        size_attributes=("in_channels", "out_channels"),
        sync=selection_sizes,
        out_size=attrgetter("out_channels"),
        in_size=attrgetter("in_channels"),
        feature_dim=1,
    ),
)

DEFAULT_RULES = LayerRules(BUILTIN_ROWS + THIRD_PARTY_ROWS)
"""The built-in table: Linear, Conv1d/2d/3d, BatchNorm1d/2d/3d, LayerNorm, GroupNorm,
:class:`~demp.ops.select.ChannelSelect` (the cuttable identity shortcut), and the layers of
other libraries in :mod:`demp.ops.third_party` (Hugging Face's ``Conv1D``)."""


# --- lookups --------------------------------------------------------------------------


def _table(rules: LayerRules | None) -> LayerRules:
    return DEFAULT_RULES if rules is None else rules


def rule_for(module: nn.Module, rules: LayerRules | None = None) -> LayerRule | None:
    """Return the row that cuts ``module`` (None if the table has none)."""
    return _table(rules).rule_for(module)


def has_rule(module: nn.Module, rules: LayerRules | None = None) -> bool:
    """Return True if demp knows how to cut (and reshape) this layer type."""
    return _table(rules).rule_for(module) is not None


def feature_dim(module: nn.Module, rules: LayerRules | None = None) -> int:
    """Return the dim of ``module``'s input that holds its features (-1 linear, 1 conv).

    A module without a row gets 1 (channels first).
    """
    row = _table(rules).rule_for(module)
    return row.feature_dim if row is not None else 1


def root_types(rules: LayerRules | None = None) -> tuple[type[nn.Module], ...]:
    """Return the types whose output channels start a group (conv and linear by default)."""
    return _table(rules).root_types()


def norm_types(rules: LayerRules | None = None) -> tuple[type[nn.Module], ...]:
    """Return the per-channel (normalization) layer types of the table."""
    return _table(rules).norm_types()


def size_attributes(rules: LayerRules | None = None) -> tuple[str, ...]:
    """Return every size attribute the table's rows name."""
    return _table(rules).size_attributes()


def unsupported_reason(
    module: nn.Module, path: str, allow_inexact_norm: bool, rules: LayerRules | None = None
) -> str | None:
    """Say why a module cannot sit in a channel group, or return None if it can.

    Args:
        module: The module found in a channel group.
        path: Its dotted path in the model (for the message).
        allow_inexact_norm: Accept LayerNorm / single-group GroupNorm over the channels,
            whose statistics a removed channel changes (removal is then not exact).
        rules: The layer table (default: :data:`DEFAULT_RULES`).

    """
    row = _table(rules).rule_for(module)
    if row is None:
        return f"{path} ({type(module).__name__}) is not a layer demp can cut"
    return row.reason(module, path, allow_inexact_norm)


def tensors_on_side(
    module: nn.Module, side: Side, rules: LayerRules | None = None
) -> list[tuple[str, int]]:
    """List ``(tensor name, dim)`` pairs to slice when cutting ``module`` on ``side``.

    Parameters and buffers that are None (no bias, no affine) are left out.
    """
    return _table(rules).require(module).tensors(module, side)


def side_size(module: nn.Module, side: Side, rules: LayerRules | None = None) -> int:
    """Return the current size of ``module``'s channel dimension on ``side``."""
    return _table(rules).require(module).size(module, side)


def sync_attributes(module: nn.Module, rules: LayerRules | None = None) -> None:
    """Make a module's size attributes agree with its (already sliced) tensors."""
    _table(rules).require(module).synced(module)
