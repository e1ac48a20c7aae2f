"""Rows of the layer table for layer types of other libraries, matched by name.

demp imports none of these libraries: each row names its type by qualified name
(:attr:`~demp.ops.table.LayerRule.type_names`), so the row applies whenever a model holds
such a layer and costs nothing otherwise.

- ``transformers.pytorch_utils.Conv1D`` (GPT-2's MLP and attention projections): a
  linear layer whose weight is stored transposed, ``(in, out)``; ``nf`` and ``nx`` are
  its output and input sizes.
- Frozen batch norms (torchvision's ``FrozenBatchNorm2d``, timm's
  ``FrozenBatchNormAct2d``): per-channel, with buffers instead of parameters.
- timm's filter response norms (``FilterResponseNormAct2d``, ``FilterResponseNormTlu2d``):
  each channel normalized by its own mean square over the spatial dims, so per-channel too.

timm's other norm-act layers subclass PyTorch's norms (``BatchNormAct2d`` is a
``BatchNorm2d``, ``GroupNormAct`` a ``GroupNorm``, ``LayerNormAct2d`` a ``LayerNorm``) and
take those rows; ``RmsNorm2d`` and the EvoNorms normalize over the channels and have none.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import Any

from torch import nn

from .table import LayerRule


def _conv1d_sizes(module: nn.Module) -> Mapping[str, Any]:
    nx, nf = module.weight.shape
    return {"nf": nf, "nx": nx}


HF_CONV1D = LayerRule(
    types=(),
    type_names=("transformers.pytorch_utils.Conv1D",),
    kind="root",
    out_tensors=(("weight", 1), ("bias", 0)),
    in_tensors=(("weight", 0),),
    size_attributes=("nf", "nx"),
    sync=_conv1d_sizes,
    out_size=attrgetter("nf"),
    in_size=attrgetter("nx"),
    feature_dim=-1,
)


def _no_sizes(_module: nn.Module) -> Mapping[str, Any]:
    return {}


def _channels(module: nn.Module) -> int:
    return module.weight.shape[0]


FROZEN_BATCH_NORM = LayerRule(
    types=(),
    type_names=(
        "torchvision.ops.misc.FrozenBatchNorm2d",
        "timm.layers.norm_act.FrozenBatchNormAct2d",
    ),
    kind="norm",
    out_tensors=(("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)),
    size_attributes=(),
    sync=_no_sizes,
    out_size=_channels,
)

FILTER_RESPONSE_NORM = LayerRule(
    types=(),
    type_names=(
        "timm.layers.filter_response_norm.FilterResponseNormAct2d",
        "timm.layers.filter_response_norm.FilterResponseNormTlu2d",
    ),
    kind="norm",
    out_tensors=(("weight", 0), ("bias", 0), ("tau", 0)),
    size_attributes=(),
    sync=_no_sizes,
    out_size=_channels,
)

THIRD_PARTY_ROWS: tuple[LayerRule, ...] = (HF_CONV1D, FROZEN_BATCH_NORM, FILTER_RESPONSE_NORM)
