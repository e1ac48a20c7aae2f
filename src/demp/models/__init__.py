"""Model zoo: CIFAR-style ResNets (more architectures arrive with the harness)."""

from .resnet import ResNet, resnet18, resnet34, resnet50

__all__ = ["ResNet", "resnet18", "resnet34", "resnet50"]
