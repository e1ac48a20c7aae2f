"""1-D convolutional networks for MNIST-1D (sequences of length 40, one channel)."""

from __future__ import annotations

import torch
from torch import nn


class CNN1d(nn.Module):
    """Three Conv1d-BN-activation layers (stride 2 after the first), flatten, linear.

    Args:
        num_classes: Outputs.
        in_channels: Input channels.
        length: Input sequence length.
        width: Channels of each convolution.
        act: Activation class.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        length: int = 40,
        width: int = 32,
        act: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i in range(3):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv1d(prev, width, 5, stride, 2, bias=False), nn.BatchNorm1d(width)]
            layers.append(act())
            prev = width
            length = (length + 2 * 2 - 5) // stride + 1
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of sequences."""
        return self.head(torch.flatten(self.features(x), 1))


class ResBlock1d(nn.Module):
    """Two Conv1d-BN with an identity shortcut."""

    def __init__(self, width: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv1d(width, width, 3, 1, 1, bias=False), nn.BatchNorm1d(width)
        self.conv2, self.bn2 = nn.Conv1d(width, width, 3, 1, 1, bias=False), nn.BatchNorm1d(width)
        self.act1, self.act2 = act(), act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))) + x)


class ResNet1d(nn.Module):
    """A small 1-D ResNet: stem, ``blocks`` residual blocks, global average pool, linear."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        width: int = 32,
        blocks: int = 3,
        act: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, width, 5, 1, 2, bias=False), nn.BatchNorm1d(width), act()
        )
        self.blocks = nn.Sequential(*(ResBlock1d(width, act) for _ in range(blocks)))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of sequences."""
        return self.head(self.blocks(self.stem(x)).mean(-1))
