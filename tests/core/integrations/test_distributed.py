"""DemP under torchrun with 2 CPU processes (gloo): ranks agree, match one process."""

import json

import torch
from ddp_worker import run
from torchrun import torchrun


def test_two_process_ddp_matches_single_process(tmp_path):
    done = torchrun("ddp_worker.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert len(result["events"]) >= 2, result  # several prune events with removals
    assert all(e["same"] for e in result["events"]) and result["same_at_end"]

    model, events, widths = run(world=1, rank=0)
    assert widths == result["widths"]
    assert [(e["step"], e["removed"]) for e in events] == [
        (e["step"], e["removed"]) for e in result["events"]
    ]
    saved = torch.load(tmp_path / "params.pt", weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(saved[key], value, rtol=1e-6, atol=1e-8)
