"""``demp train --nproc N``: start N training processes under torchrun.

The command starts ``python -m torch.distributed.run --standalone --nproc_per_node=N -m
demp train ...`` with the same arguments; each process then finds torchrun's environment
(``WORLD_SIZE``, ``RANK``) and trains its share (see :mod:`demp.experiments.harness.ranks`).
"""

from __future__ import annotations

import os
import subprocess
import sys

from ...errors import DempError


def launch_needed(nproc: int | None) -> bool:
    """True when ``--nproc`` asks for processes that torchrun has not started yet."""
    if nproc is None:
        return False
    if nproc < 1:
        raise DempError(f"--nproc must be >= 1, got {nproc}")
    world = os.environ.get("WORLD_SIZE")
    if world is not None:  # already a torchrun worker
        if int(world) != nproc:
            raise DempError(f"--nproc {nproc} but torchrun started {world} processes")
        return False
    return nproc > 1


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``demp`` with ``argv`` in ``nproc`` processes; return torchrun's exit status."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "demp", *_without_nproc(argv)]  # fmt: skip
    env = {**os.environ}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        return subprocess.run(cmd, env=env, check=False).returncode
    except KeyboardInterrupt:  # torchrun forwards the signal; rank 0 saves a checkpoint
        return 130


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less ``--nproc N`` / ``--nproc=N`` (torchrun would take it for its own)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out
