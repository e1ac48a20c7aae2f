"""Small architectures for the tests, and helpers to force units dead."""

from __future__ import annotations

import torch
from torch import nn

import demp


class MLP(nn.Module):
    def __init__(self, widths=(8, 12, 6), in_dim=5, out=3, act=nn.ReLU):
        super().__init__()
        layers, prev = [], in_dim
        for w in widths:
            layers += [nn.Linear(prev, w), act()]
            prev = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, out)

    def forward(self, x):
        return self.head(self.body(x))


class VGG(nn.Module):
    """Conv-BN-ReLU stages with max-pool, then flatten -> linear -> linear."""

    def __init__(self, channels=(6, 8), in_ch=3, size=8, hidden=10, out=4):
        super().__init__()
        layers, prev = [], in_ch
        for c in channels:
            layers += [
                nn.Conv2d(prev, c, 3, padding=1),
                nn.BatchNorm2d(c),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            prev = c
        self.features = nn.Sequential(*layers)
        side = size // 2 ** len(channels)
        self.fc1 = nn.Linear(prev * side * side, hidden)
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.features(x).flatten(1))))


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, c, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.short = nn.Sequential()
        if stride != 1 or cin != c:
            self.short = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.short(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, c, stride=1):
        super().__init__()
        out = 4 * c
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.conv3, self.bn3 = nn.Conv2d(c, out, 1, bias=False), nn.BatchNorm2d(out)
        self.short = nn.Sequential()
        if stride != 1 or cin != out:
            self.short = nn.Sequential(
                nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        return torch.relu(self.bn3(self.conv3(h)) + self.short(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stride-1 stem, no max-pool."""

    def __init__(self, block=Basic, blocks=(2, 2), width=4, in_ch=3, out=5):
        super().__init__()
        self.stem = nn.Conv2d(in_ch, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        stages, cin = [], width
        for i, n in enumerate(blocks):
            c = width * 2**i
            for j in range(n):
                stages.append(block(cin, c, 2 if (i > 0 and j == 0) else 1))
                cin = c * block.expansion
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, out)

    def forward(self, x):
        h = self.layers(torch.relu(self.bn(self.stem(x))))
        return self.fc(h.mean((2, 3)))


class Separable(nn.Module):
    """Depthwise-separable convolutions and a concat of two branches."""

    def __init__(self, c=6, out=3):
        super().__init__()
        self.a = nn.Conv2d(3, c, 3, padding=1)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.bn = nn.BatchNorm2d(c)
        self.b = nn.Conv2d(3, c - 2, 1)
        self.mix = nn.Conv2d(2 * c - 2, c, 1)
        self.fc = nn.Linear(c, out)

    def forward(self, x):
        h = torch.relu(self.a(x))
        h = torch.relu(self.bn(self.dw(h)))
        h = torch.cat([h, torch.relu(self.b(x))], 1)
        h = torch.relu(self.mix(h))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))


class TinyViT(nn.Module):
    """Patch embedding, one pre-norm transformer block, mean-pooled head."""

    def __init__(self, dim=8, hidden=16, heads=2, act=nn.ReLU, out=3):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, 4)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), act(), nn.Linear(hidden, dim)
        self.head = nn.Linear(dim, out)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        h = self.norm1(t)
        t = t + self.attn(h, h, h, need_weights=False)[0]
        t = t + self.fc2(self.act(self.fc1(self.norm2(t))))
        return self.head(t.mean(1))


def kill(model: nn.Module, group: demp.ChannelGroup, units) -> None:
    """Make ``units`` of ``group`` output exactly zero for any input (before a ReLU).

    Producers and depthwise convs get zero rows and bias -1, BatchNorms weight 0 and bias -1.
    """
    idx = torch.as_tensor(list(units), dtype=torch.long)
    with torch.no_grad():
        for slot in group.slots:
            if slot.role == "consumer" or not len(idx):
                continue
            module = model.get_submodule(slot.path)
            rows = slot.index[idx].reshape(-1)
            module.weight[rows] = 0
            if module.bias is not None:
                module.bias[rows] = -1


def eval_out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was = model.training
    model.eval()
    with torch.no_grad():
        y = model(x)
    model.train(was)
    return y


class ChunkNet(nn.Module):
    """A cross-stage-partial block: one conv's channels chunked into ``parts`` equal parts;
    the first joins the block's output by concatenation, the others go through convs."""

    def __init__(self, c: int = 6, parts: int = 2):
        super().__init__()
        self.parts = parts
        self.stem = nn.Conv2d(3, parts * c, 3, padding=1)
        self.bn = nn.BatchNorm2d(parts * c)
        self.branches = nn.ModuleList(nn.Conv2d(c, 4, 3, padding=1) for _ in range(parts - 1))
        self.bn2 = nn.BatchNorm2d(4)
        self.mix = nn.Conv2d(c + 4, 5, 1)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        first, *rest = torch.relu(self.bn(self.stem(x))).chunk(self.parts, dim=1)
        y = sum(b(r) for b, r in zip(self.branches, rest, strict=True))
        y = torch.relu(self.bn2(y))
        return self.head(torch.relu(self.mix(torch.cat([first, y], 1))).mean((2, 3)))


class GluNet(nn.Module):
    """A gated linear unit: ``a * sigmoid(b)`` with ``a, b`` the two halves of one layer."""

    def __init__(self, c: int = 6):
        super().__init__()
        self.fc = nn.Linear(5, 2 * c)
        self.out = nn.Linear(c, 3)

    def forward(self, x):
        a, b = self.fc(x).chunk(2, dim=-1)
        return self.out(a * torch.sigmoid(b))


class FixedSplitNet(nn.Module):
    """A split whose sizes are written into the code: ``"fixed"`` (``split(c)``),
    ``"unequal"`` (``split([c - 1, c + 1])``) or ``"slice"`` (``x[:, :c]``)."""

    def __init__(self, how: str, c: int = 6):
        super().__init__()
        self.how, self.c = how, c
        self.stem = nn.Conv2d(3, 2 * c, 3, padding=1)
        width = {"fixed": c, "unequal": c - 1, "slice": c}[how]
        self.a = nn.Conv2d(width, 4, 1)
        self.b = nn.Conv2d(2 * c - width, 4, 1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        if self.how == "fixed":
            p, q = y.split(self.c, dim=1)
        elif self.how == "unequal":
            p, q = y.split([self.c - 1, self.c + 1], dim=1)
        else:
            p, q = y[:, : self.c], y[:, self.c :]
        return self.head((self.a(p) + self.b(q)).mean((2, 3)))


class CspNet(nn.Module):
    """A cross-stage-partial block with ``chunk``: one half joins the output directly, the
    other goes through a residual block first (a part that feeds a layer and a sum)."""

    def __init__(self, c: int = 6):
        super().__init__()
        self.stem = nn.Conv2d(3, 2 * c, 3, padding=1)
        self.bn = nn.BatchNorm2d(2 * c)
        self.block = nn.Conv2d(c, c, 3, padding=1)
        self.mix = nn.Conv2d(2 * c, 5, 1)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        xs, xb = torch.relu(self.bn(self.stem(x))).chunk(2, dim=1)
        xb = xb + torch.relu(self.block(xb))
        return self.head(torch.relu(self.mix(torch.cat([xs, xb], 1))).mean((2, 3)))


def stale_net():
    """A BN net whose running statistics disagree with its batches (as DemP leaves them).

    Unit 0 of the first BN: scale 1e-3, shift -1: dead with the batch's statistics
    (|x_hat| is bounded), alive in eval mode where the stale variance (1e-6) makes x_hat
    huge. Unit 1: a huge stale mean makes it dead in eval mode, alive in training.
    """
    torch.manual_seed(0)
    model = VGG(channels=(4, 6), size=8).double()
    x = 3 * torch.randn(64, 3, 8, 8, dtype=torch.float64)
    bn = model.features[1]
    with torch.no_grad():
        bn.weight[0], bn.bias[0] = 1e-3, -1.0
        bn.running_var[0] = 1e-6
        bn.weight[1], bn.bias[1] = 1.0, 0.0
        bn.running_mean[1] = 1e3
    return model, x
