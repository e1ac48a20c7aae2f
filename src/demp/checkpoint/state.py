"""What a checkpoint holds besides the weights: optimizer state, pruner state as JSON."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError


def encode_state(value: Any) -> Any:
    """JSON-encode a state: tensors become ``{"__tensor__": base64, dtype, shape}``."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        flat = data.reshape(-1)  # a 0-d tensor cannot be viewed as bytes
        raw = flat.view(torch.uint8) if data.dtype != torch.uint8 else flat
        return {
            "__tensor__": base64.b64encode(raw.numpy().tobytes()).decode("ascii"),
            "dtype": str(data.dtype).removeprefix("torch."),
            "shape": list(data.shape),
        }
    if isinstance(value, dict):
        return {k: encode_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_state(v) for v in value]
    return value


def decode_state(value: Any) -> Any:
    """Invert :func:`encode_state`."""
    if isinstance(value, dict) and "__tensor__" in value:
        raw = torch.frombuffer(bytearray(base64.b64decode(value["__tensor__"])), dtype=torch.uint8)
        dtype = getattr(torch, value["dtype"])
        return raw.view(dtype).reshape(value["shape"]).clone()
    if isinstance(value, dict):
        return {k: decode_state(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_state(v) for v in value]
    return value


def read_pruner(path: Path) -> dict[str, Any]:
    """The DemonPruner state saved in ``path/pruner.json``."""
    file = path / "pruner.json"
    if not file.exists():
        raise CheckpointError(f"{path} holds no pruner state (saved without pruner=)")
    try:
        return decode_state(json.loads(file.read_text()))
    except (json.JSONDecodeError, ValueError, KeyError, AttributeError) as err:
        raise CheckpointError(f"{file} is corrupted: {err}") from err


def plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies, with shared storage (tied weights) de-duplicated by cloning."""
    out, seen = {}, set()
    for key, value in state.items():
        tensor = value.detach().cpu().contiguous()
        ptr = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        out[key] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    return out


def split_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimizer's state as (tensors for safetensors, the JSON-able rest)."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, state in state_dict["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
        for g in state_dict["param_groups"]
    ]
    tuples = sorted(
        {k for g in state_dict["param_groups"] for k, v in g.items() if isinstance(v, tuple)}
    )
    rest = {
        "type": type(optimizer).__name__,
        "param_groups": groups,
        "scalars": scalars,
        "tuples": tuples,
    }
    return tensors, rest


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Load ``path``'s optimizer files into ``optimizer`` (nothing when none were saved)."""
    from safetensors.torch import load_file

    if not (path / "optimizer.json").exists():
        raise CheckpointError(f"{path} holds no optimizer state (saved without optimizer=)")
    try:
        rest = json.loads((path / "optimizer.json").read_text())
        tensors = load_file(str(path / "optimizer.safetensors"), device="cpu")
    except Exception as err:
        raise CheckpointError(f"cannot read the optimizer state in {path}: {err}") from err
    if rest.get("type") != type(optimizer).__name__:
        raise CheckpointError(
            f"{path} holds {rest.get('type')} state, not {type(optimizer).__name__}"
        )
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in rest["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = [
        {k: (tuple(v) if k in rest["tuples"] else v) for k, v in g.items()}
        for g in rest["param_groups"]
    ]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(
            f"optimizer state in {path} does not fit this optimizer: {err}"
        ) from err
