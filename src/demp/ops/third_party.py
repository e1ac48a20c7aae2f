"""Rows of the layer table for layer types of other libraries, matched by name.

demp imports none of these libraries: each row names its type by qualified name
(:attr:`~demp.ops.table.LayerRule.type_names`), so the row applies whenever a model holds
such a layer and costs nothing otherwise.

- ``transformers.pytorch_utils.Conv1D`` (GPT-2's MLP and attention projections): a
  linear layer whose weight is stored transposed, ``(in, out)``; ``nf`` and ``nx`` are
  its output and input sizes.
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

THIRD_PARTY_ROWS: tuple[LayerRule, ...] = (HF_CONV1D,)
