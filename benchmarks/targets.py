"""DemP+ target controller: where DemP lands for a stated target, on the `cpu` preset model.

Fashion-MNIST (20k training images, the full test set), CIFAR-style ResNet-18 at width
1/4, Adam lr 5e-3 with cosine decay, batch 128, 1000 steps, death checks every 50 steps:
the base of ``demp bench --preset cpu``. One run per (target, seed, variant); finished
runs are kept (delete a run folder to redo it). Writes ``targets.csv`` and ``targets.md``
into ``--out``.

    .venv/bin/python benchmarks/targets.py --targets 0.5 0.7 0.8 0.9 --seeds 0 \\
        --out benchmarks/results/targets
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from pathlib import Path

import torch

from demp.experiments.harness.config import TrainConfig
from demp.experiments.harness.runner import run_training

BASE = {
    "dataset": "fashion-mnist", "train_size": 20000, "model": "resnet18", "width": 0.25,
    "optimizer": "adam", "lr": 5e-3, "lr_schedule": "cosine", "steps": 1000,
    "batch_size": 128, "method": "demp",
}  # fmt: skip
VARIANTS = {
    "plain": {},
    "params": {"reg_weighting": "params"},
    "no-revive": {"revive": False},
}
COLUMNS = ["variant", "target", "seed", "metric", "landed", "test_acc", "weight_sparsity",
           "neuron_sparsity", "inference_flops_ratio", "train_flops_ratio", "reached_step",
           "dead_kept", "revived", "train_seconds", "eval_seconds"]  # fmt: skip


def run_one(out: Path, variant: str, target: float, seed: int, metric: str) -> dict:
    """Train (or reuse) one run and return its row."""
    folder = out / "runs" / f"{variant}-{metric}-{target:g}-s{seed}"
    if not (folder / "summary.json").exists():
        demp = {"prune_every": 50, "reg_strength": 3e-3, "target_sparsity": target,
                "target_metric": metric, **VARIANTS[variant]}  # fmt: skip
        config = TrainConfig.from_dict({**BASE, "seed": seed, "demp": demp})
        if folder.exists():
            run_training(config, folder, resume=True, progress=False)
        else:
            run_training(config, folder, progress=False)
    summary = json.loads((folder / "summary.json").read_text())
    state = json.loads((folder / "checkpoint" / "pruner.json").read_text())
    history = state["history"]
    per_step = summary["seconds_per_step"]
    landed = {"weight": summary["weight_sparsity"], "neuron": summary["neuron_sparsity"],
              "flops": 1 - summary["inference_flops_ratio"]}[metric]  # fmt: skip
    return {
        "variant": variant, "target": target, "seed": seed, "metric": metric,
        "landed": landed, "test_acc": summary["test_acc"],
        "weight_sparsity": summary["weight_sparsity"],
        "neuron_sparsity": summary["neuron_sparsity"],
        "inference_flops_ratio": summary["inference_flops_ratio"],
        "train_flops_ratio": summary["train_flops_ratio"],
        "reached_step": state["steering"]["controller"]["reached_at"],
        "dead_kept": history[-1]["dead"] - history[-1]["removed"],
        "revived": sum(e.get("revived", 0) for e in history),
        "train_seconds": summary["steps"] * sum(
            v for k, v in per_step.items() if k not in ("eval", "checkpoint")
        ),
        "eval_seconds": summary["steps"] * per_step.get("eval", 0.0),
    }  # fmt: skip


def write(out: Path, rows: list[dict]) -> None:
    """targets.csv (one row per run) and targets.md (a table)."""
    with open(out / "targets.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"Machine: {platform.machine()} CPU, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}. `landed`: the sparsity reached in the target metric; "
        "`dead kept`: dead units left in the model at the end; `revived`: revivals over "
        "the run (a unit revived at several checks counts each time); train/eval s: wall "
        "time of the training loop and of evaluation (measured beside other jobs: not for "
        "speed comparisons).",
        "",
        "| variant | target | seed | landed | test acc | weight sp. | neuron sp. | reached at "
        "step | dead kept | revived | train s | eval s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['target']:g} {r['metric']} | {r['seed']} | "
            f"{r['landed']:.4f} | {r['test_acc']:.4f} | {r['weight_sparsity']:.3f} | "
            f"{r['neuron_sparsity']:.3f} | {r['reached_step']} | {r['dead_kept']} | "
            f"{r['revived']} | {r['train_seconds']:.0f} | {r['eval_seconds']:.0f} |"
        )
    (out / "targets.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=["plain"], choices=sorted(VARIANTS))
    parser.add_argument("--metric", default="weight", choices=("weight", "neuron", "flops"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/targets"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            for target in args.targets:
                rows.append(run_one(args.out, variant, target, seed, args.metric))
                print(json.dumps(rows[-1]))
                write(args.out, rows)


if __name__ == "__main__":
    main()
