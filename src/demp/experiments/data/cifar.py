"""CIFAR-10 from a local torchvision-format folder (``cifar-10-batches-py``).

The batches are Python pickles by format; they are read with an unpickler that only
admits the few numpy names such files contain, so no other code can run.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import DempError
from .augment import crop_flip
from .registry import DataMissing, RawData, register_dataset

HOW_TO_GET = (
    "CIFAR-10 cannot be downloaded here: copy the python version "
    "(cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, unpacked) "
    "to a folder and pass --data-dir to it (the folder holding cifar-10-batches-py, or that "
    "folder itself)"
)
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise DempError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _SafeUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise DempError(f"cannot read CIFAR batch {path}: {err}") from err
    if not isinstance(batch, dict):
        raise DempError(f"{path} is not a CIFAR batch (not a dict)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DempError(f"{path} is not a CIFAR batch (no data/labels)")
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DempError(f"{path}: data {data.shape} / {len(labels)} labels is not CIFAR-10")
    return data, np.asarray(labels, dtype=np.int64)


def load_cifar10(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load images (N, 3, 32, 32) in [0, 1] and labels (N,) of one CIFAR-10 split."""
    root = folder / "cifar-10-batches-py" if (folder / "cifar-10-batches-py").is_dir() else folder
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DataMissing(f"CIFAR-10: {missing[0]} not found in {root}. {HOW_TO_GET}")
    parts = [_read_batch(root / n) for n in names]
    data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    x = torch.from_numpy(data.astype(np.float32) / 255.0)
    return x, torch.from_numpy(np.concatenate([p[1] for p in parts]))


@register_dataset(
    "cifar10",
    "CIFAR-10, 32x32 colour images, 10 classes, crop + flip (a local folder: --data-dir)",
    needs_files=True,
)
def load_cifar10_dataset(
    data_dir: Path | None, train_size: int | None, test_size: int | None, seed: int
) -> RawData:
    """CIFAR-10 from ``data_dir`` (no default place), with the crop + flip augmentation."""
    if data_dir is None:
        raise DataMissing(f"cifar10 needs --data-dir (a torchvision-format folder). {HOW_TO_GET}")
    (tx, ty), (vx, vy) = (load_cifar10(data_dir, split) for split in ("train", "test"))
    return RawData(tx, ty, vx, vy, num_classes=10, augment=crop_flip)
