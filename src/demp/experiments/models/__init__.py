"""Model zoo: the architectures the harness trains, registered by name (:mod:`.registry`).

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
from .registry import MODELS, Builder, ModelSpec, get_model, model_names, register_model
from .resnet import ResNet, resnet18, resnet34, resnet50
from .vgg import VGG
from .vit import ViT

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


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


_IMAGES = "CIFAR-style ResNet{}, base width 64; square images"
register_model("resnet18", _IMAGES.format("-18"), per_block=True)(_resnet(resnet18))
register_model("resnet34", _IMAGES.format("-34"), per_block=True)(_resnet(resnet34))
register_model("resnet50", _IMAGES.format("-50 (bottleneck)"), per_block=True)(_resnet(resnet50))


@register_model("vgg16", "VGG-16 with BatchNorm, base width 64; square images")
def _vgg(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    channels, size = _image("vgg16", shape)
    return VGG(k, channels, _scaled(64, width), act, size)


@register_model("vit", "small ViT (dim 64, depth 4), only its MLP units pruned; images")
def _vit(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    channels, size = _image("vit", shape)
    patch = 4 if size % 4 == 0 else 7 if size % 7 == 0 else 1
    return ViT(k, channels, size, patch, _scaled(64, width, 4), act=act)


@register_model("cnn1d", "1-D CNN for MNIST-1D, base width 32; sequences (C, L)")
def _cnn1d(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    channels, length = _sequence("cnn1d", shape)
    return CNN1d(k, channels, length, _scaled(32, width), act)


@register_model("resnet1d", "1-D ResNet for MNIST-1D, base width 32; sequences (C, L)")
def _resnet1d(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    channels, _ = _sequence("resnet1d", shape)
    return ResNet1d(k, channels, _scaled(32, width), act=act)


@register_model("mlp", "MLP 100-300 (the paper's MNIST MLP); any input")
def _mlp(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    return MLP(shape, (_scaled(100, width), _scaled(300, width)), k, act)


@register_model("mlp-bn", "MLP 100-300 with BatchNorm before each activation; any input")
def _mlp_bn(k: int, shape: tuple[int, ...], width: float, act: type[nn.Module]) -> nn.Module:
    return MLP(shape, (_scaled(100, width), _scaled(300, width)), k, act, norm=True)


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
    spec = get_model(name)
    if activation not in ACTIVATIONS:
        raise DempError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    if width <= 0:
        raise DempError(f"width multiplier must be positive, got {width}")
    return spec.builder(num_classes, tuple(input_shape), width, ACTIVATIONS[activation])


__all__ = [
    "ACTIVATIONS", "MLP", "MODELS", "VGG", "CNN1d", "ModelSpec", "ResNet", "ResNet1d", "ViT",
    "build_model", "get_model", "model_names", "register_model", "resnet18", "resnet34",
    "resnet50",
]  # fmt: skip
