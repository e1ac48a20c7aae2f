"""The pieces of a training step of the harness: device, optimizer, step, evaluation."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import Optimizer

from ...batches import eval_mode
from ...errors import DempError
from .config import TrainConfig
from .optim import build_optimizer


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DempError(f"unknown device {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DempError("device cuda requested but no CUDA device is available")
    return device


def make_optimizer(config: TrainConfig, model: nn.Module) -> Optimizer:
    """The run's optimizer, as configured."""
    return build_optimizer(config.optimizer, model.parameters(), config.lr,
                           momentum=config.momentum, weight_decay=config.weight_decay)  # fmt: skip


def train_step(
    model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, int]:
    """One optimizer step; returns the batch loss and the number of correct predictions."""
    out = model(x)
    loss = nn.functional.cross_entropy(out, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item(), int((out.argmax(1) == y).sum())


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> dict:
    """Test loss and accuracy, in eval mode (restored after), batches of 1000."""
    loss, correct = 0.0, 0
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(x), 1000):
            xb, yb = x[i : i + 1000].to(device), y[i : i + 1000].to(device)
            out = model(xb)
            loss += float(nn.functional.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
    return {"test_loss": loss / len(x), "test_acc": correct / len(x)}
