"""Deciding which units are dead: ``find_dead`` and its result, :class:`DeadUnits`.

A group channel is dead iff it is dead at every consumer layer, over every probe example.
Criteria (``criterion=``):

- ``"zero"``: ``max |x| <= eps`` with ``eps = 0`` by default: exactly zero, so removal is
  exact. This is what DemP prunes with (paper §3; FACTS §1).
- ``"eps"``: ``max |x| <= eps`` (default ``eps = 0.01``) for GELU/SiLU units, which
  saturate near zero but are never exactly zero. Removal is then approximate.
- ``"nonpositive"``: ``max x <= eps`` (default 0): a Leaky ReLU unit that is never
  positive. Its output is not zero, so removing it is approximate.

Deciding never changes the model (its mode is restored; hooks are removed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..batches import batch_size, call_model, device_dtype, iterate_probe, to_device
from ..errors import DempError, ProbeError
from ..ops.rules import LayerRules, side_size
from ..structure import Structure, StructureOptions, build_checked_structure
from .monitor import ActivationMonitor
from .norm_stats import NormStats, norm_statistics

Criterion = Literal["zero", "eps", "nonpositive"]
_DEFAULT_EPS = {"zero": 0.0, "eps": 1e-2, "nonpositive": 0.0}


@dataclass
class GroupDeath:
    """What is dead in one channel group.

    Attributes:
        name: The group's name (its first producing layer).
        width: Units in the group now.
        dead: Bool mask of shape ``(width,)``: dead at every consumer.
        score: Activity of each unit (largest statistic over its consumers); the guards
            keep the most active units first.
        per_consumer: Consumer path -> bool mask of units dead at that consumer.
        spread: Standard deviation of each unit's values over the probe (examples and
            positions; the largest over its consumers): what it tells its consumers.
            Measured only when asked (``find_dead(spreads=True)``), else None.

    """

    name: str
    width: int
    dead: torch.Tensor
    score: torch.Tensor
    per_consumer: dict[str, torch.Tensor]
    spread: torch.Tensor | None = None

    @property
    def num_dead(self) -> int:
        """Number of dead units in the group."""
        return int(self.dead.sum())

    @property
    def indices(self) -> torch.Tensor:
        """Indices of the dead units."""
        return torch.nonzero(self.dead).reshape(-1)


@dataclass
class DeadUnits:
    """The result of :func:`find_dead`: dead units per group, and groups left out.

    Attributes:
        groups: Group name -> :class:`GroupDeath`.
        skipped: Group name -> why it cannot be cut (not examined).
        structure: The structure the decision refers to.
        criterion: The death test used.
        eps: Its threshold.
        num_examples: Probe examples seen.

    """

    groups: dict[str, GroupDeath]
    skipped: dict[str, str]
    structure: Structure
    criterion: Criterion
    eps: float
    num_examples: int

    @property
    def num_units(self) -> int:
        """Units in the prunable groups."""
        return sum(g.width for g in self.groups.values())

    @property
    def num_dead(self) -> int:
        """Dead units over all prunable groups."""
        return sum(g.num_dead for g in self.groups.values())

    def removal_masks(self) -> dict[str, torch.Tensor]:
        """Group name -> bool mask of the units to remove (what :func:`demp.remove_units` takes)."""
        return {n: g.dead for n, g in self.groups.items()}

    def unit_spreads(self) -> dict[str, torch.Tensor]:
        """Group name -> each unit's standard deviation over the probe (:class:`GroupDeath`)."""
        return {n: g.spread for n, g in self.groups.items() if g.spread is not None}

    def unit_scores(self) -> dict[str, torch.Tensor]:
        """Group name -> activity of each unit (the guards keep the most active)."""
        return {n: g.score for n, g in self.groups.items()}

    def as_dict(self) -> dict[str, list[int]]:
        """Return group name -> list of dead unit indices."""
        return {name: g.indices.tolist() for name, g in self.groups.items()}

    def __str__(self) -> str:
        lines = [f"{self.num_dead}/{self.num_units} units dead ({self.criterion}, eps={self.eps})"]
        lines += [f"  {n}: {g.num_dead}/{g.width}" for n, g in self.groups.items()]
        lines += [f"  skipped {n}: {why}" for n, why in self.skipped.items()]
        return "\n".join(lines)


def find_dead(
    model: nn.Module,
    probe: Any,
    *,
    criterion: Criterion = "zero",
    eps: float | None = None,
    max_examples: int | None = 512,
    structure: Structure | None = None,
    ignored_layers: Iterable[nn.Module | str] = (),
    allow_inexact_norm: bool = False,
    verify: bool = True,
    sync: Callable[[torch.Tensor], None] | None = None,
    rules: LayerRules | None = None,
    stats: NormStats = "running",
    spreads: bool = False,
) -> DeadUnits:
    """Find the dead units of every prunable channel group. Changes nothing.

    Example:
        >>> dead = demp.find_dead(model, probe_loader)
        >>> print(dead)          # per group: dead/total, and skipped groups with reasons

    Args:
        model: The model (any device; probe batches are moved to it).
        probe: A tensor, an iterable of tensors / ``(input, label)`` tuples / dicts, or a
            DataLoader. Use unaugmented training examples (paper §3).
        criterion: ``"zero"``, ``"eps"`` or ``"nonpositive"`` (see module docs).
        eps: The criterion's threshold (default: 0, 0.01, 0).
        max_examples: Stop after this many examples (None: the whole probe).
        structure: A structure from a previous call (built by tracing if None).
        ignored_layers: Extra layers whose outputs are never cut.
        allow_inexact_norm: Accept LayerNorm/GroupNorm over the channels.
        verify: When building the structure, trial-cut each group once and skip the ones
            whose cut would not be exact (see :mod:`demp.structure.verify`).
        sync: Called in place on every statistics tensor, in the same order on every
            process, before deciding (e.g. an all-reduce with MAX so that all DDP ranks
            decide the same dead set from their own probe shards).
        rules: When building the structure, the layer table (:mod:`demp.ops.rules`) saying
            which layer types can be cut and how (default: the built-in one).
        stats: The BatchNorm statistics the check judges with (:mod:`demp.death.norm_stats`):
            ``"running"`` (eval mode, the paper's), ``"batch"`` (each probe batch's own,
            as in training) or ``"reestimate"`` (recomputed over the probe).
        spreads: Also measure each unit's standard deviation (``unit_spreads()``).

    Returns:
        A :class:`DeadUnits`.

    """
    eps = threshold(criterion, eps)
    if structure is None:
        options = StructureOptions.of(ignored_layers, allow_inexact_norm, verify, rules)
        structure = build_checked_structure(model, probe, options)
    else:
        structure.check_matches(model)
    consumers = {s.path for g in structure.groups.values() for s in g.consumers}
    monitor = ActivationMonitor(model, consumers, structure.rules, moments=spreads)
    seen = _observe(model, probe, max_examples, monitor, stats)
    values, spread = _statistics(model, monitor, criterion, sorted(consumers), sync, structure)
    groups = {n: _group_death(g, values, eps, spread) for n, g in structure.groups.items()}
    return DeadUnits(groups, dict(structure.skipped), structure, criterion, eps, seen)


def threshold(criterion: str, eps: float | None) -> float:
    """The criterion's threshold (its default when ``eps`` is None), or a clear error."""
    if criterion not in _DEFAULT_EPS:
        raise DempError(f"criterion must be one of {sorted(_DEFAULT_EPS)}, got {criterion!r}")
    eps = _DEFAULT_EPS[criterion] if eps is None else float(eps)
    if eps < 0:
        raise DempError(f"eps must be >= 0, got {eps}")
    return eps


def _statistics(
    model: nn.Module,
    monitor: ActivationMonitor,
    criterion: str,
    consumers: list[str],
    sync: Callable[[torch.Tensor], None] | None,
    structure: Structure,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The criterion's statistic and the spreads (if measured) per consumer, synced."""
    stats = monitor.max_val if criterion == "nonpositive" else monitor.max_abs
    spread = {path: monitor.spread(path) for path in monitor.moments}
    if sync is not None:
        stats = _synced(model, consumers, stats, sync, structure.rules)
        if monitor.keep_moments:  # with MAX too: every rank ranks the units alike
            spread = _synced(model, consumers, spread, sync, structure.rules)
    return stats, spread


def _synced(
    model: nn.Module,
    paths: list[str],
    stats: dict[str, torch.Tensor],
    sync: Callable[[torch.Tensor], None],
    rules: LayerRules,
) -> dict[str, torch.Tensor]:
    """Apply ``sync`` to each consumer's statistics; a consumer never called counts as +inf."""
    out = {}
    for path in paths:
        tensor = stats.get(path)
        if tensor is None:
            module = model.get_submodule(path)
            device = device_dtype(module)[0]
            tensor = torch.full((side_size(module, "in", rules),), float("inf"), device=device)
        sync(tensor)
        out[path] = tensor
    return out


def _observe(
    model: nn.Module,
    probe: Any,
    max_examples: int | None,
    monitor: ActivationMonitor,
    stats: NormStats,
) -> int:
    """Run the probe with the chosen statistics under ``monitor``; return examples seen."""
    device, dtype = device_dtype(model)

    def run_probe() -> int:
        return sum(
            _run(model, to_device(b, device, dtype)) for b in iterate_probe(probe, max_examples)
        )

    with norm_statistics(model, stats, run_probe), monitor, torch.no_grad():
        return run_probe()


def _run(model: nn.Module, batch: Any) -> int:
    try:
        call_model(model, batch)
    except (RuntimeError, TypeError) as err:
        raise ProbeError(f"the model failed on a probe batch: {err}") from err
    return batch_size(batch)


def _group_death(
    group: Any, stats: dict[str, torch.Tensor], eps: float, spreads: dict[str, torch.Tensor]
) -> GroupDeath:
    per_consumer, scores = {}, []
    for slot in group.consumers:
        values = _per_unit(group, slot, stats)
        per_consumer[slot.path] = values <= eps
        scores.append(values)
    dead = torch.stack(list(per_consumer.values())).all(0)
    score = torch.stack(scores).amax(0)
    spread = None
    if spreads:
        spread = torch.stack([_per_unit(group, s, spreads) for s in group.consumers]).amax(0)
    return GroupDeath(group.name, group.width, dead, score, per_consumer, spread)


def _per_unit(group: Any, slot: Any, stats: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each unit's largest statistic at one consumer (+inf where it never ran: unknown)."""
    if slot.path not in stats:  # never called on the probe: nothing is known to be dead
        return torch.full((group.width,), float("inf"), dtype=torch.float64)
    return stats[slot.path].to("cpu", torch.float64)[slot.index].amax(1)
