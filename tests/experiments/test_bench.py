"""`demp bench`: the quick preset end to end, restart skipping, runs.csv, preset contents."""

import csv
import json

import pytest

import demp
from demp.experiments.bench import runs as runs_module
from demp.experiments.bench.parallel import run_side_by_side
from demp.experiments.bench.presets import PRESETS, Preset
from demp.experiments.bench.runs import collect_runs, read_runs_csv, run_row
from demp.experiments.cli.main import main
from demp.experiments.harness.config import TrainConfig

QUICK_METHODS = ["dense", "demp", "snap", "cropit-s", "earlysnap", "earlycrop-s", "slimming"]
UNSTRUCTURED = ["magnitude", "snip", "set", "rigl"]


def test_quick_preset_runs_every_method_and_skips_finished_runs(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "--preset", "quick", "--out", str(out), "--no-progress"]
    assert main([*args, "--include", "unstructured"]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(r["method"] for r in rows) == sorted(QUICK_METHODS + UNSTRUCTURED)
    dense = next(r for r in rows if r["method"] == "dense")
    assert float(dense["time_ratio"]) == 1.0 and float(dense["neuron_sparsity"]) == 0.0
    for r in rows:
        if r["method"] in UNSTRUCTURED:  # masks: the weight target, on dense hardware 1.0
            assert abs(float(r["weight_sparsity"]) - 0.5) < 1e-3
            assert float(r["executed_inference_flops_ratio"]) == 1.0
            assert float(r["inference_flops_ratio"]) < 1.0
        elif r["method"] not in ("dense", "demp"):
            assert abs(float(r["neuron_sparsity"]) - 0.5) < 12 / 360  # one unit per group
            assert r["executed_inference_flops_ratio"] == r["inference_flops_ratio"]
    table = (out / "results.md").read_text()
    assert "| snap | 0.5 | 1 |" in table and "| demp | 0.05 | 1 |" in table
    assert "inference FLOPs on dense hardware" in table
    assert table.startswith("# demp bench quick\n")
    assert (out / "accuracy_vs_sparsity.png").read_bytes()[:4] == b"\x89PNG"
    # layout: aggregated files at the top, one folder per run under runs/
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy_vs_sparsity.png", "results.csv", "results.md", "runs", "runs.csv"
    ]  # fmt: skip
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(r["run"] for r in rows)
    run_rows = read_runs_csv(out / "runs.csv")
    assert [r["run"] for r in run_rows] == [r["run"] for r in rows]  # sweep order
    demp_row = next(r for r in run_rows if r["method"] == "demp")
    assert demp_row["level"] == demp_row["reg_strength"] == 0.05 and demp_row["seed"] == 0
    for key in ("test_acc", "test_loss", "params", "units", "train_flops", "steps", "epochs"):
        assert isinstance(demp_row[key], (int, float)), key
    assert any(key.startswith("seconds_per_step_") for key in demp_row)
    # the aggregated files can be rebuilt from runs.csv alone
    rebuilt = tmp_path / "rebuilt"
    assert runs_module.main([str(out / "runs.csv"), str(rebuilt), "--title", "x"]) == 0
    assert (rebuilt / "results.csv").read_text() == (out / "results.csv").read_text()
    capsys.readouterr()
    assert main([*args, "--include", "unstructured"]) == 0
    assert capsys.readouterr().out.count("finished earlier, skipped") == 11


def write_run(folder, summary, config):
    folder.mkdir(parents=True)
    scalars = dict.fromkeys(("test_acc", "neuron_sparsity", "weight_sparsity"), 0.5)
    scalars |= {"wall_seconds": 2.0, "train_flops_ratio": 1.0, "inference_flops_ratio": 1.0}
    (folder / "summary.json").write_text(json.dumps({**scalars, **summary}))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.jsonl").write_text("{}\n")


def test_runs_csv_flattens_summaries_and_orders_like_a_sweep(tmp_path):
    summary = {"method": "demp", "seed": 1, "test_acc": 0.5, "target": None,
               "notes": ["a", "b"], "seconds_per_step": {"data": 0.1, "compute": 0.2},
               "live": [1, 2], "new_scalar": 3}  # fmt: skip
    write_run(
        tmp_path / "demp-0.01-s1", summary, {"method": "demp", "demp": {"reg_strength": 0.01}}
    )
    write_run(tmp_path / "snap-0.5-s0", {"method": "snap", "seed": 0, "target": 0.5, "notes": []},
              {"method": "snap", "target": 0.5})  # fmt: skip
    write_run(tmp_path / "dense-s0", {"method": "dense", "seed": 0, "notes": []}, {})
    (tmp_path / "unfinished").mkdir()
    rows = collect_runs(tmp_path)
    assert [r["run"] for r in rows] == ["dense-s0", "snap-0.5-s0", "demp-0.01-s1"]
    row = rows[2]
    assert row["level"] == row["reg_strength"] == 0.01 and row["target"] is None
    assert row["seconds_per_step_data"] == 0.1 and row["seconds_per_step_compute"] == 0.2
    assert row["notes"] == "a; b" and row["new_scalar"] == 3
    assert rows[1]["level"] == rows[1]["target"] == 0.5
    assert run_row(tmp_path / "unfinished") is None
    assert runs_module.main([str(tmp_path), str(tmp_path / "out")]) == 0
    back = read_runs_csv(tmp_path / "out" / "runs.csv")
    assert list(back[0])[:6] == ["run", "method", "level", "target", "reg_strength", "seed"]
    assert back[2]["notes"] == "a; b" and back[0]["level"] is None and back[2]["seed"] == 1
    (tmp_path / "dense-s0" / "summary.json").write_text("[1]")
    with pytest.raises(demp.DempError, match="JSON object"):
        collect_runs(tmp_path)


def test_presets_cover_every_method_seed_and_level():
    cpu = PRESETS["cpu"].runs()
    assert len(cpu) == 2 * (1 + 4 + 5 * 4)
    names = [n for n, _ in cpu]
    assert len(set(names)) == len(names) and "earlycrop-s-0.55-s1" in names
    assert PRESETS["paper"].base["dataset"] == "cifar10"


def test_results_time_ratio_is_training_only(tmp_path):
    from demp.experiments.bench.results import collect

    phases = {"data": 0.1, "compute": 0.3, "pruner_noise": 0.1, "eval": 0.5, "checkpoint": 1}
    dense = {"method": "dense", "steps": 10, "wall_seconds": 30.0,
             **{f"seconds_per_step_{k}": v for k, v in phases.items()}}  # fmt: skip
    demp_row = {"method": "demp", "steps": 10, "wall_seconds": 20.0,
                "train_seconds": 2.5, "eval_seconds": 0.5}  # fmt: skip
    rows = collect([dense, demp_row])
    assert rows[0]["train_seconds"] == pytest.approx(5.0)  # 10 x (0.1 + 0.3 + 0.1)
    assert rows[0]["eval_seconds"] == pytest.approx(5.0)
    assert rows[0]["time_ratio"] == pytest.approx(1.0)
    assert rows[1]["time_ratio"] == pytest.approx(0.5)  # 2.5 / 5, not 20 / 30


def test_long_preset_matches_every_method_at_each_weight_level():
    runs = PRESETS["long"].runs()
    assert len(runs) == 3 * (1 + 6 * 4)
    names = [n for n, _ in runs]
    assert len(set(names)) == len(names)
    for name, opts in runs:
        config = TrainConfig.from_dict(opts)  # every run validates
        assert (config.epochs, config.eval_every, config.lr_schedule) == (30, 5, "step")
        if opts["method"] == "demp":
            assert config.demp.target_sparsity in (0.7, 0.8, 0.9, 0.95)
            assert config.demp.target_metric == "weight"
            assert name == f"demp-{config.demp.target_sparsity:g}-s{opts['seed']}"
        elif opts["method"] != "dense":
            options = config.method_config()
            assert options.target_metric == "weight" and options.target in (0.7, 0.8, 0.9, 0.95)
    with pytest.raises(demp.DempError, match="share"):
        Preset("x", {}, demp_strengths=(0.5,), targets=(), seeds=(0,), demp_targets=(0.5,))


def test_long_and_paper_presets_train_with_adamw_and_demp_plus():
    for name in ("long", "paper"):
        for _, opts in PRESETS[name].runs():
            config = TrainConfig.from_dict(opts)
            assert config.optimizer == "adamw" and config.weight_decay == 5e-4
    demp_runs = [
        TrainConfig.from_dict(o) for _, o in PRESETS["long"].runs() if o["method"] == "demp"
    ]
    assert all(c.demp.resolved_variant == "plus" and c.demp.shift_push == 1.0 for c in demp_runs)
    assert PRESETS["paper"].demp["probe_size"] == 1536  # the authors' 3 x 512


def test_steps_preset_is_step_faithful():
    runs = PRESETS["steps"].runs()
    assert len(runs) == 3 * (1 + 3 * 2)
    methods = {o["method"] for _, o in runs}
    assert methods == {"dense", "demp", "snap", "earlycrop-s"}
    for _, opts in runs:
        config = TrainConfig.from_dict(opts)
        assert config.steps >= 30000 and config.model == "cnn1d" and config.optimizer == "adamw"
        assert (config.lr_schedule, config.lr_decay_every) == ("step", 0.308)
        if opts["method"] == "demp":
            assert config.demp.target_sparsity in (0.8, 0.9)


def test_a_preset_can_include_the_unstructured_group():
    runs = PRESETS["long"].runs(include=("unstructured",))
    assert len(runs) == 3 * (1 + 6 * 4 + 4 * 4)
    masked = [(n, o) for n, o in runs if o["method"] in ("magnitude", "snip", "set", "rigl")]
    assert {n for n, _ in masked} >= {"magnitude-0.7-s0", "rigl-0.95-s2", "snip-0.8-s1"}
    for _, opts in masked:
        assert TrainConfig.from_dict(opts).method_config().target in (0.7, 0.8, 0.9, 0.95)
    with pytest.raises(demp.DempError, match="unknown group"):
        PRESETS["long"].runs(include=("sparse",))


def test_runs_side_by_side_in_their_own_processes_until_the_deadline(tmp_path):
    options = {"dataset": "synthetic", "train_size": 64, "test_size": 32, "model": "mlp",
               "method": "dense", "steps": 4, "batch_size": 16}  # fmt: skip
    runs = [(f"r{i}", TrainConfig.from_dict({**options, "seed": i}), tmp_path / f"r{i}")
            for i in range(3)]  # fmt: skip
    assert run_side_by_side(runs, jobs=2, threads=1, deadline=0.0, report=print) == (3, [])
    assert not any(p.exists() for _, _, p in runs)
    done = []
    bad = TrainConfig.from_dict({**options, "dataset": "fashion-mnist",
                                 "data_dir": str(tmp_path / "nowhere")})  # fmt: skip
    left, failed = run_side_by_side([*runs, ("bad", bad, tmp_path / "bad")], 2, 1, None,
                                    lambda name, s: done.append((name, s["steps"])))  # fmt: skip
    assert (left, failed) == (0, ["bad"])  # a failed run does not stop the others
    assert sorted(done) == [("r0", 4), ("r1", 4), ("r2", 4)]
    assert all((p / "summary.json").exists() for _, _, p in runs)
    with pytest.raises(demp.DempError, match="threads"):
        run_side_by_side(runs, 2, 0, None, print)


def test_matched_table_reads_demp_against_the_best_baseline():
    from demp.experiments.bench.results import matched

    def agg(method, level, acc, sd, ws, seeds=3):
        return {"method": method, "level": level, "acc_mean": acc, "acc_std": sd,
                "weight_sparsity": ws, "seeds": seeds}  # fmt: skip

    rows = [agg("dense", None, 0.90, 0.0, 0.0),
            agg("demp", 0.8, 0.870, 0.002, 0.80), agg("snap", 0.8, 0.860, 0.002, 0.80),
            agg("slimming", 0.8, 0.865, 0.001, 0.80),  # the best baseline at 0.8
            agg("demp", 0.9, 0.850, 0.010, 0.85), agg("snap", 0.9, 0.855, 0.010, 0.90)]  # fmt: skip
    lines = matched(rows).splitlines()[2:]
    assert lines[0] == ("| 0.8 | 0.8700 ± 0.0020 (80.0%) | slimming: 0.8650 ± 0.0010 (80.0%) "
                        "| +0.50 | ahead |")  # fmt: skip
    assert lines[1].endswith("| -0.50 | level, not matched: DemP short of the level |")
    assert matched([agg("demp", 0.8, 0.8, 0.0, 0.8)]) == ""
    both = matched([agg("demp", 0.9, 0.85, 0.0, 0.85), agg("snap", 0.9, 0.86, 0.0, 0.87)])
    assert both.endswith("not matched: DemP and snap short of the level |")
    alone = matched([agg("demp", 0.7, 0.85, 0.0, 0.7, seeds=1), agg("snap", 0.7, 0.87, 0.0, 0.7)])
    assert alone.endswith("| -2.00 | one seed: no spread to read it against |")
    # each family is compared apart: the masks are not the structured baselines
    mixed = [*rows, agg("rigl", 0.8, 0.880, 0.002, 0.80)]
    assert matched(mixed).splitlines()[2] == lines[0]
    assert "| rigl: 0.8800 ± 0.0020 (80.0%) | -1.00 | behind |" in matched(mixed, "unstructured")


ORPHAN = """
import pathlib, signal, sys, time
from demp.experiments.bench.parallel import stop_when_orphaned
marker, ready = map(pathlib.Path, sys.argv[1:3])
signal.signal(signal.SIGTERM, lambda *_: (marker.write_text("stopped"), sys.exit(0)))
stop_when_orphaned(poll=0.05)
ready.write_text("ready")
time.sleep(120)
"""
PARENT = """
import os, pathlib, subprocess, sys, time
marker, ready = sys.argv[1:3]
subprocess.Popen([sys.executable, "-c", sys.argv[3], marker, ready])
while not pathlib.Path(ready).exists():
    time.sleep(0.05)
os._exit(0)  # as a sweep killed outright: its worker is left behind
"""


def test_a_worker_whose_sweep_is_killed_stops_itself(tmp_path):
    import subprocess
    import sys
    import time

    marker, ready = tmp_path / "marker", tmp_path / "ready"
    subprocess.run([sys.executable, "-c", PARENT, str(marker), str(ready), ORPHAN], check=True,
                   timeout=120)  # fmt: skip
    for _ in range(600):  # up to 60 s; it takes one poll
        if marker.exists():
            break
        time.sleep(0.1)
    assert marker.read_text() == "stopped"
