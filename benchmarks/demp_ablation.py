"""DemP's ablation: one row per variant of the method, on the long preset's base run.

Each variant is a set of ``DemPConfig`` options on top of the long preset (ResNet-18 at
width 1/16, 5k Fashion-MNIST images, 30 epochs, AdamW), run in two modes:

- ``target``: told 80 % weight sparsity (``--target-sparsity 0.8``). The variants built on
  the paper's (the first round) run under the controller from ``reg_strength`` 5e-2 with
  a 6x ceiling; ``plus`` is DemP+ with its shipped defaults and each ``plus-*`` changes
  one of them (proximal: the controller from 0.3, its strength a fraction of the
  learning rate);
- ``fixed``: at one fixed one-cycle strength (``reg_strength`` 0.1), no target.

The table gives, per run and as mean +- sd over seeds: test accuracy, weight and neuron
sparsity, whether the target was reached, the median |gamma| of the final model, the
share of its live units that are always on (positive on every one of 1000 test images
x positions: their ReLU is the identity), and over all death checks the units the
check removed against those the running (stale) statistics would have called dead.

    .venv/bin/python benchmarks/demp_ablation.py run --out runs/ablation \\
        --variants paper push push-batch --modes target --seeds 0 1 2 --jobs 2
    .venv/bin/python benchmarks/demp_ablation.py table runs/ablation \\
        --md benchmarks/results/ablation/ablation.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch
from near_constant import activations  # benchmarks/near_constant.py
from speed import rebuild  # benchmarks/speed.py
from torch import nn

import demp
from demp.experiments.bench.parallel import run_side_by_side
from demp.experiments.bench.presets import get_preset
from demp.experiments.data import load_dataset
from demp.experiments.harness.config import TrainConfig

PAPER = {"variant": "paper"}  # each remedy on top of Algorithm 1 as the paper writes it
PUSH = {"shift_push": 1.0}
BATCH = {"death_stats": "batch"}
DEADLINE = {"target_deadline": 0.6}
PLUS = {"variant": "plus"}
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": PAPER,  # in target mode: under FIRST_CONTROLLER (no deadline)
    "deadline": {**PAPER, **DEADLINE},
    "push": {**PAPER, **PUSH, **DEADLINE},
    "batch": {**PAPER, **BATCH, **DEADLINE},
    "push-batch": {**PAPER, **PUSH, **BATCH, **DEADLINE},
    "push-batch-polar": {**PAPER, **PUSH, **BATCH, **DEADLINE, "reg": "polarization"},
    "push-batch-prox": {**PAPER, **PUSH, **BATCH, **DEADLINE, "reg_update": "proximal"},
    "plus": PLUS,  # DemP+ as it ships (config.py VARIANTS["plus"])
    # DemP+ with one default changed: each remedy taken out, or an alternative put in
    "plus-no-push": {**PLUS, "shift_push": 0.0},
    "plus-running": {**PLUS, "death_stats": "running"},
    "plus-reestimate": {**PLUS, "death_stats": "reestimate"},
    "plus-no-fade": {**PLUS, "fade": False},
    "plus-no-restart": {**PLUS, "restart": False},
    "plus-no-floor": {**PLUS, "min_fraction": 0.0},
    "plus-reach-0.3": {**PLUS, "target_reach": 0.3},
    "plus-probe-1536": {**PLUS, "probe_size": 1536},
    "plus-polar": {**PLUS, "reg": "polarization"},
    "plus-prox": {**PLUS, "reg_update": "proximal"},
}
MODES = {
    "target": {"target_sparsity": 0.8, "target_metric": "weight"},
    "fixed": {"reg_strength": 0.1},
}
FIRST_CONTROLLER = {"reg_strength": 5e-2, "target_max_scale": 6.0}  # the paper-based rows
PROXIMAL_STRENGTH = {"target": 0.3, "fixed": 0.5}  # a fraction of the learning rate


def config_of(variant: str, mode: str, seed: int) -> TrainConfig:
    """The run of ``variant`` in ``mode`` with ``seed``, on the long preset's base."""
    demp_options = {**MODES[mode], **VARIANTS[variant]}
    if mode == "target" and VARIANTS[variant].get("variant") == "paper":
        demp_options = {**FIRST_CONTROLLER, **demp_options}
    if demp_options.get("reg_update") == "proximal":
        demp_options["reg_strength"] = PROXIMAL_STRENGTH[mode]
    base = dict(get_preset("long").base)
    return TrainConfig.from_dict({**base, "method": "demp", "seed": seed, "demp": demp_options})


def run(args: argparse.Namespace) -> None:
    """Train every (variant, mode, seed) not yet finished under ``args.out``."""
    runs = []
    for seed in args.seeds:
        for mode in args.modes:
            for variant in args.variants:
                name = f"{variant}-{mode}-s{seed}"
                folder = args.out / name
                if not (folder / "summary.json").exists():
                    runs.append((name, config_of(variant, mode, seed), folder))
    args.out.mkdir(parents=True, exist_ok=True)
    left, failed = run_side_by_side(
        runs, args.jobs, 1, None, lambda name, s: print(f"  {name}: {s['test_acc']:.4f}")
    )
    if failed:
        raise SystemExit(f"failed: {failed}")


def always_on(model: nn.Module, structure: demp.Structure, x: torch.Tensor) -> tuple[int, int]:
    """(always-on units, live units): live = ever positive, always on = always positive."""
    on = live = 0
    for acts in activations(model, structure, x).values():
        alive = acts.amax(0) > 0
        live += int(alive.sum())
        on += int((acts.amin(0) > 0).sum())
    return on, live


def measure(run_dir: Path, x: torch.Tensor, shape: tuple, classes: int) -> dict[str, Any]:
    """One row of the table from a finished run folder."""
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    summary = json.loads((run_dir / "summary.json").read_text())
    model, _ = rebuild(config, config.width, shape, classes, x[:2])
    demp.load_checkpoint(run_dir / "checkpoint", model)
    structure = demp.build_checked_structure(model, x[:2], config.demp.structure_options())
    on, live = always_on(model, structure, x)
    gammas = [m.weight.detach().abs() for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm)]  # fmt: skip
    checks = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    checks = [c for c in checks if c.get("kind") == "check" and "removed" in c]
    notes = summary.get("notes") or []
    name = run_dir.name.rsplit("-s", 1)[0]
    return {
        "variant": name, "seed": config.seed, "acc": summary["test_acc"],
        "weight": summary["weight_sparsity"], "neuron": summary["neuron_sparsity"],
        "reached": None if config.demp.target_sparsity is None
        else not any("not reached" in n for n in notes),
        "gamma_median": float(torch.cat(gammas).median()), "always_on": on / max(live, 1),
        "removed": sum(c["removed"] for c in checks),
        "stale": sum(c["dead_running"] for c in checks) if checks and "dead_running" in checks[0]
        else None,
    }  # fmt: skip


def table(args: argparse.Namespace) -> str:
    """The Markdown table of every finished run folder under ``args.runs``."""
    folders = sorted(p for p in args.runs.iterdir() if (p / "summary.json").exists())
    config = TrainConfig.from_dict(json.loads((folders[0] / "config.json").read_text()))
    data = load_dataset(config.dataset, args.data_dir or config.data_dir, 16, 1000, 0)
    x = data.test_x[:1000]
    rows = [measure(f, x, data.input_shape, data.num_classes) for f in folders]
    lines = [
        "| variant | seeds | test acc | weight sparsity | neuron sparsity | target reached | "
        "median gamma | always-on share | removed | stale would cut |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == name]
        reached = [r["reached"] for r in group if r["reached"] is not None]
        stale = [r["stale"] for r in group if r["stale"] is not None]
        lines.append(
            f"| {name} | {len(group)} | {_pm(group, 'acc', 100, 2)} | "
            f"{_pm(group, 'weight', 100, 1)} | {_pm(group, 'neuron', 100, 1)} | "
            f"{f'{sum(reached)}/{len(reached)}' if reached else '-'} | "
            f"{statistics.median(r['gamma_median'] for r in group):.1e} | "
            f"{_pm(group, 'always_on', 100, 0)} | "
            f"{statistics.mean(r['removed'] for r in group):.0f} | "
            f"{f'{statistics.mean(stale):.0f}' if stale else '-'} |"
        )
    text = "\n".join(lines) + "\n"
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
        (args.md.with_suffix(".json")).write_text(json.dumps(rows, indent=1))
    print(text)
    return text


def _pm(rows: list[dict], key: str, scale: float, digits: int) -> str:
    values = [r[key] * scale for r in rows]
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} +- {statistics.stdev(values):.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, default=Path("runs/ablation"))
    r.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    r.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    r.add_argument("--seeds", nargs="+", type=int, default=[0])
    r.add_argument("--jobs", type=int, default=2)
    t = sub.add_parser("table")
    t.add_argument("runs", type=Path)
    t.add_argument("--md", type=Path, default=None)
    t.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    main()
