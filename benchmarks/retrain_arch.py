"""Is it the architecture or the training? Retrain a run's final architecture from scratch.

For each run folder given, the model is built as the run built it, shrunk to the widths of
the run's final checkpoint (the pruned architecture: a DemP run's, a structured
baseline's), every layer re-initialized (``reset_parameters``, seeded), and then trained
densely with the run's own options: the same data, optimizer, learning-rate schedule and
number of steps, no pruning (``method="dense"``). A pruned architecture that scores as
well from scratch as its run did owes its accuracy to its shape; comparing two methods'
architectures this way separates the shape each chose from the path that led there.

With ``--init original`` the kept units start instead from the weights they had at the
run's own initialization (the run's removals, from its checkpoint, replayed on the model
built with its seed): the pairing of units and initial weights that a method pruning at
initialization (SNAP) keeps by construction.

    .venv/bin/python benchmarks/retrain_arch.py RUN_DIR [RUN_DIR...] --out runs/retrain \\
        [--seed 0] [--threads 1] [--init fresh|original]

Each result goes to ``OUT/<run name>/`` (a normal run folder: summary.json, metrics) and
one line per run is printed: the run, its own test accuracy, the retrained test accuracy,
the weights. Used for RESULTS-demp.md, "95 %: what the gap is made of".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

import demp
from demp.experiments.harness import runner
from demp.experiments.harness.config import TrainConfig


def fresh_shape(model: nn.Module, run: Path, seed: int) -> None:
    """Give ``model`` the widths of ``run``'s final checkpoint, then fresh weights.

    ``model`` must be built as the run built it (residual units included). Every module
    with ``reset_parameters`` is re-initialized after a ``torch.manual_seed(seed)``.
    """
    demp.load_checkpoint(run / "checkpoint", model)  # the pruned widths (and weights)
    torch.manual_seed(seed)
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()


def original_shape(model: nn.Module, run: Path, example: torch.Tensor) -> None:
    """Cut ``model`` (built as the run built it, with its seed) as the run cut it.

    The removals of the run's checkpoint are replayed in order, so every kept unit keeps
    the weights it had at the run's initialization.
    """
    structure = demp.build_structure(model, example)
    for event in demp.removal_history(run / "checkpoint"):
        cuts = {name: list(units) for name, units in event.items() if units}
        if cuts:
            demp.remove_units(model, cuts, structure=structure)


def retrain(run: Path, out: Path, seed: int, init: str = "fresh") -> dict[str, Any]:
    """Train ``run``'s final architecture from scratch; return the summary.

    ``init="fresh"``: new weights (seeded by ``seed``); ``"original"``: the weights the
    run's kept units had at its initialization (``seed`` must be the run's own).
    """
    source = json.loads((run / "config.json").read_text())
    mode = TrainConfig.from_dict(dict(source)).residual_mode()
    config = {**source, "method": "dense", "residual": mode, "seed": seed}
    config.pop("demp", None)
    shaped = runner.per_block_residuals

    def shape_and_reset(model: nn.Module, example: torch.Tensor, residual: str) -> str:
        note = shaped(model, example, residual)
        if init == "original":
            original_shape(model, run, example)
        else:
            fresh_shape(model, run, seed)
        return note

    runner.per_block_residuals = shape_and_reset  # the harness builds, then calls this
    try:
        return runner.run_training(TrainConfig.from_dict(config), out, progress=False)
    finally:
        runner.per_block_residuals = shaped


def main() -> None:
    """Parse the arguments and retrain each run's architecture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with a checkpoint")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=None, help="default: each run's own seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init", choices=("fresh", "original"), default="fresh",
                        help="fresh weights, or the run's own first weights")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for run in args.runs:
        own = json.loads((run / "summary.json").read_text())
        seed = own["seed"] if args.seed is None else args.seed
        summary = retrain(run, args.out / run.name, seed, args.init)
        print(f"{run.name}: own {own['test_acc']:.4f}, retrained {summary['test_acc']:.4f}, "
              f"{summary['params']} weights")  # fmt: skip


if __name__ == "__main__":
    main()
