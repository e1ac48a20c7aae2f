"""The dataset registry: a name mapped to its loader and a one-line description.

A dataset is one loader function, registered in the module that reads or makes its data::

    @register_dataset("my-data", "what it is, where its files come from", needs_files=True)
    def load_my_data(data_dir, train_size, test_size, seed) -> RawData:
        return RawData(train_x, train_y, test_x, test_y, num_classes=10)

The loader returns unnormalized tensors; :func:`~demp.experiments.data.load_dataset` takes
the subsets and normalizes. ``train_size``/``test_size`` are hints (a generated dataset makes
no more than it needs), ``data_dir`` is ``--data-dir`` (None: the dataset's default place).
A loader whose files are absent raises :class:`DataMissing`, saying how to get them.

:data:`DATASETS` is filled when ``demp.experiments.data`` imports its modules, as timm's model
registry is; registering a name twice is an error. The CLI's ``--dataset`` choices are read
from it, so a registered dataset is a ``demp train --dataset`` value at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from ...errors import DempError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class DataMissing(DempError):  # noqa: N818 (reads as a condition, like FileNotFound)
    """A dataset's files are not on this machine (the message says how to get them)."""


@dataclass(frozen=True)
class RawData:
    """What a loader returns: tensors in [0, 1] or raw units, not yet normalized or cut.

    Attributes:
        train_x: Training inputs (N, C, ...), float32.
        train_y: Training labels (N,), int64.
        test_x: Test inputs, same example shape.
        test_y: Test labels.
        num_classes: Number of classes (None: the largest training label + 1).
        augment: Training augmentation ``augment(batch, generator)`` (None: none).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int | None = None
    augment: Augment | None = None


class Loader(Protocol):
    """Signature of a dataset loader (see the module docs)."""

    def __call__(
        self, data_dir: Path | None, train_size: int | None, test_size: int | None, seed: int
    ) -> RawData:
        """Load or generate the dataset."""
        ...


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    Attributes:
        name: The ``--dataset`` value.
        loader: The function that loads it.
        description: One line: what it is and where it comes from.
        needs_files: It reads files that may be absent (:class:`DataMissing`); False for
            generated datasets, which load on every machine.
    """

    name: str
    loader: Loader
    description: str
    needs_files: bool = False


class DatasetRegistry(Mapping[str, DatasetSpec]):
    """Dataset names mapped to their :class:`DatasetSpec`, in registration order.

    A read-only mapping except for :meth:`register` and :meth:`unregister`; iterating it
    yields the names, so it serves as argparse ``choices`` that follow registrations.
    """

    def __init__(self) -> None:
        self._specs: dict[str, DatasetSpec] = {}

    def register(
        self, name: str, description: str, *, needs_files: bool = False
    ) -> Callable[[Loader], Loader]:
        """Register a loader under ``name`` (a decorator; the function is returned as is).

        Args:
            name: The dataset's name (the ``--dataset`` value).
            description: One line saying what it is and where its data come from.
            needs_files: The loader reads files that may be absent.

        Raises:
            DempError: The name is taken or empty, or the description is not one line.
        """
        if not name or name != name.strip():
            raise DempError(f"invalid dataset name {name!r}")
        if not description.strip() or "\n" in description:
            raise DempError(f"dataset {name!r}: the description must be one non-empty line")

        def decorate(loader: Loader) -> Loader:
            if name in self._specs:
                raise DempError(f"a dataset named {name!r} is already registered")
            self._specs[name] = DatasetSpec(name, loader, description, needs_files)
            return loader

        return decorate

    def unregister(self, name: str) -> DatasetSpec:
        """Remove a dataset and return its spec (for tests that register toys).

        Raises:
            DempError: No dataset of that name is registered.
        """
        self._check(name)
        return self._specs.pop(name)

    def lookup(self, name: str) -> DatasetSpec:
        """The dataset of that name.

        Raises:
            DempError: Unknown name (the message lists the registered ones).
        """
        self._check(name)
        return self._specs[name]

    def describe(self) -> str:
        """One ``name: description`` line per dataset."""
        return "\n".join(f"{s.name}: {s.description}" for s in self._specs.values())

    def __getitem__(self, name: str) -> DatasetSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"DatasetRegistry({', '.join(self._specs)})"

    def _check(self, name: str) -> None:
        if name not in self._specs:
            known = ", ".join(self._specs) or "none"
            raise DempError(f"unknown dataset {name!r}; registered datasets: {known}")


DATASETS = DatasetRegistry()
register_dataset = DATASETS.register
