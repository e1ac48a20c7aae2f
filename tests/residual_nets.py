"""Residual nets for the decouple_residuals tests.

``TVBasicBlock`` / ``TVBottleneck`` copy the forward of torchvision's ResNet blocks
(``identity = x; ...; if self.downsample is not None: identity = self.downsample(x);
out += identity; out = self.relu(out)``, with ``downsample`` an ``nn.Sequential`` of a 1x1
conv and a BatchNorm); torchvision is not installed here. ``TVResNet`` stacks them behind a
torchvision-style stem (conv, BN, ReLU, max-pool) and an average-pooled linear head.
"""

from __future__ import annotations

import torch
from torch import nn

import demp
from demp.experiments.models import resnet as zoo


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class TVBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class TVBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class TVResNet(nn.Module):
    """torchvision's ResNet layout (``_make_layer``), small."""

    def __init__(self, block=TVBasicBlock, layers=(2, 2), width=4, num_classes=5):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages = []
        for i, n in enumerate(layers):
            stages.append(self._make_layer(block, width * 2**i, n, 1 if i == 0 else 2))
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layers(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomize_bn(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm random affine parameters and running statistics (eval outputs
    then differ from channel to channel)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.5)
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


BLOCKS = {
    "zoo-basic": (zoo.BasicBlock, "zoo"),
    "zoo-bottleneck": (zoo.Bottleneck, "zoo"),
    "tv-basic": (TVBasicBlock, "tv"),
    "tv-bottleneck": (TVBottleneck, "tv"),
}
DEAD = -1e6  # a BatchNorm bias that keeps a unit below zero whatever its shortcut adds


def make(kind: str, layers: tuple[int, ...], width: int, seed: int) -> nn.Module:
    """A float64 residual net in eval mode, BatchNorms randomized (channels all differ)."""
    block, family = BLOCKS[kind]
    torch.manual_seed(seed)
    if family == "zoo":
        model = zoo.ResNet(block, layers, num_classes=5, width=width)
    else:
        model = TVResNet(block, layers, width=width)
    randomize_bn(model.double(), torch.Generator().manual_seed(seed))
    return model.eval()


def inputs(seed: int, n: int = 4, side: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed)).double()


def out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def layout(model: nn.Module) -> list[tuple[str, int]]:
    return [(p, id(m)) for p, m in model.named_modules()]


def kill(model: nn.Module, group: demp.ChannelGroup, units) -> None:
    """Make ``units`` of ``group`` exactly zero after their ReLU, on any input.

    Producing convs get zero rows, BatchNorms scale 0 and bias -1e6 (more negative than
    any shortcut adds); selections are left alone.
    """
    idx = torch.as_tensor(list(units), dtype=torch.long)
    with torch.no_grad():
        for slot in group.slots:
            module = model.get_submodule(slot.path)
            if slot.role == "consumer" or isinstance(module, demp.ChannelSelect):
                continue
            rows = slot.index[idx].reshape(-1)
            module.weight[rows] = 0
            if module.bias is not None:
                module.bias[rows] = DEAD


def group_with(structure: demp.Structure, path: str, role: str = "producer") -> str:
    (name,) = [
        n
        for n, g in structure.groups.items()
        if any((s.path, s.role) == (path, role) for s in g.slots)
    ]
    return name
