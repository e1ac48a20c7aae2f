"""The model registry: a name mapped to its builder, a one-line description and its layout.

A model is one builder, registered where it is defined or composed::

    @register_model("my-net", "what it is, what input it takes")
    def build_my_net(num_classes, input_shape, width, activation) -> nn.Module:
        return MyNet(...)

``input_shape`` is one example's shape, ``width`` a multiplier (1.0 = the standard size)
and ``activation`` an ``nn.Module`` class. ``per_block=True`` marks a residual network
whose DemP runs give each block its own units by default (``--residual auto``).
:data:`MODELS` is filled when ``demp.experiments.models`` is imported; the CLI's
``--model`` choices are read from it, so a registered model is a ``demp train --model``
value at once. Registering a name twice is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ...errors import DempError

Builder = Callable[[int, tuple[int, ...], float, type[nn.Module]], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    Attributes:
        name: The ``--model`` value.
        builder: ``builder(num_classes, input_shape, width, activation_class)``.
        description: One line: the architecture and the input it takes.
        per_block: A residual network whose DemP runs default to per-block units.
    """

    name: str
    builder: Builder
    description: str
    per_block: bool = False


MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str, description: str, *, per_block: bool = False
) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` under ``name`` (see the module docs)."""

    def add(builder: Builder) -> Builder:
        if name in MODELS:
            raise DempError(f"model {name!r} is registered twice")
        MODELS[name] = ModelSpec(name, builder, description, per_block)
        return builder

    return add


def get_model(name: str) -> ModelSpec:
    """The registered model ``name``.

    Raises:
        DempError: Unknown name (the message lists the registered ones).
    """
    if name not in MODELS:
        raise DempError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name]


def model_names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(MODELS)
