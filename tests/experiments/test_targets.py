"""Every method aims at the same target vocabulary: ``--target-metric weight|flops``."""

import json
import math

import pytest
import torch

from demp.experiments.cli.main import build_parser, main
from demp.methods import method_names

BASE = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "64", "--batch-size",
        "32", "--model", "resnet18", "--width", "0.125", "--no-progress", "--steps", "40",
        "--score-batches", "2", "--early-deadline", "2", "--lr", "0.05",
        "--prune-every", "4"]  # fmt: skip
BASELINES = [m for m in method_names("structured") if m not in ("dense", "demp")]


def _summary(tmp_path, *args):
    assert main(["train", *BASE, *args, "--out", str(tmp_path / "run")]) == 0
    return json.loads((tmp_path / "run" / "summary.json").read_text())


@pytest.mark.parametrize("method", BASELINES)
def test_baselines_stop_their_ranking_at_a_weight_target(method, tmp_path):
    s = _summary(tmp_path, "--method", method, "--target", "0.6", "--target-metric", "weight")
    # the shortest prefix of the ranking that reaches 60 %: at most one unit past it
    assert 0.6 <= s["weight_sparsity"] <= 0.63


def test_a_flops_target_is_met_in_flops(tmp_path):
    s = _summary(tmp_path, "--method", "snap", "--target", "0.5", "--target-metric", "flops")
    assert 0.5 <= 1 - s["inference_flops_ratio"] <= 0.53


def test_demp_lands_at_its_target_sparsity_never_past_it(tmp_path):
    s = _summary(tmp_path, "--method", "demp", "--target-sparsity", "0.6", "--target-metric",
                 "weight", "--reg-strength", "0.05", "--variant", "paper")  # fmt: skip
    assert 0.57 <= s["weight_sparsity"] <= 0.6
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["demp"]["target_metric"] == "weight"  # the flat flag went to DemPConfig
    # the controller's trajectory is in the check lines and plotted in the run folder
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    checks = [json.loads(line) for line in lines if '"check"' in line][1:]  # after step 0
    assert checks and all("lambda" in c and "target_sparsity" in c for c in checks)
    assert max(c["target_sparsity"] for c in checks) <= 0.6
    assert (tmp_path / "run" / "target.png").exists()


def test_the_demo_aims_demp_at_a_stated_target():
    from demp.experiments.cli.demo import demo_configs

    configs, _note = demo_configs(100, None, 0.7)
    assert configs["demp"].demp.target_sparsity == 0.7
    assert configs["demp"].demp.target_metric == "weight"
    assert configs["dense"].method == "dense"
    args = build_parser().parse_args(["demo"])
    assert args.target_sparsity == 0.8


def test_the_learning_rate_schedule_starts_again_at_a_demp_restart(tmp_path):
    s = _summary(tmp_path, "--method", "demp", "--target-sparsity", "0.6", "--reg-strength",
                 "0.05", "--variant", "paper", "--restart", "true", "--log-every", "1")  # fmt: skip
    assert 0.57 <= s["weight_sparsity"] <= 0.6
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    restarts = [e["step"] for e in lines if e["kind"] == "check" and e.get("restarted")]
    assert len(restarts) == 1
    at = restarts[0]
    lr = {e["step"]: e["lr"] for e in lines if e["kind"] == "step"}  # lr of step - 1
    total = 40

    # cosine from 0.05 to 0 over the run, then again over the steps left after the restart
    def cosine(step, span):
        return 0.05 * (1 + math.cos(math.pi * step / span)) / 2

    assert lr[at] == pytest.approx(cosine(at - 1, total))
    assert lr[at + 1] == pytest.approx(0.05)
    assert lr[total] == pytest.approx(cosine(total - 1 - at, total - at))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["demp"]["restart"] is True


@pytest.mark.parametrize("stop", [20, 34])  # the early copy held / the schedule restarted
def test_a_run_interrupted_around_the_restart_resumes_exactly(tmp_path, interrupt_at, stop):
    args = ["--method", "demp", "--target-sparsity", "0.6", "--reg-strength", "0.05",
            "--variant", "paper", "--restart", "true", "--rewind", "0.0"]  # fmt: skip
    straight = _summary(tmp_path / "a", *args)
    disarm = interrupt_at(stop)
    assert main(["train", *BASE, *args, "--out", str(tmp_path / "b" / "run")]) == 130
    disarm()
    assert main(["train", "--resume", str(tmp_path / "b" / "run"), "--no-progress"]) == 0
    resumed = json.loads((tmp_path / "b" / "run" / "summary.json").read_text())
    assert resumed["test_acc"] == straight["test_acc"]
    assert resumed["params"] == straight["params"]
    from safetensors.torch import load_file

    a, b = (load_file(tmp_path / r / "run" / "checkpoint" / "model.safetensors") for r in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(x) for x in (tmp_path / "a" / "run" / "metrics.jsonl").open()]
    at = next(e["step"] for e in lines if e["kind"] == "check" and e.get("rewound"))
    assert 20 < at < 34  # one interruption before the restart, one after it
