"""Entry point of the ``demp`` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ...errors import DempError
from ..analysis import ANALYSES
from ..bench.presets import GROUPS, PRESETS
from ..harness.threads import apply_threads
from .launch import launch, launch_needed
from .options import COMPILE_HELP, add_train_options, overrides_from_args, positive_int

THREADS_HELP = "torch threads (default: the cores free at the start, or OMP_NUM_THREADS)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``demp`` and its subcommands."""
    parser = argparse.ArgumentParser(prog="demp", description="Demon Pruning (DemP) for PyTorch")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one run into a run folder")
    train.add_argument("--config", type=Path, help="TOML file of options (CLI flags override)")
    train.add_argument("--out", type=Path, help="run folder to create")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run folder")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="train with N processes under torchrun (DistributedDataParallel)",
    )
    train.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="STEP",
        help="save a checkpoint and exit at this step (continue with --resume)",
    )
    add_train_options(train)

    report = sub.add_parser("report", help="compare finished runs (Markdown table + plot)")
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    report.add_argument("--out", type=Path, help="folder of report.md/png (default: next to runs)")

    _add_bench(sub)

    analyze = sub.add_parser("analyze", help="the paper's neuron-death analyses (JSON + PNG)")
    analyze.add_argument("name", choices=(*ANALYSES, "all"), help="which analysis")
    analyze.add_argument(
        "--size",
        choices=("tiny", "quick", "full"),
        default="quick",
        help="tiny: seconds; quick: minutes on 2 cores; full: hours",
    )
    analyze.add_argument("--out", type=Path, default=Path("runs/analyze"))
    analyze.add_argument("--data-dir", default=None, help="folder of MNIST/Fashion-MNIST files")
    analyze.add_argument("--no-progress", action="store_true")
    analyze.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)

    demo = sub.add_parser("demo", help="dense vs DemP side by side on built-in data")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--steps", type=int, default=1250)
    demo.add_argument("--data-dir", type=Path, default=None)
    demo.add_argument("--target-sparsity", type=float, default=0.8,
                      help="DemP's target weight sparsity (a controller sets lambda)")  # fmt: skip
    demo.add_argument("--no-progress", action="store_true")
    demo.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    demo.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    return parser


def _add_bench(sub: argparse._SubParsersAction) -> None:
    """The ``demp bench`` subcommand's options."""
    bench = sub.add_parser("bench", help="DemP vs the baselines: a sweep of runs and a table")
    bench.add_argument("--preset", choices=tuple(PRESETS), default="quick")
    bench.add_argument("--out", type=Path, default=None, help="default: runs/bench-<preset>")
    bench.add_argument("--data-dir", type=Path, default=None)
    bench.add_argument("--no-progress", action="store_true")
    bench.add_argument("--jobs", type=int, default=1, help="runs side by side (own processes)")
    bench.add_argument("--threads", type=positive_int, default=None,
                       help="torch threads per run (default: usable cores / --jobs)")  # fmt: skip
    bench.add_argument(
        "--include",
        nargs="+",
        default=[],
        choices=tuple(GROUPS),
        help="method groups added to the preset (at its targets)",
    )
    bench.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    bench.add_argument("--deadline", type=float, default=None,
                       help="seconds after which no new run is started")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the ``demp`` command; return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            if launch_needed(args.nproc):
                return launch(args.nproc, argv)
            return _train(args)
        if args.command in ("demo", "analyze"):
            print(f"demp {args.command}: {apply_threads(args.threads)}", flush=True)
        if args.command == "report":
            return _report(args)
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "bench":
            from ..bench.sweep import run_bench

            out = args.out or Path(f"runs/bench-{args.preset}")
            table = run_bench(args.preset, out, args.data_dir, not args.no_progress,
                              args.jobs, args.threads, args.deadline,
                              tuple(args.include), compile=args.compile)  # fmt: skip
            print(table)
            print(f"\nresults: {out / 'results.md'}, {out / 'results.csv'}")
            return 0
        from .demo import run_demo

        return run_demo(args.out, args.steps, args.data_dir, not args.no_progress,
                        args.target_sparsity, compile=args.compile)  # fmt: skip
    except DempError as err:
        print(f"demp: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder: the files before stay intact
        print(f"demp: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _read_config(file: Path) -> dict[str, Any]:
    """A run folder's config.json, or a one-line error saying what is wrong with it."""
    from ..harness.rundir import read_json_object

    try:
        return read_json_object(file)
    except DempError as err:
        raise DempError(f"cannot resume: {err}") from err


def _train(args: argparse.Namespace) -> int:
    from ..harness.config import TrainConfig, load_toml, merge
    from ..harness.runner import run_training

    overrides = overrides_from_args(args)
    if args.resume is not None:
        extra = set(overrides) - {"device", "threads", "compile"}
        if extra or args.config or args.out:
            raise DempError(f"--resume takes the run's own config; drop {sorted(extra) or '--out'}")
        config_file = args.resume / "config.json"
        if not config_file.is_file():
            raise DempError(f"cannot resume: {config_file} not found (not a demp run folder)")
        saved = _read_config(config_file)
        saved.setdefault("data_seed", saved.get("seed", 0))  # folders from before data_seed
        config = TrainConfig.from_dict(merge(saved, overrides))
        _first_line(config, args.resume, "resuming")
        summary = run_training(config, args.resume, resume=True, progress=not args.no_progress,
                               stop_after=args.stop_after)  # fmt: skip
        _print_summary(summary, args.resume)
        return 0
    if args.out is None:
        raise DempError("give --out RUN_DIR (or --resume RUN_DIR)")
    base: dict[str, Any] = load_toml(args.config) if args.config else {}
    config = TrainConfig.from_dict(merge(base, overrides))
    _first_line(config, args.out, "training")
    summary = run_training(config, args.out, progress=not args.no_progress,
                           stop_after=args.stop_after)  # fmt: skip
    _print_summary(summary, args.out)
    return 0


def _first_line(config: Any, out: Path, doing: str) -> None:
    """Set the run's torch threads, and say what runs where with how many (rank 0)."""
    threads = apply_threads(config.threads)
    if os.environ.get("RANK", "0") == "0":
        compiled = "; torch.compile (recompiled after every cut)" if config.compile else ""
        print(f"demp train: {doing} {config.method} {config.model} on {config.dataset} -> "
              f"{out}; {threads}{compiled}", flush=True)  # fmt: skip


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    if not summary:  # not rank 0, or stopped before the end
        return
    executed = summary.get("executed_train_flops_ratio", summary["train_flops_ratio"])
    masked = (
        f" with sparse kernels ({executed:.3f} on dense hardware)"
        if summary.get("masked_weights")
        else ""
    )
    print(
        f"{summary['method']} {summary['model']} on {summary['dataset']}: "
        f"test acc {summary['test_acc']:.4f}, neuron sparsity {summary['neuron_sparsity']:.1%}, "
        f"weight sparsity {summary['weight_sparsity']:.1%}, train FLOPs ratio "
        f"{summary['train_flops_ratio']:.3f}{masked}, training {summary['train_seconds']:.0f} s "
        f"(+ evaluation {summary['eval_seconds']:.0f} s) -> {out}"
    )


def _analyze(args: argparse.Namespace) -> int:
    from ..analysis import run_analysis

    names = tuple(ANALYSES) if args.name == "all" else (args.name,)
    for name in names:
        result = run_analysis(name, args.size, args.out, data_dir=args.data_dir,
                              progress=not args.no_progress)  # fmt: skip
        print(f"{name} ({args.size}, {result['seconds']:.0f} s): {result['json']}, {result['png']}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..reports.compare import write_report

    out = args.out or args.runs[0].parent / "report"
    print(write_report(args.runs, out))
    print(f"\nwritten: {out / 'report.md'}, {out / 'report.png'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
