"""Checkpoints of shrunk models: safetensors weights plus a JSON shape spec. No pickle.

A checkpoint is a directory::

    ckpt/
      spec.json            format, the model's shapes, removal history (if known), extra
      model.safetensors    the model's state_dict
      optimizer.safetensors, optimizer.json   (optional) optimizer tensors / the rest
      pruner.json          (optional) DemonPruner state (its RNG state as base64)
      extra.safetensors    (optional) a training method's tensors (masks...)

The spec lists the sha256 of every other file (``files``), verified when it is read: a
damaged file is a :class:`~demp.CheckpointError` naming it.

The spec is derived from the model it is given, nothing else: its ``state_dict`` shapes.
Loading takes a model freshly built at its ORIGINAL size: every saved shape must fit
inside the fresh model's (same keys, same rank, no dimension larger), then the cut
modules are reshaped in place (same Parameter objects) and the weights loaded, so an
optimizer built on the fresh model before loading stays valid. So a deep copy or a pickle
of a pruned model checkpoints like the model itself. The removal history is the pruner's
(or a structure's), stored when one is given.

The directory is written next to its destination, complete, and renamed into place; the
one it replaces is kept as ``<name>.prev`` (the previous generation) until the next save.
A kill at any instruction leaves ``<name>`` or ``<name>.prev`` complete:
:func:`latest_checkpoint` finds the newest one whose files verify, and falls back to the
previous with a warning naming the damaged file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..ops.rules import LayerRules, has_rule, sync_attributes
from ..ops.slicing import replace_data
from .files import fsync_dir, previous_of, remove_stale_temps, sha256, swap_into_place, verify_files  # noqa: F401 (re-exported)
from .files import latest_checkpoint as _latest
from .state import (
    decode_state,  # noqa: F401 (re-exported)
    encode_state,
    load_optimizer,
    plain,
    read_pruner,
    split_optimizer,
)

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
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (an existing one becomes ``<name>.prev``).

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
        tensors: Other tensors to keep with the model (a method's masks), read back by
            :func:`checkpoint_tensors`.

    Returns:
        The checkpoint directory.

    """
    path = Path(path)
    structure = structure if structure is not None else getattr(pruner, "structure", None)
    spec = _spec(model, structure, extra)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as err:
        raise CheckpointError(f"cannot write the checkpoint {path}: {err}") from err
    try:
        _write_files(tmp, model, optimizer, pruner, tensors)
        spec["files"] = {f.name: sha256(f) for f in sorted(tmp.iterdir())}
        (tmp / "spec.json").write_text(json.dumps(spec, indent=1))
        fsync_dir(tmp)
        swap_into_place(tmp, path)
    except OSError as err:  # a full disk: the previous checkpoint is untouched
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"cannot write the checkpoint {path}: {err}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_files(
    tmp: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    pruner: Any,
    tensors: dict[str, torch.Tensor] | None,
) -> None:
    """Every file of a checkpoint but ``spec.json``, into ``tmp``."""
    from safetensors.torch import save_file

    save_file(plain(model.state_dict()), str(tmp / "model.safetensors"))
    if optimizer is not None:
        moments, rest = split_optimizer(optimizer)
        save_file(moments, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(rest))
    if pruner is not None:
        (tmp / "pruner.json").write_text(json.dumps(encode_state(pruner.state_dict())))
    if tensors:
        save_file(plain(tensors), str(tmp / "extra.safetensors"))


def _spec(model: nn.Module, structure: Any, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "shapes": current_shapes(model),
        "history": list(structure.history) if structure is not None else [],
        "extra": extra or {},
    }


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    pruner: Any = None,
    rules: LayerRules | None = None,
    verify: bool = True,
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
        verify: Check every file's sha256 first (False: the caller has, e.g. through
            :func:`latest_checkpoint`).

    Returns:
        The ``extra`` dict stored with the checkpoint.

    Raises:
        CheckpointError: Missing or corrupted files, or a model that does not match.

    """
    from safetensors.torch import load_file

    path = Path(path)
    spec = _read_spec(path)
    if verify:
        verify_files(path, spec)
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
        load_optimizer(path, optimizer)
    if pruner is not None:
        pruner.load_state_dict(read_pruner(path))
    return dict(spec.get("extra", {}))


def latest_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The newest complete checkpoint: ``path``, else its previous generation ``<name>.prev``.

    Each candidate's spec is read and its files' checksums verified; falling back warns,
    naming what was wrong with the newest.

    Raises:
        CheckpointError: Neither is complete and intact (the message names both problems).
    """
    return _latest(path, _read_spec)


def checkpoint_tensors(
    path: str | os.PathLike[str], *, verify: bool = True
) -> dict[str, torch.Tensor]:
    """The ``tensors`` saved with :func:`save_checkpoint` ({} when none).

    ``verify=False`` skips the checksums (when the caller has checked them already).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if verify:
        verify_files(path, _read_spec(path))
    file = path / "extra.safetensors"
    return load_file(str(file)) if file.exists() else {}


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
