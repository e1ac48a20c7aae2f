"""Runs of a sweep side by side: ``jobs`` processes, each with ``threads`` torch threads.

Two single-thread runs on a 2-core machine finish a sweep in about half the time of one
two-thread run after another (a small model gains little from a second thread). The runs
of one sweep then train under nearly the same conditions (a run that finds no partner,
at the end or after a failure, trains alone), so its time ratios stay comparable; they
are not the speed of a run alone (``benchmarks/speed.py`` measures that). A run that
fails does not stop the others: its error is printed and the sweep ends with an error
after the results are written. A sweep killed outright (SIGTERM, kill -9) takes its
runs down with it: each worker notices its parent is gone and stops at the end of its
step with a checkpoint, which the next sweep into the folder resumes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from ...errors import DempError
from ..harness.config import TrainConfig
from ..harness.threads import usable_cores


def stop_when_orphaned(poll: float = 1.0) -> threading.Thread:
    """Send this process SIGTERM once its parent is gone (a sweep killed by a signal).

    The training loop then stops at the end of its step with a checkpoint, so a worker
    never trains on into a folder that a new sweep may resume.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="demp-orphan-watch", daemon=True)
    thread.start()
    return thread


def train_one(config: TrainConfig, run_dir: Path, threads: int | None) -> dict[str, Any]:
    """Train (or resume) one run in this (worker) process and return its summary."""
    import torch

    from ..harness.runner import run_training

    stop_when_orphaned()
    if threads is not None:
        torch.set_num_threads(threads)
    resume = (run_dir / "checkpoint").exists()
    return run_training(config, run_dir, resume=resume, progress=False)


def run_side_by_side(
    runs: list[tuple[str, TrainConfig, Path]],
    jobs: int,
    threads: int | None,
    deadline: float | None,
    report: Callable[[str, dict[str, Any]], None],
) -> tuple[int, list[str]]:
    """Train ``runs`` in ``jobs`` processes.

    Args:
        runs: (name, config, run folder) in the order to start them.
        jobs: Processes side by side.
        threads: Torch threads per process (None: the usable cores over ``jobs``).
        deadline: Seconds after which no new run is started (None: no limit).
        report: Called with each finished run's name and summary.

    Returns:
        How many runs the deadline left unstarted, and the names of the runs that failed.

    Raises:
        DempError: If ``jobs`` or ``threads`` is below 1.
    """
    if jobs < 1 or (threads is not None and threads < 1):
        raise DempError(f"jobs and threads must be >= 1, got {jobs} and {threads}")
    if threads is None:  # the usable cores shared out: two runs on two cores, one each
        threads = max(1, usable_cores() // jobs)
    start, todo, failed = time.monotonic(), list(runs), []
    extra = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, **extra) as pool:
        running: dict[Future, str] = {}
        while todo or running:
            late = deadline is not None and time.monotonic() - start >= deadline
            while todo and len(running) < jobs and not late:
                name, config, run_dir = todo.pop(0)
                resume = (run_dir / "checkpoint").exists()
                print(f"{name}: {'resuming' if resume else 'training'}", flush=True)
                running[pool.submit(train_one, config, run_dir, threads)] = name
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                try:
                    report(name, future.result())
                except Exception as error:  # noqa: BLE001 - one failed run, the others go on
                    print(f"    {name} failed: {type(error).__name__}: {error}", flush=True)
                    failed.append(name)
    return len(todo), failed
