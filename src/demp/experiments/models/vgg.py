"""VGG-16 with BatchNorm, CIFAR style (one hidden linear layer after the features)."""

from __future__ import annotations

import torch
from torch import nn

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    """Conv-BN-activation stacks with max-pooling (ceil mode, so 28x28 inputs work too).

    Args:
        num_classes: Outputs.
        in_channels: Input channels.
        width: Channels of the first stage (64 is the standard VGG-16).
        act: Activation class.
        input_size: Input height/width, to size the first linear layer.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 64,
        act: type[nn.Module] = nn.ReLU,
        input_size: int = 32,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev, size = in_channels, input_size
        for item in VGG16:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                size = -(-size // 2)
                continue
            channels = int(item) * width // 64
            layers += [nn.Conv2d(prev, channels, 3, padding=1, bias=False)]
            layers += [nn.BatchNorm2d(channels), act()]
            prev = channels
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(prev * size * size, prev)
        self.act = act()
        self.fc2 = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of images."""
        return self.fc2(self.act(self.fc1(torch.flatten(self.features(x), 1))))
