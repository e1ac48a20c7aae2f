"""The registry of training methods: one place that the CLI, configs and tests read from.

A method is one file: it defines a frozen dataclass of its options (each field's
``metadata["help"]`` becomes its ``demp train`` flag's help, ``metadata["choices"]`` its
choices) and registers a factory with :func:`register_method`::

    @dataclass(frozen=True)
    class MyOptions:
        target: float = field(default=0.5, metadata={"help": "target neuron sparsity"})

    @register_method("my-method", options=MyOptions, summary="what it does")
    def build(options: MyOptions, ctx: MethodContext) -> Method:
        return MyMethod(options, ctx)

The registry is filled when the method modules are imported (``demp.methods`` imports the
built-in ones), as timm's model registry is; registering a name twice is an error.
Options are flat: a TOML run file or ``demp train`` flag ``--target 0.8`` sets the field
``target`` of whichever registered methods have one. DemP itself keeps its nested
``[demp]`` table (:class:`~demp.DemPConfig`), marked by ``demp_config=True``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import DempError
from .base import Method, MethodContext

Factory = Callable[[Any, MethodContext], Method]


@dataclass(frozen=True)
class MethodSpec:
    """One registered method.

    Attributes:
        name: The ``--method`` value.
        factory: ``factory(options, ctx)`` returns the :class:`Method` for a run.
        options: Frozen dataclass of the method's flat options (None: it has none).
        summary: One line for ``demp train --help`` and the docs.
        demp_config: The method reads the run's ``[demp]`` table (a DemPConfig) instead.
        family: ``"structured"`` (removes units) or ``"unstructured"`` (masks weights).
    """

    name: str
    factory: Factory
    options: type | None = None
    summary: str = ""
    demp_config: bool = False
    family: str = "structured"

    def make_options(self, values: dict[str, Any]) -> Any:
        """Build this method's options from flat values (keys of other methods are ignored).

        Raises:
            DempError: A value the options dataclass refuses.
        """
        if self.options is None:
            return None
        names = {f.name for f in dataclasses.fields(self.options)}
        given = {k: v for k, v in values.items() if k in names}
        for key, value in given.items():  # every method: no NaN or infinity, whatever its ranges
            if isinstance(value, float) and not math.isfinite(value):
                flag = "--" + key.replace("_", "-")
                raise DempError(f"invalid options for method {self.name!r}: {flag} must be a "
                                f"finite number, got {value}")  # fmt: skip
        try:
            return self.options(**given)
        except (TypeError, ValueError) as err:
            raise DempError(f"invalid options for method {self.name!r}: {err}") from err


_REGISTRY: dict[str, MethodSpec] = {}
FAMILIES = ("structured", "unstructured")


def register_method(
    name: str,
    *,
    options: type | None = None,
    summary: str = "",
    demp_config: bool = False,
    family: str = "structured",
) -> Callable[[Factory], Factory]:
    """Register a method factory under ``name`` (a decorator).

    Raises:
        DempError: ``name`` is taken, ``options`` is not a frozen dataclass, or ``family``
            is not ``"structured"`` or ``"unstructured"``.
    """
    if family not in FAMILIES:
        raise DempError(f"method {name!r}: family must be one of {FAMILIES}, got {family!r}")
    if options is not None and not (
        dataclasses.is_dataclass(options) and options.__dataclass_params__.frozen  # type: ignore[attr-defined]
    ):
        raise DempError(f"method {name!r}: options must be a frozen dataclass")

    def decorate(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise DempError(f"a method named {name!r} is already registered")
        _REGISTRY[name] = MethodSpec(name, factory, options, summary, demp_config, family)
        return factory

    return decorate


def method_names(family: str | None = None) -> tuple[str, ...]:
    """The registered method names (of one family, if given), in registration order."""
    return tuple(n for n, spec in _REGISTRY.items() if family in (None, spec.family))


def get_method(name: str) -> MethodSpec:
    """A registered method by name, or a clear error listing the choices."""
    if name not in _REGISTRY:
        raise DempError(f"method must be one of {', '.join(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]


def option_fields() -> dict[str, dataclasses.Field]:
    """Every flat option of every registered method, by name.

    The CLI makes one flag per name (the first definition's help and type); each method
    applies its own default to the options not given.
    """
    out: dict[str, dataclasses.Field] = {}
    for spec in _REGISTRY.values():
        for f in dataclasses.fields(spec.options) if spec.options else ():
            out.setdefault(f.name, f)
    return out


@contextmanager
def unregistered_after() -> Iterator[None]:
    """Forget every method registered inside the block (for tests that register toys)."""
    before = dict(_REGISTRY)
    try:
        yield
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(before)
