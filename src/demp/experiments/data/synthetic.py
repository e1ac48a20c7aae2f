"""Synthetic images for tests and smoke runs: class prototypes plus Gaussian noise."""

from __future__ import annotations

from pathlib import Path

import torch

from .registry import RawData, register_dataset


def synthetic_images(
    n_train: int, n_test: int, seed: int = 0, shape: tuple[int, ...] = (1, 12, 12)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ten classes: a fixed random prototype per class plus Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(10, *shape, generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        return protos[y] + 1.5 * torch.randn(n, *shape, generator=g), y

    return (*draw(n_train), *draw(n_test))


@register_dataset("synthetic", "class prototypes + noise, 1x12x12, 10 classes (tests, smoke runs)")
def load_synthetic(
    data_dir: Path | None, train_size: int | None, test_size: int | None, seed: int
) -> RawData:
    """Generate ``train_size`` (default 2048) and ``test_size`` (default 512) examples."""
    tx, ty, vx, vy = synthetic_images(train_size or 2048, test_size or 512, seed)
    return RawData(tx, ty, vx, vy, num_classes=10)
