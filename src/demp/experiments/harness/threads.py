"""How many torch threads a command uses: the one asked for, the environment's, or the free cores.

``--threads N`` (or ``threads`` in a TOML config) wins; an ``OMP_NUM_THREADS`` the user set
is left to torch; otherwise the command counts the cores free right now (from
``/proc/stat`` over a quarter second, Linux) and uses that many, at least one. Beside one
busy process on two cores that is one thread: torch's default of two spinning OpenMP
threads made a small run 3.5-4.2x slower there (up to 90x in issue #28's trials), one thread
1.0-1.1x; on an idle machine it is torch's default count. A passive OpenMP wait policy
was measured too and not adopted: it cost 64-102 % on the idle machine
(benchmarks/speed_cpu.md). Only the commands set threads; ``import demp`` sets nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SAMPLE_SECONDS = 0.25


def usable_cores() -> int:
    """Cores this process may run on (its affinity set, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(idle, total) jiffies of all CPUs, or None where /proc/stat is absent."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [float(v) for v in fields]
    return values[3] + (values[4] if len(values) > 4 else 0.0), sum(values)


def free_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """Cores idle over the next ``seconds`` (None: not measurable here)."""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    if before is None or after is None or after[1] <= before[1]:
        return None
    idle_share = (after[0] - before[0]) / (after[1] - before[1])
    return idle_share * (os.cpu_count() or 1)


def choose_threads(requested: int | None) -> tuple[int | None, str]:
    """The thread count to set (None: leave torch's) and why, in a few words."""
    if requested is not None:
        return requested, "--threads"
    if os.environ.get("OMP_NUM_THREADS"):
        return None, "OMP_NUM_THREADS"
    cores = usable_cores()
    free = free_cores()
    if free is None:
        return cores, "the usable cores"
    return max(1, min(cores, round(free))), f"{free:.1f} of {cores} cores free"


def apply_threads(requested: int | None) -> str:
    """Set torch's thread count for this command; the line that says what was chosen."""
    import torch

    count, why = choose_threads(requested)
    if count is not None:
        torch.set_num_threads(count)
    n = torch.get_num_threads()
    return f"{n} torch thread{'s' if n != 1 else ''} ({why})"
