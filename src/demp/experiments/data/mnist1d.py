"""MNIST-1D, generated locally by the ``mnist1d`` package (its download path is never used)."""

from __future__ import annotations

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


@register_dataset("mnist1d", "MNIST-1D, 40-sample 1-D signals, 10 classes (generated locally)")
def load_mnist1d(
    data_dir: Path | None, train_size: int | None, test_size: int | None, seed: int
) -> RawData:
    """Generate MNIST-1D: enough samples for ``train_size`` (at least 5000), 20 % of them test."""
    d = make_mnist1d(num_samples=max(5000, (train_size or 4000) * 5 // 4), seed=42 + seed)
    return RawData(d["train_x"], d["train_y"], d["test_x"], d["test_y"], num_classes=10)
