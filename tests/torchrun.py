"""Run a test worker script under torchrun with 2 CPU processes, and leave it cleanly."""

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent  # the worker scripts live here


def torchrun(script: str, out: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 tests/<script> <out>``, one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(TESTS / script), str(out)]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def finished(out: Path) -> list[str]:
    """The ranks that reached :func:`leave` (their marker files in ``out``), sorted."""
    return sorted(p.name for p in Path(out).glob("finished-rank*"))


def leave(out: str) -> None:
    """End a worker once every rank's work is done, without the interpreter's teardown.

    Each rank writes ``out/finished-rank<R>`` (the test checks every rank got here),
    waits for the others, and exits with status 0 through ``os._exit``. The Hugging Face
    Trainer's worker has aborted in CI after its work was done, while the process shut
    down ("terminate called without an active exception" from a C++ thread still up at
    exit, even after ``destroy_process_group``): skipping that teardown keeps the test
    about what the ranks computed. A rank that fails before this point still fails.
    """
    import torch.distributed as dist  # the workers have torch; the tests need not import it

    Path(out, f"finished-rank{dist.get_rank()}").write_text("done\n")
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
