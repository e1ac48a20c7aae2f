"""CIFAR-style ResNets: 3x3 stride-1 stem, no max-pool (the paper's ResNet-18 recipe, FACTS §1).

``width`` scales every stage (64 is the standard ResNet; 16 is the CPU calibration size).
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection."""

    expansion = 1

    def __init__(
        self, cin: int, planes: int, stride: int = 1, act: type[nn.Module] = nn.ReLU
    ) -> None:
        super().__init__()
        self.act1, self.act2 = act(), act()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        h = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(h)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with a residual connection."""

    expansion = 4

    def __init__(
        self, cin: int, planes: int, stride: int = 1, act: type[nn.Module] = nn.ReLU
    ) -> None:
        super().__init__()
        self.act1, self.act2, self.act3 = act(), act(), act()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = _shortcut(cin, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        h = self.act1(self.bn1(self.conv1(x)))
        h = self.act2(self.bn2(self.conv2(h)))
        return self.act3(self.bn3(self.conv3(h)) + self.shortcut(x))


def _shortcut(cin: int, out: int, stride: int) -> nn.Module:
    if stride == 1 and cin == out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))


class ResNet(nn.Module):
    """A CIFAR-style ResNet.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: Blocks per stage.
        num_classes: Outputs of the classifier.
        in_channels: Input image channels.
        width: Channels of the first stage (doubled at each later stage).
        act: Activation class.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, ...],
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 64,
        act: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act = act()
        stages, cin = [], width
        for i, n in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, 2 if (i > 0 and j == 0) else 1, act))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of images."""
        h = self.layers(self.act(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))


def resnet18(
    num_classes: int = 10, in_channels: int = 3, width: int = 64, act: type[nn.Module] = nn.ReLU
) -> ResNet:
    """Return a CIFAR-style ResNet-18."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, width, act)


def resnet34(
    num_classes: int = 10, in_channels: int = 3, width: int = 64, act: type[nn.Module] = nn.ReLU
) -> ResNet:
    """Return a CIFAR-style ResNet-34."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels, width, act)


def resnet50(
    num_classes: int = 10, in_channels: int = 3, width: int = 64, act: type[nn.Module] = nn.ReLU
) -> ResNet:
    """Return a CIFAR-style ResNet-50."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, width, act)
