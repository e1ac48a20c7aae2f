"""The `demp` command: train runs, run folders, plots, resume, report, config files."""

import json
import shutil

import matplotlib.image
import pytest
import torch

import demp
from demp.experiments.cli.main import main

BASE = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "64", "--batch-size",
        "32", "--no-progress"]  # fmt: skip


def train(*args):
    return main(["train", *BASE, *map(str, args)])


def test_train_writes_every_artefact(tmp_path):
    out = tmp_path / "x"
    assert train("--model", "mlp", "--method", "demp", "--steps", 60, "--out", out) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.jsonl", "summary.json", "checkpoint"} <= names
    assert {"curves.png", "live_units.png", "dead_ratio.png", "widths.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(png).ndim == 3
    summary = json.loads((out / "summary.json").read_text())
    for key in ("test_acc", "neuron_sparsity", "weight_sparsity", "train_flops_ratio",
                "inference_flops_ratio", "wall_seconds", "seconds_per_step", "train_seconds",
                "eval_seconds"):  # fmt: skip
        assert key in summary
    per_step = summary["seconds_per_step"]  # training: every phase but eval and checkpoints
    training = sum(v for k, v in per_step.items() if k not in ("eval", "checkpoint"))
    assert summary["train_seconds"] == pytest.approx(60 * training)
    assert summary["eval_seconds"] == pytest.approx(60 * per_step["eval"])
    assert summary["train_seconds"] + summary["eval_seconds"] <= summary["wall_seconds"]
    assert summary["steps"] == 60 and 0 <= summary["test_acc"] <= 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert kinds == {"step", "epoch", "check"}
    assert [r["step"] for r in records if r["kind"] == "epoch"] == [8 * i for i in range(1, 8)] + [
        60
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "mlp" and config["demp"]["reg_strength"] == 1e-3


def test_eval_every_evaluates_every_nth_epoch_and_the_last_step(tmp_path):
    out = tmp_path / "x"
    assert train("--model", "mlp", "--method", "dense", "--steps", 60, "--eval-every", 3,
                 "--out", out) == 0  # fmt: skip
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "epoch"] == [24, 48, 60]
    assert train("--model", "mlp", "--steps", 8, "--eval-every", 0, "--out", tmp_path / "y") == 2


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "x"
    assert train("--model", "mlp", "--method", "dense", "--steps", 8, "--out", out) == 0
    assert train("--model", "mlp", "--method", "dense", "--steps", 8, "--out", out) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_interrupted_run_resumes_to_the_same_result(tmp_path, interrupt_at):
    args = ["--model", "resnet18", "--width", "0.125", "--method", "demp", "--steps", 48,
            "--reg-strength", 0.05, "--prune-every", 8, "--lr", 1e-2]  # fmt: skip
    assert train(*args, "--out", tmp_path / "straight") == 0

    disarm = interrupt_at(21)
    assert train(*args, "--out", tmp_path / "cut") == 130
    assert not (tmp_path / "cut" / "summary.json").exists()
    disarm()
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0

    a = json.loads((tmp_path / "straight" / "summary.json").read_text())
    b = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert b["steps"] == 48 and a["params"] == b["params"] and a["test_acc"] == b["test_acc"]
    ckpt = [tmp_path / r / "checkpoint" / "model.safetensors" for r in ("straight", "cut")]
    from safetensors.torch import load_file

    sa, sb = load_file(ckpt[0]), load_file(ckpt[1])
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    steps = [r["step"] for r in map(json.loads, lines) if r["kind"] == "step"]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


def test_report_compares_two_runs(tmp_path, capsys):
    for method in ("dense", "demp", "magnitude"):
        # the MLP's two layers are its first and its output layer: mask them too
        extra = ("--dense-first-last", "false") if method == "magnitude" else ()
        assert train("--model", "mlp", "--method", method, "--steps", 16, *extra, "--out",
                     tmp_path / method) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["report", str(tmp_path / "dense"), str(tmp_path / "demp"),
                 str(tmp_path / "magnitude"), "--out", str(tmp_path / "rep")]) == 0  # fmt: skip
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| dense | dense |" in text and "| demp | demp (lambda 0.001) |" in text
    masked = next(line for line in text.splitlines() if line.startswith("| magnitude |"))
    cells = [c.strip() for c in masked.strip("|").split("|")]
    assert float(cells[6]) < 1.0 and cells[7] == "1.000"  # sparse count, dense hardware
    assert "1.00x" in text  # the dense run against itself
    assert (tmp_path / "rep" / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_toml_config_with_cli_overrides(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'dataset = "synthetic"\nmodel = "mlp"\nmethod = "demp"\nsteps = 12\n'
        "train_size = 128\ntest_size = 32\nbatch_size = 32\n[demp]\nreg_strength = 0.5\n"
        'reg_target = "all"\n'
    )
    out = tmp_path / "x"
    assert main(["train", "--config", str(config), "--steps", "8", "--reg-strength", "0.25",
                 "--schedule", "one-cycle", "--warmup", "cosine", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    saved = json.loads((out / "config.json").read_text())
    assert saved["steps"] == 8 and saved["model"] == "mlp"
    assert saved["demp"]["reg_strength"] == 0.25 and saved["demp"]["reg_target"] == "all"
    assert saved["demp"]["schedule"]["warmup"] == "cosine"


def test_bad_options_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = \n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "y")]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    bad.write_text("stepz = 3\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "y")]) == 2
    assert "unknown run options: ['stepz']" in capsys.readouterr().err
    assert train("--model", "mlp", "--out", tmp_path / "z") == 2
    assert "steps or epochs" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "demp", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "train" in result.stdout and demp.__version__


def test_shipped_config_files_are_valid():
    from pathlib import Path

    from demp.experiments.harness.config import TrainConfig, load_toml

    files = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))
    assert files
    for path in files:
        config = TrainConfig.from_dict(load_toml(path))
        assert config.total_steps(100) > 0


def test_train_help_shows_each_options_default(capsys):
    from demp.experiments.harness.config import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    run, cfg = TrainConfig(steps=1), demp.DemPConfig()
    assert f"batch size (default: {run.batch_size})" in text
    assert f"(default: {run.residual})" in text and f"(default: {run.optimizer})" in text
    assert "the controller's start) (default: paper 0.001 / plus 0.05)" in text
    assert cfg.reg_strength == 0.001  # without a target: the paper's variant
    assert "be reached (default: paper 0.3 / plus 0.15)" in text
    assert "training length in steps (wins over --epochs) (default" not in text  # None: none


def test_report_times_training_apart_from_evaluation(tmp_path):
    from demp.experiments.reports.compare import load_runs, markdown

    for name, train_s, eval_s in (("dense", 10.0, 7.0), ("demp", 4.0, 1.0)):
        folder = tmp_path / name
        folder.mkdir()
        summary = {"method": name, "test_acc": 0.5, "neuron_sparsity": 0.0,
                   "weight_sparsity": 0.0, "train_flops_ratio": 1.0,
                   "inference_flops_ratio": 1.0, "wall_seconds": 99.0,
                   "train_seconds": train_s, "eval_seconds": eval_s}  # fmt: skip
        (folder / "summary.json").write_text(json.dumps(summary))
        config = {"demp": {"reg_strength": 1e-3}} if name == "demp" else {}
        (folder / "config.json").write_text(json.dumps(config))
    table = markdown(load_runs([tmp_path / "dense", tmp_path / "demp"]))
    assert "| 10 | 7 | 1.00x |" in table and "| 4 | 1 | 2.50x |" in table  # not 99 s


def test_truncate_after_keeps_every_line_of_the_resume_step_and_none_after(tmp_path):
    """A resume from step 20 keeps step 20's lines (its check, its epoch) and drops 21+."""
    import json

    from demp.experiments.harness.rundir import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    records = [{"kind": "check", "step": 0}, {"kind": "step", "step": 10},
               {"kind": "step", "step": 20}, {"kind": "check", "step": 20},
               {"kind": "epoch", "step": 20}, {"kind": "step", "step": 21},
               {"kind": "check", "step": 30}]  # fmt: skip
    for r in records:
        log.write(r)
    with log.path.open("a") as f:
        f.write('{"kind": "step", "st')  # a torn last line
    log.truncate_after(20)
    kept = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert kept == records[:5]


def test_a_finished_run_says_so_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *BASE, "--steps", "4", "--method", "dense", "--out", str(run)]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(run), "--no-progress"]) != 0
    assert "is a finished run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_checkpoint_of_another_width_is_refused(tmp_path, capsys):
    narrow, wide = tmp_path / "narrow", tmp_path / "wide"
    for out, width in ((narrow, "0.125"), (wide, "0.25")):
        argv = ["train", *BASE, "--steps", "8", "--method", "dense", "--width", width,
                "--stop-after", "4", "--out", str(out)]  # fmt: skip
        assert main(argv) == 0
    shutil.rmtree(wide / "checkpoint")
    shutil.copytree(narrow / "checkpoint", wide / "checkpoint")
    assert main(["train", "--resume", str(wide), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "another architecture or width" in err and "width 0.25" in err
