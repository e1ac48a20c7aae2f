"""The row and table types of the layer table (the rows themselves are in :mod:`.rules`).

A :class:`LayerRule` says everything demp needs to cut one layer type; a :class:`LayerRules`
is an immutable table of rows, looked up by module type. Extending the table returns a new
one (:meth:`LayerRules.with_rule`): nothing here is global or mutable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

Side = Literal["out", "in"]
Kind = Literal["root", "norm"]
TensorDims = tuple[tuple[str, int], ...]


def _supported(_module: nn.Module, _path: str, _allow_inexact_norm: bool) -> str | None:
    return None


def _never(_module: nn.Module) -> bool:
    return False


@dataclass(frozen=True)
class LayerRule:
    """One row of the layer table: everything demp needs to cut one layer type.

    Attributes:
        types: The module types the row matches (subclasses too; the most specific row of
            a table wins, see :meth:`LayerRules.rule_for`).
        type_names: Types the row matches by qualified name (``"module.QualName"``), for
            layers of other libraries that demp must not import (subclasses too).
        kind: ``"root"``: a conv/linear layer whose output channels start a group and whose
            input channels are cut when a group it consumes shrinks. ``"norm"``: a
            per-channel layer with one channel dimension (``"in"`` and ``"out"`` alike).
        out_tensors: ``(tensor name, dim)`` pairs sliced on the ``"out"`` side.
        in_tensors: Pairs sliced on the ``"in"`` side (root rows; norm rows reuse
            ``out_tensors``). Tensors that are None on an instance are skipped.
        size_attributes: The attributes that hold the layer's sizes; trial cuts save and
            restore exactly these.
        sync: Module -> new values of (some of) ``size_attributes``, read from the module's
            (already sliced) tensors.
        out_size: Module -> current size of its ``"out"`` channel dimension.
        in_size: Module -> size of its ``"in"`` dimension (root rows; None: ``out_size``).
        feature_dim: The dim of the layer's input that holds its features (where monitoring,
            gates and trial zeroing act): -1 for a linear layer, 1 for channels-first.
        reason: ``(module, path, allow_inexact_norm)`` -> why this instance cannot sit in a
            channel group, or None if it can.
        depthwise: Module -> True if this root instance has a single channel dimension (a
            depthwise convolution): it is then cut like a norm layer.
        inexact: Its instances change statistics over channels when one goes (accepted only
            with ``allow_inexact_norm``; trial cuts then check crashes and shapes only).
        scale_types: Types whose ``weight`` the regularizer's ``"norm_scale"`` target
            penalizes (None: the row's own types for a norm row, none for a root row).

    """

    types: tuple[type[nn.Module], ...]
    kind: Kind
    out_tensors: TensorDims
    size_attributes: tuple[str, ...]
    sync: Callable[[nn.Module], Mapping[str, Any]]
    out_size: Callable[[nn.Module], int]
    in_tensors: TensorDims = ()
    in_size: Callable[[nn.Module], int] | None = None
    feature_dim: int = 1
    reason: Callable[[nn.Module, str, bool], str | None] = _supported
    depthwise: Callable[[nn.Module], bool] = _never
    inexact: bool = False
    scale_types: tuple[type[nn.Module], ...] | None = None
    type_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("root", "norm"):
            raise ValueError(f"LayerRule.kind must be 'root' or 'norm', got {self.kind!r}")
        if not all(isinstance(t, type) for t in self.types):
            raise ValueError("LayerRule.types must be a tuple of module types")
        if not self.types and not self.type_names:
            raise ValueError("a LayerRule needs module types or type_names to match")
        if self.kind == "root" and (not self.in_tensors or self.in_size is None):
            raise ValueError("a root LayerRule needs in_tensors and in_size")

    def single_dim(self, module: nn.Module) -> bool:
        """Return True if ``module`` has one channel dimension (a norm or depthwise layer)."""
        return self.kind == "norm" or self.depthwise(module)

    def tensors(self, module: nn.Module, side: Side) -> list[tuple[str, int]]:
        """List the ``(tensor name, dim)`` pairs of ``module`` to slice on ``side``."""
        if side == "in" and not self.single_dim(module):
            names = self.in_tensors
        else:
            names = self.out_tensors
        return [(n, d) for n, d in names if getattr(module, n, None) is not None]

    def size(self, module: nn.Module, side: Side) -> int:
        """Return the current size of ``module``'s channel dimension on ``side``."""
        if side == "in" and self.in_size is not None:
            return self.in_size(module)
        return self.out_size(module)

    def synced(self, module: nn.Module) -> None:
        """Set ``module``'s size attributes from its tensors (only those in the row)."""
        values = dict(self.sync(module))
        extra = sorted(set(values) - set(self.size_attributes))
        if extra:
            raise TypeError(
                f"the rule of {type(module).__name__} sets {extra}, which are not among its "
                f"size_attributes {list(self.size_attributes)} (trial cuts would not restore them)"
            )
        for name, value in values.items():
            setattr(module, name, value)


@dataclass(frozen=True)
class LayerRules:
    """An immutable table of :class:`LayerRule` rows, looked up by module type.

    Example:
        >>> from demp.ops.rules import DEFAULT_RULES
        >>> rules = DEFAULT_RULES.with_rule(LayerRule(types=(Scale,), kind="norm", ...))
        >>> demp.find_dead(model, probe, rules=rules)

    Attributes:
        rows: The rows; a later row's types override an earlier row's.

    """

    rows: tuple[LayerRule, ...]
    _by_type: dict[type[nn.Module], LayerRule] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, LayerRule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple(self.rows))
        by_type = {t: row for row in self.rows for t in row.types}  # private, never mutated
        object.__setattr__(self, "_by_type", by_type)
        by_name = {n: row for row in self.rows for n in row.type_names}
        object.__setattr__(self, "_by_name", by_name)

    def with_rule(self, row: LayerRule) -> LayerRules:
        """Return a new table with ``row`` added (it overrides rows for the same types)."""
        return LayerRules((*self.rows, row))

    def rule_for(self, module: nn.Module) -> LayerRule | None:
        """Return the row of the most specific type in ``module``'s MRO, or None.

        A type matches by identity or, for rows with ``type_names``, by qualified name.
        """
        for cls in type(module).__mro__:
            row = self._by_type.get(cls)
            if row is None and self._by_name:
                row = self._by_name.get(f"{cls.__module__}.{cls.__qualname__}")
            if row is not None:
                return row
        return None

    def kind_of(self, module: nn.Module) -> Kind | None:
        """Return the kind of ``module``'s row, or None without a row."""
        row = self.rule_for(module)
        return row.kind if row is not None else None

    def root_types(self) -> tuple[type[nn.Module], ...]:
        """The types of the root rows (their output channels start a group)."""
        return tuple(t for t, row in self._by_type.items() if row.kind == "root")

    def norm_types(self) -> tuple[type[nn.Module], ...]:
        """The types of the norm (per-channel) rows."""
        return tuple(t for t, row in self._by_type.items() if row.kind == "norm")

    def scale_types(self) -> tuple[type[nn.Module], ...]:
        """The types whose ``weight`` is a per-channel scale for the regularizer."""
        found: list[type[nn.Module]] = []
        for row in self.rows:
            own = row.types if row.kind == "norm" else ()
            found.extend(t for t in (own if row.scale_types is None else row.scale_types))
        return tuple(dict.fromkeys(found))

    def size_attributes(self) -> tuple[str, ...]:
        """Every size attribute of every row, each once."""
        return tuple(dict.fromkeys(a for row in self.rows for a in row.size_attributes))

    def require(self, module: nn.Module) -> LayerRule:
        """Return ``module``'s row, or raise TypeError if it has none."""
        row = self.rule_for(module)
        if row is None:
            raise TypeError(f"no surgery rule for {type(module).__name__}")
        return row
