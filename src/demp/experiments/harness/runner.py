"""One training run of the harness: data, model, optimizer, a registered method, run folder.

``run_training(config, out)`` builds a :class:`~.state.RunState`, trains it with the small
loop of :mod:`.loop` and its callbacks (the method's hooks, death logging, metrics and
progress, evaluation at every epoch end, checkpoints at epoch ends and on Ctrl-C), and at
the end writes ``summary.json`` and the plots. ``resume=True`` continues a run folder from
its checkpoint. Under torchrun every rank trains on its slice of the same global batch
through ``DistributedDataParallel`` and only rank 0 writes
(:mod:`demp.experiments.harness.ranks`).
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ...accounting import CostLedger, count_trainable
from ...checkpoint import (
    checkpoint_tensors,
    latest_checkpoint,
    load_checkpoint,
    previous_of,
    removal_history,
    remove_stale_temps,
)
from ...errors import DempError
from ...integrations.compiled import CompiledModel
from ...integrations.distributed import DDPModel, all_reduce_max
from ...methods import MethodContext, get_method
from ...structure import Structure, build_checked_structure, decouple_residuals
from ..data import load_dataset
from ..models import build_model
from .callbacks import (
    Checkpointing,
    DeathLog,
    Evaluation,
    MethodHooks,
    Metrics,
    check_record,
    log_checks,
    monitor,
    save,
)
from .config import TrainConfig
from .loop import run_loop
from .ranks import Ranks
from .rundir import MetricsLog, load_tensors, write_json
from .state import PHASES, RunState
from .steps import evaluate, make_optimizer, resolve_device
from .timing import train_eval_seconds


def build_run(config: TrainConfig, out: Path, progress: bool) -> RunState:
    """Everything a run needs, built in a fixed order (the seed makes it reproducible)."""
    device = resolve_device(config.device)
    ranks = Ranks.from_env(device)
    if not ranks.main:  # rank 0 speaks for all
        warnings.filterwarnings("ignore")
    ranks.check_batch(config.batch_size)
    if config.compile and ranks.distributed:
        raise DempError("--compile is not supported under torchrun yet; drop one of them")
    device = ranks.device(device)
    torch.manual_seed(config.seed)
    data = load_dataset(config.dataset, config.data_dir, config.train_size, config.test_size,
                        config.data_seed)  # fmt: skip
    spe = data.steps_per_epoch(config.batch_size)
    if spe == 0:
        raise DempError(
            f"batch size {config.batch_size} is larger than the training set "
            f"({len(data.train_x)} examples)"
        )
    total = config.total_steps(spe)
    model = build_model(config.model, data.num_classes, data.input_shape, config.width,
                        config.activation).to(device)  # fmt: skip
    residuals = per_block_residuals(model, data.train_x[:2].to(device), config.residual_mode())
    optimizer = make_optimizer(config, model)
    probe = data.probe(config.probe_size).to(device)
    ctx = MethodContext(model, optimizer, total, spe, ranks.shard(probe), config.batch_size,
                        sync=all_reduce_max if ranks.distributed else None)  # fmt: skip
    method = get_method(config.method).factory(config.method_config(), ctx)
    log = MetricsLog(out / "metrics.jsonl")
    s = RunState(config, out, ranks, device, data, model, model, optimizer, method, ctx, probe,
                 total, spe, log, progress=progress and ranks.main)  # fmt: skip
    if method.structure is None:
        s.monitor_structure = monitored_groups(s)
    s.notes = [data.note] if data.note else []
    s.notes += [residuals] if residuals else []
    s.costs = CostLedger.start(model, probe[:1], s.structure.num_units)
    _connect(s)
    return s


def per_block_residuals(model: torch.nn.Module, example: torch.Tensor, mode: str) -> str:
    """``--residual per-block``: give each residual block its own post-add units.

    Applied to every freshly built model, so a resumed run's checkpoint loads into the same
    layout. Returns a note for the run (empty when nothing was left coupled or in
    ``coupled`` mode).
    """
    if mode != "per-block":
        return ""
    report = decouple_residuals(model, example)
    if not report.coupled:
        return ""
    return f"--residual per-block: {report}; " + "; ".join(
        f"{k}: {v}" for k, v in list(report.coupled.items())[:3]
    )


def monitored_groups(s: RunState) -> Structure:
    """The groups counted (and cut by the baselines) when the method keeps none of its own."""
    return build_checked_structure(s.model, s.probe, s.config.structure_options())


def _connect(s: RunState) -> None:
    """Give the method's context what it reads from the run."""
    ctx = s.ctx
    ctx.structure = s.monitor_structure
    ctx.initial_units = s.costs.initial["units"]
    ctx.structure_changed = lambda: structure_changed(s)
    ctx.note = s.notes.append
    ctx.score_batches = lambda n: score_batches(s, n)


def structure_changed(s: RunState) -> None:
    """Re-wrap DDP and update the FLOPs accounting after units were removed (or masked)."""
    if isinstance(s.net, DDPModel):
        s.net.rewrap()
    if isinstance(s.net, CompiledModel):
        s.net.recompile()
    s.costs.remeasure(s.model, s.method.flops_saved())


def score_batches(s: RunState, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` training batches of a fixed, unaugmented order (baseline scores)."""
    batches = s.data.batches(s.config.batch_size, epoch=10**6, seed=s.config.seed)
    return [(x.to(s.device), y.to(s.device)) for x, y in itertools.islice(batches, n)]


def start_fresh(s: RunState) -> None:
    """Refuse a folder that holds a run; write config.json and the step-0 check line."""
    ckpt = s.out / "checkpoint"
    if any(p.exists() for p in (ckpt, previous_of(ckpt), s.out / "summary.json")):
        raise DempError(
            f"{s.out} already holds a run; pass --resume {s.out} to continue it or "
            "choose another --out"
        )
    s.ranks.barrier()  # every rank has checked before rank 0 writes
    if not s.ranks.main:
        return
    remove_stale_temps(ckpt)
    s.out.mkdir(parents=True, exist_ok=True)
    s.log.path.unlink(missing_ok=True)
    write_json(s.out / "config.json", s.config.to_dict())
    s.write(check_record(s, 0, s.structure.widths(), 0))


def resume(s: RunState) -> None:
    """Continue a run folder: model, optimizer, method state and counters.

    The newest intact checkpoint is used (``checkpoint``, else ``checkpoint.prev`` with a
    warning), and the temporary folders of interrupted saves are removed first.
    """
    ckpt = s.out / "checkpoint"
    if not (ckpt.exists() or previous_of(ckpt).exists()):
        raise DempError(f"cannot resume: {ckpt} not found")
    if s.ranks.main:
        remove_stale_temps(ckpt)
    ckpt = latest_checkpoint(ckpt)  # its files' checksums verified here, once
    _check_same_model(s, ckpt)
    extra = load_checkpoint(ckpt, s.model, s.optimizer, verify=False)
    try:
        _restore(s, ckpt, extra)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise DempError(
            f"cannot resume: {ckpt / 'spec.json'} holds a malformed run state ({err!r})"
        ) from err
    if s.ranks.main:
        s.log.truncate_after(s.step)


def _restore(s: RunState, ckpt: Path, extra: dict[str, Any]) -> None:
    """The counters, the method's state and the monitored groups saved with ``ckpt``."""
    if s.method.structure is None:  # the checkpoint may have reshaped the model
        s.monitor_structure = monitored_groups(s)
        s.monitor_structure.history = removal_history(ckpt)
        s.ctx.structure = s.monitor_structure
    s.step = int(extra["step"])
    s.elapsed0 = float(extra["elapsed"])
    s.costs.load_state_dict(extra, s.model)
    s.ctx.initial_units = s.costs.initial["units"]
    s.seconds = {k: float(extra["seconds"].get(k, 0.0)) for k in PHASES}
    s.notes[:] = list(extra["notes"])
    if s.ranks.main:  # under DDP the other ranks' part of the window is not saved
        s.window.update(extra.get("window", {}))
    s.method.load_state_dict(*_method_state(s, ckpt, extra), s.step)
    s.events_logged = len(s.method.history) if s.method.history is not None else 0
    s.costs.remeasure(s.model, s.method.flops_saved())  # with the method's masks back


def _method_state(s: RunState, ckpt: Path, extra: dict[str, Any]) -> tuple[dict, Any]:
    """The method's tensors and values saved inside the checkpoint.

    Checkpoints written before the single channel kept them in ``baseline.safetensors``
    beside it and in ``pruner.json`` (DemP); those are still read.
    """
    if "method" in extra:
        return checkpoint_tensors(ckpt, verify=False), extra["method"]
    values = extra.get("baseline")
    if (ckpt / "pruner.json").is_file():
        values = {"pruner": json.loads((ckpt / "pruner.json").read_text())}
    return load_tensors(s.out / "baseline.safetensors"), values


def _check_same_model(s: RunState, ckpt: Path) -> None:
    """Refuse a checkpoint whose model began at another size than this run's config builds.

    A narrower checkpoint fits the wider model as a pruned one would, so the shapes alone
    cannot tell; the initial parameter and unit counts saved with it can.
    """
    spec_path = ckpt / "spec.json"
    try:
        saved = json.loads(spec_path.read_text())["extra"]["initial"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DempError(f"cannot resume: {spec_path} is unreadable or malformed ({err})") from err
    now = s.costs.initial
    for key in ("params", "units"):
        if int(saved.get(key, -1)) != int(now[key]):
            c = s.config
            raise DempError(
                f"cannot resume: the checkpoint in {s.out} began with {saved.get(key)} {key}, "
                f"but this run's config ({c.model}, width {c.width:g}) builds a model with "
                f"{now[key]}: the checkpoint belongs to another architecture or width"
            )


def train(s: RunState, stop_after: int | None) -> dict[str, Any]:
    """Train to the end (or to ``stop_after``: then ``{}``) and return the summary."""
    if stop_after is not None and not s.step < stop_after < s.total:
        raise DempError(
            f"stop-after {stop_after} must lie between the current step {s.step} "
            f"and the run's last step {s.total}"
        )
    s.started = time.perf_counter()  # pruning at initialization counts as training time
    if s.step == 0:
        s.method.before_training(s.ctx)
    metrics = Metrics(s)
    callbacks = [MethodHooks(), DeathLog(), metrics, Evaluation(), Checkpointing()]
    if not run_loop(s, callbacks, stop_after):
        return {}
    metrics.close()
    return finish(s)


def finish(s: RunState) -> dict[str, Any]:
    """The method's last word, final evaluation, checkpoint, summary and plots."""
    s.method.finish(s.ctx)  # every rank: DemP's decision is all-reduced
    if s.method.history is not None:
        log_checks(s)
    if not s.ranks.main:
        return {}
    if s.method.history is None:
        monitor(s)
    result = evaluate(s.model, s.data.test_x, s.data.test_y, s.device)
    save(s)
    summary = make_summary(s, result)
    write_json(s.out / "summary.json", summary)
    from ..reports.plots import run_plots

    run_plots(s.out, s.log.read(), summary)
    return summary


def make_summary(s: RunState, result: dict[str, float]) -> dict[str, Any]:
    """The run's summary.json: accuracy, sparsities, FLOPs ratios, time per step by phase."""
    c, flops = s.config, s.costs.flops_now
    params = count_trainable(s.model) - s.method.zero_weights()  # masked zeros count as gone
    initial = s.costs.initial
    per_step = {k: v / max(s.step, 1) for k, v in s.seconds.items()}
    out: dict[str, Any] = {
        "method": c.method, "dataset": c.dataset, "model": c.model, "width": c.width,
        "steps": s.step, "epochs": s.step / s.spe, "seed": c.seed, **result,
        "params_initial": initial["params"], "params": params,
        "masked_weights": s.method.zero_weights(),
        "weight_sparsity": 1 - params / initial["params"],
        "inference_flops": flops, "inference_flops_ratio": flops / initial["flops"],
        "wall_seconds": s.elapsed(), "threads": torch.get_num_threads(),
    }  # fmt: skip
    if s.method.pruner is not None:
        seconds = s.method.pruner.summary().seconds
        per_step.update({f"pruner_{k}": v / max(s.step, 1) for k, v in seconds.items()})
    units = s.structure.num_units
    out.update(
        units_initial=initial["units"], units=units,
        neuron_sparsity=1 - units / initial["units"],
        train_flops_ratio=s.costs.train_flops_ratio(s.step),
        train_flops=3.0 * c.batch_size * s.costs.flops_sum,
        # what dense hardware executes (masked weights are multiplied all the same)
        executed_inference_flops_ratio=s.costs.inference_flops_ratio(executed=True),
        executed_train_flops_ratio=s.costs.train_flops_ratio(s.step, executed=True),
        target=s.method.summary_fields().get("target"), notes=s.notes,
    )  # fmt: skip
    extra = s.method.summary_fields()  # the method's own entries (masks per layer...)
    out.update({k: v for k, v in extra.items() if k not in out})
    if isinstance(s.net, CompiledModel):  # --compile: the first one and one per cut
        out["compiles"] = 1 + s.net.recompiles
    out["seconds_per_step"] = per_step
    out["train_seconds"], out["eval_seconds"] = train_eval_seconds(out)
    return out


def run_training(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train one run into the folder ``out`` and return its summary.

    Under torchrun (``WORLD_SIZE`` > 1) every rank calls this; rank 0 writes the folder and
    gets the summary, the other ranks get ``{}``.

    Args:
        config: The run's options.
        out: The run folder.
        resume: Continue the run folder from its checkpoint.
        progress: Show a progress bar.
        stop_after: Save a checkpoint and return ``{}`` once this step is reached (before
            the end), e.g. to fit a job's time limit; ``resume`` continues.

    Raises:
        DempError: Bad options, missing data, or an existing run folder (without resume).
        KeyboardInterrupt: After saving a checkpoint, when interrupted.
    """
    if resume and (Path(out) / "summary.json").exists():
        raise DempError(
            f"{out} is a finished run (it has summary.json): nothing to resume; its files are "
            "unchanged"
        )
    s = build_run(config, Path(out), progress)
    try:
        _resume_or_start(s, resume)
        # wrapped after a resume has given the model its checkpoint's shapes
        s.net = DDPModel(s.model) if s.ranks.distributed else s.model
        if config.compile:
            s.net = CompiledModel(s.model)
        s.ranks.barrier()
        summary = train(s, stop_after)
        s.net = s.model  # drop the DDP wrapper (its reducer) before the group goes
        s.ranks.barrier()  # every rank is done with the group before any leaves it
        return summary
    finally:
        s.ranks.close()


def _resume_or_start(s: RunState, resuming: bool) -> None:
    if resuming:
        resume(s)
    else:
        start_fresh(s)
