"""MNIST-1D, generated locally by the ``mnist1d`` package (its download path is never used)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch

from ...errors import DempError
from .registry import RawData, register_dataset


def make_mnist1d(num_samples: int = 5000, seed: int = 42) -> dict[str, torch.Tensor]:
    """Generate MNIST-1D: returns train/test tensors (N, 1, 40) and labels.

    The generator seeds numpy's and Python's global RNGs; their states are restored after.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:
        raise DempError("MNIST-1D needs the mnist1d package: pip install mnist1d") from err
    args = get_dataset_args()
    args.num_samples, args.seed = int(num_samples), int(seed)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    as_x = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32).unsqueeze(1)  # noqa: E731
    as_y = lambda a: torch.tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
    return {
        "train_x": as_x(data["x"]),
        "train_y": as_y(data["y"]),
        "test_x": as_x(data["x_test"]),
        "test_y": as_y(data["y_test"]),
    }


_TRAIN_SPLIT = 0.8  # the mnist1d generator's split: 80 % training, 20 % test


def samples_for(train_size: int | None, test_size: int | None) -> int:
    """Samples to generate (at least the package's 5000) so both splits are large enough."""
    train, test = train_size or 0, test_size or 0
    n = max(5000, math.ceil(train / _TRAIN_SPLIT), math.ceil(test / (1 - _TRAIN_SPLIT)))
    n = -(-n // 10) * 10  # the generator makes num_samples // 10 per class
    while int(n * _TRAIN_SPLIT) < train or n - int(n * _TRAIN_SPLIT) < test:
        n += 10
    return n


@register_dataset("mnist1d", "MNIST-1D, 40-sample 1-D signals, 10 classes (generated locally)")
def load_mnist1d(
    data_dir: Path | None, train_size: int | None, test_size: int | None, seed: int
) -> RawData:
    """Generate MNIST-1D with enough samples for both sizes (5000 by default, 20 % test).

    ``seed`` is the data seed (the package's canonical 42 for seed 0): the harness passes
    its ``data_seed``, the same for every training seed.
    """
    d = make_mnist1d(num_samples=samples_for(train_size, test_size), seed=42 + seed)
    return RawData(d["train_x"], d["train_y"], d["test_x"], d["test_y"], num_classes=10)
