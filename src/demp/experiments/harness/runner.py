"""One training run of the harness: data, model, optimizer, DemP or dense, run folder.

``run_training(config, out)`` trains, evaluates on the test split at every epoch end,
logs to ``metrics.jsonl``, checkpoints at epoch ends (and on Ctrl-C), and at the end
writes ``summary.json`` and the plots. ``resume=True`` continues a run folder from its
checkpoint: the data order, augmentation, learning rate and DemP noise depend only on the
step, so the continuation sees what the uninterrupted run would have. Under torchrun
every rank trains on its slice of the same global batch through ``DistributedDataParallel``
and only rank 0 writes (:mod:`demp.experiments.harness.ranks`).
"""

from __future__ import annotations

import itertools
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ...accounting import count_trainable, forward_flops
from ...algorithm.pruner import DemonPruner
from ...checkpoint import load_checkpoint, save_checkpoint
from ...death.criteria import find_dead
from ...errors import DempError
from ...integrations.distributed import DDPModel, all_reduce_max
from ...methods.methods import BASELINES, make_baseline
from ...structure.build import build_checked_structure
from ...structure.groups import Structure
from ..data import DataBundle, load_dataset
from ..models import build_model
from .config import TrainConfig
from .lr import lr_at
from .ranks import Ranks
from .rundir import MetricsLog, load_tensors, progress_bar, save_tensors, write_json
from .steps import evaluate, make_optimizer, resolve_device, train_step

PHASES = ("data", "compute", "eval", "checkpoint")


class Run:
    """The state of one run while it trains (see :func:`run_training`)."""

    def __init__(self, config: TrainConfig, out: Path, resume: bool, progress: bool) -> None:
        self.config, self.out = config, out
        device = resolve_device(config.device)
        self.ranks = Ranks.from_env(device)
        if not self.ranks.main:  # rank 0 speaks for all
            warnings.filterwarnings("ignore")
        self.ranks.check_batch(config.batch_size)
        self.device = self.ranks.device(device)
        self.progress = progress and self.ranks.main
        self.stop_after: int | None = None
        torch.manual_seed(config.seed)
        self.data: DataBundle = load_dataset(
            config.dataset, config.data_dir, config.train_size, config.test_size, config.seed
        )
        self.spe = self.data.steps_per_epoch(config.batch_size)
        if self.spe == 0:
            raise DempError(
                f"batch size {config.batch_size} is larger than the training set "
                f"({len(self.data.train_x)} examples)"
            )
        self.total = config.total_steps(self.spe)
        self.model = build_model(
            config.model, self.data.num_classes, self.data.input_shape, config.width,
            config.activation,
        ).to(self.device)  # fmt: skip
        self.opt = make_optimizer(config, self.model)
        self.probe = self.data.probe(config.demp.probe_size).to(self.device)
        self.pruner = None
        if config.method == "demp":
            self.pruner = DemonPruner(
                self.model, self.opt, self.ranks.shard(self.probe), self.total, config.demp,
                batch_size=config.batch_size,
                on_structure_change=[lambda _p, _r: self.structure_changed()],
                sync=all_reduce_max if self.ranks.distributed else None,
            )  # fmt: skip
        self.monitor_structure = None if self.pruner else self._build_structure()
        self.log = MetricsLog(out / "metrics.jsonl")
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.step, self.elapsed0, self.events_logged = 0, 0.0, 0
        self.notes: list[str] = [self.data.note] if self.data.note else []
        self.flops_now = forward_flops(self.model, self.probe[:1])
        self.train_flops_sum = 0.0
        self.initial = {
            "flops": self.flops_now,
            "params": count_trainable(self.model),
            "units": self.structure.num_units,
        }
        self.baseline = make_baseline(self) if config.method in BASELINES else None
        if resume:
            self._resume()
        else:
            self._start_fresh()
        # wrapped after a resume has given the model its checkpoint's shapes
        self.net = DDPModel(self.model) if self.ranks.distributed else self.model
        self.ranks.barrier()

    # ------------------------------------------------------------------ set-up
    def _start_fresh(self) -> None:
        if (self.out / "checkpoint").exists() or (self.out / "summary.json").exists():
            raise DempError(
                f"{self.out} already holds a run; pass --resume {self.out} to continue it or "
                "choose another --out"
            )
        self.ranks.barrier()  # every rank has checked before rank 0 writes
        if not self.ranks.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self.log.path.unlink(missing_ok=True)
        write_json(self.out / "config.json", self.config.to_dict())
        structure = self.pruner.structure if self.pruner else self.monitor_structure
        self.log.write(self._check_record(0, structure.widths(), 0))

    def _resume(self) -> None:
        if not (self.out / "checkpoint").exists():
            raise DempError(f"cannot resume: {self.out / 'checkpoint'} not found")
        extra = load_checkpoint(self.out / "checkpoint", self.model, self.opt, pruner=self.pruner)
        if self.pruner is None:  # the checkpoint may have reshaped the model
            self.monitor_structure = self._build_structure()
        self.step = int(extra["step"])
        self.elapsed0 = float(extra["elapsed"])
        self.initial = dict(extra["initial"])
        self.seconds = {k: float(extra["seconds"].get(k, 0.0)) for k in PHASES}
        self.train_flops_sum = float(extra["train_flops_sum"])
        self.notes = list(extra["notes"])
        self.events_logged = len(self.pruner.history) if self.pruner else 0
        self.flops_now = forward_flops(self.model, self.probe[:1])
        if self.baseline is not None:
            self.baseline.load_state_dict(load_tensors(self.out / "baseline.safetensors"),
                                          extra["baseline"])  # fmt: skip
        if self.ranks.main:
            self.log.truncate_after(self.step)

    def _build_structure(self) -> Structure:
        return build_checked_structure(self.model, self.probe, self.config.demp.structure_options())

    # ------------------------------------------------------------------ for the methods
    @property
    def structure(self) -> Structure:
        """The channel groups being pruned (or monitored)."""
        return self.pruner.structure if self.pruner else self.monitor_structure

    def structure_changed(self) -> None:
        """Re-wrap DDP and update the FLOPs accounting after units were removed."""
        if isinstance(self.net, DDPModel):
            self.net.rewrap()
        self.flops_now = forward_flops(self.model, self.probe[:1])

    def score_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The training batches baseline scores are computed on (fixed, unaugmented order)."""
        batches = self.data.batches(self.config.batch_size, epoch=10**6, seed=self.config.seed)
        out = []
        for x, y in itertools.islice(batches, self.config.score_batches):
            out.append((x.to(self.device), y.to(self.device)))
        return out

    def note(self, text: str) -> None:
        """Add a line to the run summary's notes."""
        self.notes.append(text)

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, Any]:
        """Train to the end (or until Ctrl-C, which saves a checkpoint and re-raises)."""
        self.started = time.perf_counter()
        if self.stop_after is not None and not self.step < self.stop_after < self.total:
            raise DempError(
                f"stop-after {self.stop_after} must lie between the current step {self.step} "
                f"and the run's last step {self.total}"
            )
        if self.baseline is not None and self.step == 0:
            self.baseline.before_training()
        bar = progress_bar(self.total, self.step, self.config.method, self.progress)
        window = {"loss": 0.0, "correct": 0, "n": 0}
        try:
            while self.step < self.total:
                epoch, index = divmod(self.step, self.spe)
                batches = self.data.batches(self.config.batch_size, epoch, self.config.seed, index)
                for _ in range(index, self.spe):
                    loss, correct, n = self._one_step(batches)
                    window["loss"] += loss * n
                    window["correct"] += correct
                    window["n"] += n
                    self._after_step(window, bar)
                    if self.step >= self.total or self.step == self.stop_after:
                        break
                if self.step == self.stop_after and self.step < self.total:
                    return self._stop(bar)
        except KeyboardInterrupt:
            if self.ranks.main:
                self._save_checkpoint()
            bar.close()
            if self.ranks.main:
                print(f"\ninterrupted at step {self.step}; "
                      f"resume with: demp train --resume {self.out}")  # fmt: skip
            raise
        bar.close()
        return self._finish()

    def _stop(self, bar: Any) -> dict[str, Any]:
        """Checkpoint and leave before the end (``stop_after``); resume continues the run."""
        self._save_checkpoint()
        bar.close()
        if self.ranks.main:
            print(f"stopped at step {self.step}; resume with: demp train --resume {self.out}")
        return {}

    def _one_step(self, batches: Any) -> tuple[float, int, int]:
        start = time.perf_counter()
        x, y = map(self.ranks.shard, next(batches))
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        for group in self.opt.param_groups:
            group["lr"] = self._lr(self.step)
        inside = sum(self.pruner.seconds.values()) if self.pruner else 0.0
        computed = time.perf_counter()
        loss, correct = train_step(self.net, self.opt, x, y)
        done = time.perf_counter()
        pruner_time = (sum(self.pruner.seconds.values()) - inside) if self.pruner else 0.0
        self.seconds["data"] += computed - start
        self.seconds["compute"] += done - computed - pruner_time
        self.train_flops_sum += self.flops_now
        self.step += 1
        return loss, correct, len(y)

    def _lr(self, step: int) -> float:
        c = self.config
        return lr_at(step, c.lr, self.total, c.lr_schedule, c.lr_decay_factor, c.lr_decay_every)

    def _after_step(self, window: dict[str, Any], bar: Any) -> None:
        step = self.step
        if self.baseline is not None:
            self.baseline.after_step()
            if step % self.spe == 0:
                self.baseline.epoch_end(step // self.spe)
        self._log_checks()
        if step % self.config.log_every == 0 or step == self.total:
            loss, correct, n = self.ranks.sum([window[k] for k in ("loss", "correct", "n")],
                                              self.device)  # fmt: skip
            record = {
                "kind": "step", "step": step, "epoch": step / self.spe, "lr": self._lr(step - 1),
                "loss": loss / max(n, 1), "train_acc": correct / max(n, 1),
                "params": count_trainable(self.model), "units": self._units(),
                "penalty": self.pruner.penalty() if self.pruner else 0.0,
                "elapsed": self._elapsed(),
            }  # fmt: skip
            self._write(record)
            bar.set_postfix(
                loss=f"{record['loss']:.3f}", acc=f"{record['train_acc']:.3f}",
                units=record["units"], params=record["params"],
            )  # fmt: skip
            window.update(loss=0.0, correct=0, n=0)
        bar.update(1)
        if (step % self.spe == 0 or step == self.total) and self.ranks.main:
            start = time.perf_counter()
            result = evaluate(self.model, self.data.test_x, self.data.test_y, self.device)
            self.seconds["eval"] += time.perf_counter() - start
            self._write({"kind": "epoch", "step": step, "epoch": step / self.spe, **result})
            if step < self.total:
                self._save_checkpoint()

    def _units(self) -> int:
        return self.structure.num_units

    def _log_checks(self) -> None:
        """Log death checks: the pruner's events, or a monitoring check for dense runs."""
        if self.pruner:
            for event in self.pruner.history[self.events_logged :]:
                live = dict(event["widths"])
                self._write(self._check_record(event["step"], live, event["dead"]))
            self.events_logged = len(self.pruner.history)
            return
        every = self.config.monitor_every or max(1, round(0.05 * self.total))
        if self.step % every == 0 and self.ranks.main:
            self._monitor()

    def _monitor(self) -> None:
        start = time.perf_counter()
        demp_cfg = self.config.demp
        dead = find_dead(self.model, self.probe, structure=self.monitor_structure,
                         criterion=demp_cfg.criterion, eps=demp_cfg.eps)  # fmt: skip
        live = {n: g.width - g.num_dead for n, g in dead.groups.items()}
        self._write(self._check_record(self.step, live, dead.num_dead))
        self.seconds["eval"] += time.perf_counter() - start

    def _write(self, record: dict[str, Any]) -> None:
        if self.ranks.main:
            self.log.write(record)

    def _check_record(self, step: int, live: dict[str, int], dead: int) -> dict[str, Any]:
        initial = self.initial["units"]
        alive = sum(live.values())
        return {
            "kind": "check", "step": step, "live": live, "dead_now": dead,
            "units_initial": initial, "dead_ratio": 1 - alive / initial,
        }  # fmt: skip

    def _elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.started

    def _save_checkpoint(self) -> None:
        if not self.ranks.main:
            return
        start = time.perf_counter()
        extra = {
            "step": self.step, "elapsed": self._elapsed(), "initial": self.initial,
            "seconds": self.seconds, "train_flops_sum": self.train_flops_sum,
            "notes": self.notes, "baseline": None,
        }  # fmt: skip
        if self.baseline is not None:
            tensors, extra["baseline"] = self.baseline.state_dict()
            save_tensors(self.out / "baseline.safetensors", tensors)
        save_checkpoint(self.out / "checkpoint", self.model, self.opt, pruner=self.pruner,
                        extra=extra)  # fmt: skip
        self.seconds["checkpoint"] += time.perf_counter() - start

    # ------------------------------------------------------------------ the end
    def _finish(self) -> dict[str, Any]:
        if self.pruner:
            self.pruner.finalize()  # every rank: the decision is all-reduced
            self._log_checks()
        if not self.ranks.main:
            return {}
        if not self.pruner:
            self._monitor()
        result = evaluate(self.model, self.data.test_x, self.data.test_y, self.device)
        self._save_checkpoint()
        summary = self._summary(result)
        write_json(self.out / "summary.json", summary)
        from ..reports.plots import run_plots

        run_plots(self.out, self.log.read(), summary)
        return summary

    def _summary(self, result: dict[str, float]) -> dict[str, Any]:
        flops = forward_flops(self.model, self.probe[:1])
        params = count_trainable(self.model)
        per_step = {k: v / max(self.step, 1) for k, v in self.seconds.items()}
        out: dict[str, Any] = {
            "method": self.config.method, "dataset": self.config.dataset,
            "model": self.config.model, "width": self.config.width, "steps": self.step,
            "epochs": self.step / self.spe, "seed": self.config.seed, **result,
            "params_initial": self.initial["params"], "params": params,
            "weight_sparsity": 1 - params / self.initial["params"],
            "inference_flops": flops, "inference_flops_ratio": flops / self.initial["flops"],
            "wall_seconds": self._elapsed(),
        }  # fmt: skip
        if self.pruner:
            seconds = self.pruner.summary().seconds
            per_step.update({f"pruner_{k}": v / max(self.step, 1) for k, v in seconds.items()})
        units = self.structure.num_units
        out.update(
            units_initial=self.initial["units"], units=units,
            neuron_sparsity=1 - units / self.initial["units"],
            train_flops_ratio=self.train_flops_sum / max(self.step * self.initial["flops"], 1e-12),
            train_flops=3.0 * self.config.batch_size * self.train_flops_sum,
            target=self.config.target if self.baseline is not None else None,
            notes=self.notes,
        )  # fmt: skip
        out["seconds_per_step"] = per_step
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
    run = Run(config, Path(out), resume, progress)
    run.stop_after = stop_after
    try:
        summary = run.train()
        run.net = run.model  # drop the DDP wrapper (its reducer) before the group goes
        run.ranks.barrier()  # every rank is done with the group before any leaves it
        return summary
    finally:
        run.ranks.close()
