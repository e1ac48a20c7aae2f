"""Checkpoints of shrunk models: safetensors weights plus a JSON shape spec. No pickle.

A checkpoint is a directory::

    ckpt/
      spec.json            format, the model's shapes, removal history (if known), extra
      model.safetensors    the model's state_dict
      optimizer.safetensors, optimizer.json   (optional) optimizer tensors / the rest
      pruner.json          (optional) DemonPruner state (its RNG state as base64)

The spec is derived from the model it is given, nothing else: its ``state_dict`` shapes.
Loading takes a model freshly built at its ORIGINAL size: every saved shape must fit
inside the fresh model's (same keys, same rank, no dimension larger), then the cut
modules are reshaped in place (same Parameter objects) and the weights loaded, so an
optimizer built on the fresh model before loading stays valid. So a deep copy or a pickle
of a pruned model checkpoints like the model itself. The removal history is the pruner's
(or a structure's), stored when one is given. The directory is written next to its
destination and renamed into place.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError
from .ops.rules import LayerRules, has_rule, sync_attributes
from .ops.slicing import replace_data

FORMAT = "demp-checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1 also stored the original shapes (ignored now)


def current_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Return ``state_dict`` key -> shape for a model."""
    return {k: list(v.shape) for k, v in model.state_dict().items() if hasattr(v, "shape")}


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    pruner: Any = None,
    structure: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (an existing one is replaced).

    Example:
        >>> demp.save_checkpoint("run/ckpt", model, optimizer=opt, extra={"step": 100})

    Args:
        path: The checkpoint directory.
        model: The (possibly shrunk) model.
        optimizer: Saved too if given.
        pruner: A :class:`~demp.DemonPruner` whose state (and removal history) is saved too.
        structure: A :class:`~demp.Structure` whose removal history is stored in the spec
            (default: the pruner's).
        extra: JSON-serializable data stored in the spec (read back by load_checkpoint).

    Returns:
        The checkpoint directory.

    """
    from safetensors.torch import save_file

    path = Path(path)
    structure = structure if structure is not None else getattr(pruner, "structure", None)
    spec = {
        "format": FORMAT,
        "version": VERSION,
        "shapes": current_shapes(model),
        "history": list(structure.history) if structure is not None else [],
        "extra": extra or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file(_plain(model.state_dict()), str(tmp / "model.safetensors"))
        if optimizer is not None:
            tensors, rest = _split_optimizer(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            (tmp / "optimizer.json").write_text(json.dumps(rest))
        if pruner is not None:
            (tmp / "pruner.json").write_text(json.dumps(encode_state(pruner.state_dict())))
        (tmp / "spec.json").write_text(json.dumps(spec, indent=1))
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    pruner: Any = None,
    rules: LayerRules | None = None,
) -> dict[str, Any]:
    """Reshape ``model`` (built at its original size) to the checkpoint's and load it.

    Args:
        path: A directory written by :func:`save_checkpoint`.
        model: A freshly built model of the original architecture and size.
        optimizer: Built on ``model``'s parameters; its state is loaded if saved.
        pruner: A :class:`~demp.DemonPruner` built on ``model`` and ``optimizer``; its
            state is restored after the model (its groups are traced again).
        rules: The layer table the model was cut with, when it holds layer types of
            your own (default: :data:`demp.ops.rules.DEFAULT_RULES`).

    Returns:
        The ``extra`` dict stored with the checkpoint.

    Raises:
        CheckpointError: Missing or corrupted files, or a model that does not match.

    """
    from safetensors.torch import load_file

    path = Path(path)
    spec = _read_spec(path)
    _check_fits(model, spec)
    try:
        weights = load_file(str(path / "model.safetensors"), device="cpu")
    except Exception as err:
        raise CheckpointError(f"cannot read {path / 'model.safetensors'}: {err}") from err
    if {k: list(v.shape) for k, v in weights.items()} != _tensor_shapes(spec["shapes"], weights):
        raise CheckpointError(f"{path}: model.safetensors does not match spec.json shapes")
    _reshape(model, spec["shapes"], rules)
    model.load_state_dict(weights, strict=True)
    if optimizer is not None:
        _load_optimizer(path, optimizer)
    if pruner is not None:
        pruner.load_state_dict(_read_pruner(path))
    return dict(spec.get("extra", {}))


def encode_state(value: Any) -> Any:
    """JSON-encode a state: tensors become ``{"__tensor__": base64, dtype, shape}``."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        raw = data.view(torch.uint8) if data.dtype != torch.uint8 else data
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


def _read_pruner(path: Path) -> dict[str, Any]:
    file = path / "pruner.json"
    if not file.exists():
        raise CheckpointError(f"{path} holds no pruner state (saved without pruner=)")
    try:
        return decode_state(json.loads(file.read_text()))
    except (json.JSONDecodeError, ValueError, KeyError, AttributeError) as err:
        raise CheckpointError(f"{file} is corrupted: {err}") from err


def _plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies, with shared storage (tied weights) de-duplicated by cloning."""
    out, seen = {}, set()
    for key, value in state.items():
        tensor = value.detach().cpu().contiguous()
        ptr = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        out[key] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    return out


def _split_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
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


def _load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
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


def _swap_into_place(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def _read_spec(path: Path) -> dict[str, Any]:
    spec_file = path / "spec.json"
    if not spec_file.exists():
        raise CheckpointError(f"{spec_file} not found: not a demp checkpoint directory")
    try:
        spec = json.loads(spec_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{spec_file} is corrupted: {err}") from err
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise CheckpointError(f"{spec_file} is not a {FORMAT} spec")
    if spec.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{spec_file} has version {spec.get('version')}, expected one of {READABLE_VERSIONS}"
        )
    for key in ("shapes", "history"):
        if key not in spec:
            raise CheckpointError(f"{spec_file} lacks {key!r}")
    return spec


def _check_fits(model: nn.Module, spec: dict[str, Any]) -> None:
    """The checkpoint's shapes must fit inside the freshly built model's."""
    have, saved = current_shapes(model), spec["shapes"]
    missing = sorted(set(saved) - set(have))
    unexpected = sorted(set(have) - set(saved))
    if missing or unexpected:
        raise CheckpointError(
            f"the model does not match the checkpoint: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for key, shape in saved.items():
        if len(have[key]) != len(shape) or any(
            s > h for s, h in zip(shape, have[key], strict=True)
        ):
            raise CheckpointError(
                f"the model does not match the checkpoint: {key} has shape {have[key]} but the "
                f"checkpoint holds {shape}; build the model at its original (unpruned) size"
            )


def removal_history(source: Any) -> list[dict[str, Any]]:
    """Return the removal events of a structure, a pruner, or a checkpoint directory.

    Each event maps group name -> removed unit indices (numbered as at that event).

    Example:
        >>> demp.removal_history(pruner)            # or pruner.structure, or "run/ckpt"

    Args:
        source: A :class:`~demp.Structure`, anything with a ``structure`` (a
            :class:`~demp.DemonPruner`, a :class:`~demp.DeadUnits`), or a checkpoint
            directory written by :func:`save_checkpoint`.
    """
    if isinstance(source, (str, os.PathLike)):
        return [dict(e) for e in _read_spec(Path(source))["history"]]
    structure = getattr(source, "structure", source)
    history = getattr(structure, "history", None)
    if history is None:
        raise TypeError(
            f"removal_history takes a Structure, a pruner or a checkpoint path, not a "
            f"{type(source).__name__} (removals are recorded by the structure that made them)"
        )
    return [dict(e) for e in history]


def _tensor_shapes(shapes: dict[str, list[int]], weights: dict[str, Any]) -> dict[str, list[int]]:
    return {k: shapes.get(k) for k in weights}


def reshape_to(
    model: nn.Module, shapes: dict[str, list[int]], rules: LayerRules | None = None
) -> None:
    """Give a model built at its original size the (smaller) shapes of a saved state_dict.

    Only entries whose shape differs are touched; Parameter objects are kept and the size
    attributes of the touched layers (``in_channels``...) are updated, as the layer table
    ``rules`` says (default: the built-in one).

    Raises:
        CheckpointError: A key the model lacks, or a layer demp cannot reshape.
    """
    missing = sorted(k for k in shapes if k not in current_shapes(model))
    if missing:
        raise CheckpointError(f"the checkpoint has entries the model lacks: {missing[:5]}")
    _reshape(model, shapes, rules)


def _reshape(
    model: nn.Module, shapes: dict[str, list[int]], rules: LayerRules | None = None
) -> None:
    """Validate every change first (a layer demp knows), then reshape."""
    changes = []
    for key, shape in shapes.items():
        owner, _, name = key.rpartition(".")
        module = model.get_submodule(owner)
        tensor = getattr(module, name)
        if list(tensor.shape) == shape:
            continue
        if not has_rule(module, rules):
            raise CheckpointError(
                f"{key} has shape {list(tensor.shape)} in the model but {shape} in the checkpoint, "
                f"and {owner or 'the model'} ({type(module).__name__}) is not a layer demp cuts"
            )
        changes.append((owner, module, name, tensor, shape))
    touched = set()
    for owner, module, name, tensor, shape in changes:
        new = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
        if isinstance(tensor, nn.Parameter):
            replace_data(tensor, new)
        else:
            module._buffers[name] = new
        touched.add(owner)
    for owner in touched:
        sync_attributes(model.get_submodule(owner), rules)
