"""A Hugging Face ``transformers.Trainer`` callback that runs DemP (extra ``[hf]``).

``DemonPruningCallback(probe)`` attaches a :class:`~demp.DemonPruner` to the Trainer's
optimizer when training begins, adds demp's numbers to the Trainer's logs, writes the
shape spec and the pruner state into every Trainer checkpoint, restores them when the
Trainer resumes, and finalizes at the end. In a transformer only the MLP hidden units
can be cut exactly; attention and the LayerNorm'd residual stream are listed in
:attr:`DemonPruningCallback.skipped` with their reasons. Under several processes
(``torchrun`` / ``accelerate launch``) the ranks decide on all-reduced statistics and the
Trainer's DDP wrapper is rebuilt in place after each cut (:mod:`.distributed`).

The default configuration is the paper's ViT setting (§4.3, appendix G.2): no
regularization (lambda = 0), asymmetric noise, and the ``eps`` death criterion, since GELU
units saturate near zero rather than at it. A model built with ReLU (``hidden_act="relu"``,
the paper's "DemP + ReLU") can use the exact ``zero`` criterion. ``prune_start`` delays the
first death check (the last MLP block's units die early and later revive).

A shrunk model's ``config.json`` still gives the original sizes, so
``from_pretrained`` cannot load it; :func:`save_pruned` writes ``save_pretrained``'s
folder plus ``demp_spec.json`` and :func:`load_pruned` rebuilds the model from the config,
reshapes it to the spec and loads the weights (no download, nothing unpickled).

Example::

    trainer = Trainer(model, args, train_dataset=ds,
                      callbacks=[DemonPruningCallback(probe, prune_start=2000)])
    trainer.train()
    save_pruned(trainer.model, "vit-pruned")
    model = load_pruned(ViTForImageClassification, "vit-pruned")
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as err:  # pragma: no cover
    raise ImportError("demp.integrations.hf needs: pip install 'demp[hf]'") from err

from torch import nn

from ..algorithm.config import DemPConfig
from ..algorithm.pruner import DemonPruner
from ..algorithm.restart import restart_schedulers
from ..checkpoint import decode_state, encode_state, reshape_to
from ..errors import CheckpointError, DempError

SPEC_FILE = "demp_spec.json"
PRUNER_FILE = "demp_pruner.json"
HF_DEFAULT = DemPConfig(reg_strength=0.0, criterion="eps")


class DemonPruningCallback(TrainerCallback):
    """Run DemP inside ``transformers.Trainer.train``.

    Args:
        probe: Unaugmented training inputs for the death checks (a tensor of
            ``pixel_values``, or dicts of model inputs).
        config: A :class:`~demp.DemPConfig` (default :data:`HF_DEFAULT`).
        total_steps: Planned optimizer steps (default: the Trainer's ``max_steps``).
        prune_start: Overrides ``config.prune_start``: no death check before this step.
    """

    def __init__(
        self,
        probe: Any,
        config: DemPConfig | None = None,
        total_steps: int | None = None,
        prune_start: int | None = None,
    ) -> None:
        config = config or HF_DEFAULT
        if prune_start is not None:
            config = dataclasses.replace(config, prune_start=prune_start)
        self.probe, self.config, self.total_steps = probe, config, total_steps
        self.pruner: DemonPruner | None = None
        self._watch: Any = None  # several processes: finds the Trainer's DDP wrapper

    @property
    def skipped(self) -> dict[str, str]:
        """Channel groups left alone (attention, residual stream...) with the reason."""
        return dict(self.pruner.structure.skipped) if self.pruner else {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Attach the pruner (restoring its state when the Trainer resumes)."""
        model, optimizer = kwargs["model"], kwargs["optimizer"]
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
        total = self.total_steps or state.max_steps
        extra: dict[str, Any] = {}
        if args.world_size > 1:
            extra = self._distributed(model)
        self.pruner = DemonPruner(model, optimizer, self.probe, total, self.config, **extra)
        restart_schedulers([kwargs.get("lr_scheduler")], self.pruner.restart, total)
        if state.global_step > 0:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if (folder / PRUNER_FILE).exists():
                self.pruner.load_state_dict(_read_json(folder / PRUNER_FILE))
            else:
                warnings.warn(
                    f"DemonPruningCallback: resuming at step {state.global_step} but "
                    f"{folder / PRUNER_FILE} is missing; the pruner restarts its schedules "
                    "from step 0",
                    stacklevel=2,
                )

    def _distributed(self, model: nn.Module) -> dict[str, Any]:
        """Several processes: decide on all-reduced statistics, keep the DDP wrapper valid."""
        from .distributed import WrapperWatch, all_reduce_max, rebuild_reducer

        self._watch = WrapperWatch(model)

        def rebuild(_pruner: DemonPruner, _report: Any) -> None:
            if self._watch.wrapper is None:
                raise DempError(
                    "DemonPruningCallback: several processes, but no DistributedDataParallel "
                    "wrapping the model ran a forward pass; cannot keep the ranks in step"
                )
            rebuild_reducer(self._watch.wrapper)

        return {"sync": all_reduce_max, "on_structure_change": [rebuild]}

    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Add live units, trainable parameters and the FLOPs ratio to the logs."""
        logs = kwargs.get("logs")
        if self.pruner is None or logs is None:
            return
        summary = self.pruner.summary()
        extra = {
            "demp/units": summary.units,
            "demp/params": summary.params,
            "demp/inference_flops_ratio": summary.inference_flops_ratio,
        }
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Write the shape spec and the pruner state into the Trainer's checkpoint.

        Under several processes only the first writes (the ranks' states are the same).
        """
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.pruner is None or not state.is_world_process_zero or not folder.is_dir():
            return
        _write_spec(kwargs["model"], folder)
        _write_json(folder / PRUNER_FILE, encode_state(self.pruner.state_dict()))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Last death check and removal; detach from the optimizer."""
        if self.pruner is not None:
            self.pruner.finalize()
            self.pruner.detach()
        if self._watch is not None:
            self._watch.close()


def save_pruned(model: nn.Module, directory: str | Path, **kwargs: Any) -> None:
    """``model.save_pretrained(directory)`` plus demp's shape spec (``demp_spec.json``)."""
    model.save_pretrained(directory, **kwargs)
    _write_spec(model, Path(directory))


def load_pruned(model_class: Any, directory: str | Path, **kwargs: Any) -> nn.Module:
    """Rebuild a model saved by :func:`save_pruned` (or a Trainer checkpoint of DemP).

    ``model_class.from_pretrained`` does the loading (so its key conversions of older
    checkpoint formats apply); the model is given the spec's shapes right after it is
    built, before the weights arrive.

    Args:
        model_class: The ``transformers`` model class (e.g. ``ViTForImageClassification``).
        directory: The saved folder (``config.json``, weights, ``demp_spec.json``).
        **kwargs: Passed to ``from_pretrained`` (``dtype``...).

    Raises:
        CheckpointError: The folder lacks the spec, or the spec does not fit the model.
    """
    directory = Path(directory)
    spec_file = directory / SPEC_FILE
    if not spec_file.is_file():
        raise CheckpointError(f"{spec_file} not found: save the model with demp's save_pruned")
    shapes = _read_json(spec_file)["shapes"]

    class Shaped(model_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **init_kwargs: Any) -> None:
            super().__init__(*args, **init_kwargs)
            reshape_to(self, shapes)

    Shaped.__name__ = Shaped.__qualname__ = model_class.__name__
    model = Shaped.from_pretrained(directory, **kwargs)
    model.__class__ = model_class
    return model


def _write_spec(model: nn.Module, folder: Path) -> None:
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    _write_json(folder / SPEC_FILE, {"format": "demp-hf-spec", "version": 1, "shapes": shapes})


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return decode_state(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, ValueError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err
