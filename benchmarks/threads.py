"""Training time by torch thread count and OpenMP wait policy, idle and beside a busy process.

Each cell is one fresh ``demp train`` process (its environment set before torch loads) on
synthetic data; the time is the run's own training time (``train_seconds`` of its summary,
evaluation excluded). "busy" starts one single-thread busy loop (``while True: pass``) for
the cell and stops it after. Ratios are taken against torch's defaults (its thread count,
OpenMP's default wait policy: what the command did before) on the idle machine, same run.

    .venv/bin/python benchmarks/threads.py [--out runs/threads] [--md FILE] \\
        [--workloads small demo] [--repeats 2] [--steps N]

Workloads: ``small`` is issue #28's 60-step ``--method magnitude`` run (the default
ResNet-18 at width 1/4 on 12x12 synthetic images); ``demo`` is
12 steps of ``demp demo``'s model (ResNet-18 at width 1/4) on Fashion-MNIST (28x28).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

WORKLOADS = {
    "small": ["--method", "magnitude", "--steps", "60", "--train-size", "512",
              "--test-size", "64"],
    "demo": ["--model", "resnet18", "--width", "0.25", "--method", "dense", "--steps", "12",
             "--train-size", "2048", "--test-size", "64", "--dataset", "fashion-mnist"],
}  # fmt: skip
CORES = str(os.cpu_count() or 1)
# (name, environment); None: the demp command as it now runs by itself. The others call
# the CLI's main() in a plain interpreter (no wait policy set) with torch's thread count
# given through OMP_NUM_THREADS, which the command leaves alone.
SETTINGS = [
    ("torch default (before)", {"OMP_NUM_THREADS": CORES}),
    ("passive", {"OMP_NUM_THREADS": CORES, "OMP_WAIT_POLICY": "PASSIVE"}),
    ("1 thread", {"OMP_NUM_THREADS": "1"}),
    ("demp auto (now)", None),
]


def train_seconds(workload: str, env: dict[str, str] | None, out: Path, steps: int | None) -> float:
    """One run in a fresh process; its training seconds."""
    shutil.rmtree(out, ignore_errors=True)
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if env is None:  # the demp command as a user runs it: its own defaults
        cmd, full = [str(Path(sys.executable).with_name("demp"))], base
    else:  # a plain interpreter: no wait policy set before torch loads
        cmd = [sys.executable, "-c", "from demp.experiments.cli.main import main; "
               "import sys; sys.exit(main(sys.argv[1:]))"]  # fmt: skip
        full = {**base, **env}
    args = ["train", "--dataset", "synthetic", "--batch-size", "32", "--no-progress",
            *WORKLOADS[workload], *(["--steps", str(steps)] if steps else []),
            "--out", str(out)]  # fmt: skip
    subprocess.run([*cmd, *args], env=full, check=True, capture_output=True)
    return float(json.loads((out / "summary.json").read_text())["train_seconds"])


def measure(
    workload: str, load: str, env: dict[str, str] | None, out: Path, repeats: int, steps: int | None
) -> float:
    """Median training seconds of ``repeats`` runs, beside a busy loop when ``load`` is busy."""
    busy = None
    if load == "busy":
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        runs = (train_seconds(workload, env, out, steps) for _ in range(repeats))
        return statistics.median(runs)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def main() -> None:
    """Measure every (workload, load, setting) cell and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/threads"))
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS),
                        default=["small", "demo"])  # fmt: skip
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="override every workload's steps")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        f"machine: {machine}",
        "",
        "| workload | setting | idle s | beside a busy process s | busy / idle | idle / before |",
        "|---|---|---|---|---|---|",
    ]
    for workload in args.workloads:
        cells = {}
        for name, env in SETTINGS:
            for load in ("idle", "busy"):
                cells[name, load] = measure(workload, load, env, args.out / "run", args.repeats,
                                            args.steps)  # fmt: skip
                print(workload, name, load, f"{cells[name, load]:.2f} s", flush=True)
        base = cells[SETTINGS[0][0], "idle"]
        for name, _ in SETTINGS:
            idle, busy = cells[name, "idle"], cells[name, "busy"]
            lines.append(f"| {workload} | {name} | {idle:.2f} | {busy:.2f} | {busy / idle:.1f} | "
                         f"{idle / base:.2f} |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    if args.md is not None:
        args.md.write_text(table + "\n")


if __name__ == "__main__":
    main()
