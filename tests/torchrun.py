"""Run a test worker script under torchrun with 2 CPU processes."""

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
