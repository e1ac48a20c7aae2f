"""The Hugging Face Trainer callback under torchrun with 2 CPU processes (gloo)."""

import json

import pytest

pytest.importorskip("transformers")
from torchrun import finished, torchrun  # noqa: E402


def test_trainer_callback_prunes_the_same_units_on_every_rank(tmp_path):
    done = torchrun("hf_ddp_worker.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert finished(tmp_path) == ["finished-rank0", "finished-rank1"]  # every rank did its work
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world"] == 2 and result["wrapper"] == "DistributedDataParallel"
    assert result["events"] == [[8, 15], [12, 0]]  # the forced-dead units, at the same step
    assert result["widths"] == [54, 59]  # as the single-process test (test_hf.py)
    assert result["saved"] == ["demp_pruner.json", "demp_spec.json"]  # written once, by rank 0
    assert result["same"]  # the ranks' parameters are identical after training on with
    # the rebuilt wrapper (each rank trained on its own shard, gradients all-reduced)
