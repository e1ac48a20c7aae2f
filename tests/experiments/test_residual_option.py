"""`demp train --residual per-block|coupled`: per-block residual units in the harness."""

import json

import pytest
from safetensors.torch import load_file

from demp.errors import DempError
from demp.experiments.cli.main import main
from demp.experiments.harness.config import TrainConfig

BASE = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "64", "--batch-size",
        "32", "--no-progress", "--model", "resnet18", "--width", "0.0625", "--method", "demp",
        "--steps", "24", "--reg-strength", "0.05", "--prune-every", "6",
        "--lr", "1e-2"]  # fmt: skip


def train(*args):
    return main(["train", *BASE, *map(str, args)])


def groups_at_start(out):
    for line in (out / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "check" and record["step"] == 0:
            return record
    raise AssertionError("no step-0 check record")


def test_per_block_run_resumes_into_the_same_layout(tmp_path, interrupt_at):
    assert train("--residual", "per-block", "--out", tmp_path / "straight") == 0
    disarm = interrupt_at(11)
    assert train("--residual", "per-block", "--out", tmp_path / "cut") == 130
    disarm()
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    a, b = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("straight", "cut"))
    assert a["params"] == b["params"] and a["test_acc"] == b["test_acc"]
    weights = [
        load_file(tmp_path / r / "checkpoint" / "model.safetensors") for r in ("straight", "cut")
    ]
    assert any(k.endswith("shortcut.selection") for k in weights[0])
    assert all(weights[0][k].equal(weights[1][k]) for k in weights[0])
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["residual"] == "per-block"


def test_per_block_has_more_units_than_coupled(tmp_path):
    assert train("--residual", "coupled", "--steps", 1, "--out", tmp_path / "c") == 0
    assert train("--residual", "per-block", "--steps", 1, "--out", tmp_path / "p") == 0
    coupled, per_block = (groups_at_start(tmp_path / r) for r in ("c", "p"))
    # ResNet-18 at 4 channels: the stem, 8 inner groups and 8 post-add groups per block,
    # instead of one stream per stage (width 4 x (1 + 2 x 30) = 244, 4 x (15 + 30) = 180)
    assert (coupled["units_initial"], per_block["units_initial"]) == (180, 244)
    assert len(per_block["live"]) == 17 and len(coupled["live"]) == 12
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["residual"] == "coupled"


def test_residual_mode_is_checked():
    with pytest.raises(DempError, match="residual must be one of auto, coupled, per-block"):
        TrainConfig(residual="per-stage", steps=1)
    assert TrainConfig(steps=1).residual == "auto"
    with pytest.raises(SystemExit):
        main(["train", "--residual", "per-stage"])


@pytest.mark.parametrize(
    "model,method,mode",
    [("resnet18", "demp", "per-block"), ("resnet50", "demp", "per-block"),
     ("resnet18", "snap", "coupled"), ("vgg16", "demp", "coupled"),
     ("resnet1d", "demp", "coupled")],
)  # fmt: skip
def test_auto_residual_is_per_block_for_demp_on_the_zoo_resnets(model, method, mode):
    assert TrainConfig(model=model, method=method, steps=1).residual_mode() == mode
    forced = TrainConfig(model=model, method=method, steps=1, residual="coupled")
    assert forced.residual_mode() == "coupled"


def test_a_default_demp_resnet_run_has_per_block_units(tmp_path):
    assert train("--steps", 1, "--out", tmp_path / "d") == 0
    assert groups_at_start(tmp_path / "d")["units_initial"] == 244
