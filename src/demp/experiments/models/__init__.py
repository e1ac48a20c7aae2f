"""Model zoo: a registry of the architectures the harness trains.

Every builder takes ``num_classes``, ``input_shape`` (of one example), a ``width``
multiplier (1.0 = the standard size) and an ``activation`` name.

| name | architecture | input |
|---|---|---|
| ``mlp`` | MLP 100-300 (the paper's MNIST MLP) | any |
| ``mlp-bn`` | the same with BatchNorm before each activation | any |
| ``resnet18`` / ``resnet34`` / ``resnet50`` | CIFAR-style ResNet, base width 64 | images |
| ``vgg16`` | VGG-16 with BatchNorm, base width 64 | images |
| ``cnn1d`` / ``resnet1d`` | 1-D CNN / ResNet for MNIST-1D, base width 32 | sequences |
| ``vit`` | small ViT (dim 64, depth 4); only its MLP units are pruned | images |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from ...errors import DempError
from .cnn1d import CNN1d, ResNet1d
from .mlp import MLP
from .resnet import ResNet, resnet18, resnet34, resnet50
from .vgg import VGG
from .vit import ViT

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
Builder = Callable[[int, tuple[int, ...], float, type[nn.Module]], nn.Module]


def _scaled(base: int, width: float, multiple: int = 1) -> int:
    return max(multiple, round(base * width / multiple) * multiple)


def _image(name: str, shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 3 or shape[1] != shape[2]:
        raise DempError(f"model {name} needs square images (C, H, W); the data gives {shape}")
    return shape[0], shape[1]


def _sequence(name: str, shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 2:
        raise DempError(f"model {name} needs sequences (C, L); the data gives {shape}")
    return shape[0], shape[1]


def _resnet(fn: Callable[..., ResNet]) -> Builder:
    def build(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
        channels, _ = _image(fn.__name__, shape)
        return fn(k, channels, _scaled(64, width), act)

    return build


def _vgg(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    channels, size = _image("vgg16", shape)
    return VGG(k, channels, _scaled(64, width), act, size)


def _vit(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    channels, size = _image("vit", shape)
    patch = 4 if size % 4 == 0 else 7 if size % 7 == 0 else 1
    return ViT(k, channels, size, patch, _scaled(64, width, 4), act=act)


def _cnn1d(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    channels, length = _sequence("cnn1d", shape)
    return CNN1d(k, channels, length, _scaled(32, width), act)


def _resnet1d(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    channels, _ = _sequence("resnet1d", shape)
    return ResNet1d(k, channels, _scaled(32, width), act=act)


def _mlp(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    return MLP(shape, (_scaled(100, width), _scaled(300, width)), k, act)


def _mlp_bn(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    return MLP(shape, (_scaled(100, width), _scaled(300, width)), k, act, norm=True)


MODELS: dict[str, Builder] = {
    "mlp": _mlp,
    "mlp-bn": _mlp_bn,
    "resnet18": _resnet(resnet18),
    "resnet34": _resnet(resnet34),
    "resnet50": _resnet(resnet50),
    "vgg16": _vgg,
    "cnn1d": _cnn1d,
    "resnet1d": _resnet1d,
    "vit": _vit,
}


def build_model(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    width: float = 1.0,
    activation: str = "relu",
) -> nn.Module:
    """Build a registry model.

    Raises:
        DempError: Unknown name or activation, or an input shape the model cannot take.
    """
    if name not in MODELS:
        raise DempError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if activation not in ACTIVATIONS:
        raise DempError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    if width <= 0:
        raise DempError(f"width multiplier must be positive, got {width}")
    return MODELS[name](num_classes, tuple(input_shape), width, ACTIVATIONS[activation])


__all__ = [
    "ACTIVATIONS", "MLP", "MODELS", "VGG", "CNN1d", "ResNet", "ResNet1d", "ViT",
    "build_model", "resnet18", "resnet34", "resnet50",
]  # fmt: skip
