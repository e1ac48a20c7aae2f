"""DemP under torchrun with 2 CPU processes (gloo): ranks agree, match one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parents[2]  # tests/, where ddp_worker.py lives


def test_two_process_ddp_matches_single_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "ddp_worker.py"), str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert len(result["events"]) >= 2, result  # several prune events with removals
    assert all(e["same"] for e in result["events"]) and result["same_at_end"]

    sys.path.insert(0, str(HERE))
    from ddp_worker import run

    model, events, widths = run(world=1, rank=0)
    assert widths == result["widths"]
    assert [(e["step"], e["removed"]) for e in events] == [
        (e["step"], e["removed"]) for e in result["events"]
    ]
    saved = torch.load(tmp_path / "params.pt", weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(saved[key], value, rtol=1e-6, atol=1e-8)
