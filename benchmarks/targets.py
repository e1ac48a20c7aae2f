"""DemP+ on the `cpu` preset model: where DemP lands for a stated target, and what steers it.

Fashion-MNIST (20k training images, the full test set), CIFAR-style ResNet-18 at width
1/4, Adam lr 5e-3 with cosine decay, batch 128, 1000 steps, death checks every 5 % of the
run: the base of ``demp bench --preset cpu``. One run per (variant, target, seed); the
variants are DemP's steering options (``VARIANTS``) and SNAP told the same weight target,
for its sparsity pattern. Finished runs are kept (delete a run folder to redo it). Runs go
in ``--jobs`` processes side by side (train/eval seconds are then not for speed
comparisons); ``--deadline`` stops starting runs after that many seconds. Writes
``targets.csv`` and ``targets.md`` into ``--out`` after every run.

    .venv/bin/python benchmarks/targets.py --targets 0.5 0.7 0.8 0.9 --seeds 0 \\
        --out benchmarks/results/targets
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import platform
import statistics
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import torch

from demp.experiments.harness.config import TrainConfig
from demp.experiments.harness.runner import run_training
from demp.experiments.harness.timing import train_eval_seconds

BASE = {
    "dataset": "fashion-mnist", "train_size": 20000, "model": "resnet18", "width": 0.25,
    "optimizer": "adam", "lr": 5e-3, "lr_schedule": "cosine", "steps": 1000,
    "batch_size": 128, "method": "demp",
}  # fmt: skip
VARIANTS: dict[str, dict] = {
    "plain": {},
    "params": {"demp": {"reg_weighting": "params"}},
    "flops": {"demp": {"reg_weighting": "flops"}},
    "floor": {"demp": {"min_fraction": 0.2}},
    "no-revive": {"demp": {"revive": False}},
    "per-block": {"residual": "per-block"},
    "params-per-block": {"residual": "per-block", "demp": {"reg_weighting": "params"}},
    "params-per-block-no-noise": {
        "residual": "per-block",
        "demp": {"reg_weighting": "params", "noise": "off"},
    },
    "snap": {"method": "snap"},
}
COLUMNS = ["variant", "target", "seed", "metric", "landed", "test_acc", "weight_sparsity",
           "neuron_sparsity", "inference_flops_ratio", "train_flops_ratio", "reached_step",
           "dead_kept", "revived", "train_seconds", "eval_seconds", "widths",
           "error"]  # fmt: skip


def run_config(variant: str, target: float, seed: int, metric: str, args: dict) -> TrainConfig:
    """The TrainConfig of one run."""
    overlay = VARIANTS[variant]
    steps = args.get("steps", BASE["steps"])
    base = {**BASE, "steps": steps, "seed": seed, "device": args.get("device", "auto")}
    for name in ("train_size", "test_size", "data_dir"):
        if args.get(name):
            base[name] = args[name]
    base.update({k: v for k, v in overlay.items() if k != "demp"})
    if base["method"] != "demp":
        return TrainConfig.from_dict({**base, "target": target, "target_metric": metric})
    demp = {"prune_every": max(1, steps // 20), "reg_strength": 3e-3,
            "target_sparsity": target, "target_metric": metric,
            **overlay.get("demp", {})}  # fmt: skip
    return TrainConfig.from_dict({**base, "demp": demp})


def widths(folder: Path) -> str:
    """Output widths of the model's normalization layers, in module order, from the spec."""
    shapes = json.loads((folder / "checkpoint" / "spec.json").read_text())["shapes"]
    norms = [k for k, v in shapes.items() if k.endswith(".weight") and len(v) == 1]
    return " ".join(str(shapes[k][0]) for k in norms)


def pruner_state(checkpoint: Path) -> dict:
    """The DemonPruner's saved state: in the checkpoint's spec (the harness's one channel
    for method state), or in ``pruner.json`` beside it (runs saved before that); {} if none."""
    spec = json.loads((checkpoint / "spec.json").read_text())
    method = spec.get("extra", {}).get("method") or {}
    if "pruner" in method:
        return method["pruner"]
    legacy = checkpoint / "pruner.json"
    return json.loads(legacy.read_text()) if legacy.exists() else {}


def row_of(folder: Path, variant: str, target: float, seed: int, metric: str) -> dict:
    """One finished run's row."""
    summary = json.loads((folder / "summary.json").read_text())
    state = pruner_state(folder / "checkpoint")
    history = state.get("history") or [{"dead": 0, "removed": 0}]
    steering = state.get("steering") or {}
    seconds = train_eval_seconds(summary)
    landed = {"weight": summary["weight_sparsity"], "neuron": summary["neuron_sparsity"],
              "flops": 1 - summary["inference_flops_ratio"]}[metric]  # fmt: skip
    return {
        "variant": variant, "target": target, "seed": seed, "metric": metric,
        "landed": landed, "test_acc": summary["test_acc"],
        "weight_sparsity": summary["weight_sparsity"],
        "neuron_sparsity": summary["neuron_sparsity"],
        "inference_flops_ratio": summary["inference_flops_ratio"],
        "train_flops_ratio": summary["train_flops_ratio"],
        "reached_step": steering.get("controller", {}).get("reached_at"),
        "dead_kept": history[-1]["dead"] - history[-1]["removed"],
        "revived": sum(e.get("revived", 0) for e in history),
        "train_seconds": seconds[0], "eval_seconds": seconds[1],
        "widths": widths(folder), "error": "",
    }  # fmt: skip


def run_one(out: Path, key: tuple, args: dict) -> dict:
    """Train (or reuse) one run in this process and return its row (or its error)."""
    variant, target, seed, metric = key
    torch.set_num_threads(args.get("threads", 1))
    folder = out / "runs" / f"{variant}-{metric}-{target:g}-s{seed}"
    try:
        if not (folder / "summary.json").exists():
            config = run_config(variant, target, seed, metric, args)
            resume = (folder / "checkpoint").exists()  # killed before its first save: start over
            run_training(config, folder, resume=resume, progress=False)
        return row_of(folder, variant, target, seed, metric)
    except Exception:  # noqa: BLE001 - a failed run is a row, the others go on
        empty = dict.fromkeys(COLUMNS, "")
        return {**empty, "variant": variant, "target": target, "seed": seed,
                "metric": metric, "error": traceback.format_exc()[-2000:]}  # fmt: skip


def write(out: Path, rows: list[dict], jobs: int) -> None:
    """targets.csv (one row per run) and targets.md (a table)."""
    rows = sorted(rows, key=lambda r: (r["variant"], r["target"], r["seed"]))
    with open(out / "targets.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    lines = [
        f"Machine: {platform.machine()}, {gpu}, torch {torch.__version__}, {jobs} runs side "
        "by side. `landed`: the sparsity reached in the target metric; `dead kept`: dead "
        "units left in the model at the end; `revived`: revivals over the run (a unit "
        "revived at several checks counts each time); train/eval s: wall time of the "
        "training loop and of evaluation (runs shared the machine: not for speed "
        "comparisons).",
        "",
        "| variant | target | seed | landed | test acc | weight sp. | neuron sp. | reached at "
        "step | dead kept | revived | train s | eval s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['variant']} | {r['target']:g} | {r['seed']} | failed: "
                         f"{r['error'].strip().splitlines()[-1]} |||||||||")  # fmt: skip
            continue
        lines.append(
            f"| {r['variant']} | {r['target']:g} {r['metric']} | {r['seed']} | "
            f"{r['landed']:.4f} | {r['test_acc']:.4f} | {r['weight_sparsity']:.3f} | "
            f"{r['neuron_sparsity']:.3f} | {r['reached_step']} | {r['dead_kept']} | "
            f"{r['revived']} | {r['train_seconds']:.0f} | {r['eval_seconds']:.0f} |"
        )
    (out / "targets.md").write_text("\n".join(lines) + "\n")
    (out / "summary.md").write_text(summary_table(rows))


def summary_table(rows: list[dict]) -> str:
    """Per (target, variant): seeds, mean +- sample sd of test accuracy, landing range."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if not r["error"]:
            groups.setdefault((float(r["target"]), r["variant"]), []).append(r)
    lines = [
        "| target | variant | seeds | test acc (mean +- sd) | landed (min-max) | neuron sp. "
        "| inference FLOPs | training FLOPs | reached |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (target, variant), rs in sorted(groups.items()):
        acc = [100 * float(r["test_acc"]) for r in rs]
        landed = [float(r["landed"]) for r in rs]
        sd = f"{statistics.stdev(acc):.2f}" if len(acc) > 1 else "n/a"
        reached = f"{sum(r['reached_step'] not in (None, '', 'None') for r in rs)}/{len(rs)}"
        if VARIANTS[variant].get("method", "demp") != "demp":
            reached = "n/a"
        lines.append(
            f"| {target:g} | {variant} | {len(rs)} | {statistics.mean(acc):.2f} +- {sd} | "
            f"{min(landed):.3f}-{max(landed):.3f} | "
            f"{statistics.mean(float(r['neuron_sparsity']) for r in rs):.3f} | "
            f"{statistics.mean(float(r['inference_flops_ratio']) for r in rs):.3f} | "
            f"{statistics.mean(float(r['train_flops_ratio']) for r in rs):.3f} | {reached} |"
        )
    return "\n".join(lines) + "\n\n" + widths_table(groups)


def widths_table(groups: dict[tuple, list[dict]]) -> str:
    """Mean final width of every normalization layer (module order), per target and variant."""
    lines = ["Mean final width of each normalization layer, in module order:", ""]
    for (target, variant), rs in sorted(groups.items()):
        columns = [list(map(int, str(r["widths"]).split())) for r in rs if r["widths"]]
        if columns and len({len(c) for c in columns}) == 1:
            mean = [round(sum(c) / len(c)) for c in zip(*columns, strict=True)]
            lines.append(f"- {target:g} {variant}: {' '.join(map(str, mean))}")
    return "\n".join(lines) + "\n"


def grid(args: argparse.Namespace) -> list[tuple]:
    """Every (variant, target, seed, metric), seed-major so that a cut-short grid is whole."""
    return [(v, t, s, args.metric) for s in args.seeds for t in args.targets for v in args.variants]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=["plain"], choices=sorted(VARIANTS))
    parser.add_argument("--metric", default="weight", choices=("weight", "neuron", "flops"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/targets"))
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=BASE["steps"])
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST files")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds after which no new run is started")  # fmt: skip
    parser.add_argument("--summarize", type=Path, default=None,
                        help="only rewrite summary.md beside this targets.csv")  # fmt: skip
    args = parser.parse_args()
    if args.summarize:
        with open(args.summarize) as f:
            table = summary_table(list(csv.DictReader(f)))
        (args.summarize.parent / "summary.md").write_text(table)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    options = {"threads": args.threads, "device": args.device, "steps": args.steps,
               "train_size": args.train_size, "test_size": args.test_size,
               "data_dir": args.data_dir}  # fmt: skip
    start, todo, rows = time.monotonic(), grid(args), []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context, max_tasks_per_child=1) as pool:
        running = set()
        while todo or running:
            late = args.deadline is not None and time.monotonic() - start > args.deadline
            while todo and len(running) < args.jobs and not late:
                running.add(pool.submit(run_one, args.out, todo.pop(0), options))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                rows.append(future.result())
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "widths"}),
                      flush=True)  # fmt: skip
            write(args.out, rows, args.jobs)
    print(f"{len(rows)} runs, {len(todo)} not started, {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
