"""`demp bench`: the quick preset end to end, restart skipping, runs.csv, preset contents."""

import csv
import json

import pytest

import demp
from demp.experiments.bench import runs as runs_module
from demp.experiments.bench.presets import PRESETS
from demp.experiments.bench.runs import collect_runs, read_runs_csv, run_row
from demp.experiments.cli.main import main

QUICK_METHODS = ["dense", "demp", "snap", "cropit-s", "earlysnap", "earlycrop-s", "slimming"]


def test_quick_preset_runs_every_method_and_skips_finished_runs(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--preset", "quick", "--out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(r["method"] for r in rows) == sorted(QUICK_METHODS)
    dense = next(r for r in rows if r["method"] == "dense")
    assert float(dense["time_ratio"]) == 1.0 and float(dense["neuron_sparsity"]) == 0.0
    for r in rows:
        if r["method"] not in ("dense", "demp"):
            assert abs(float(r["neuron_sparsity"]) - 0.5) < 12 / 360  # one unit per group
    table = (out / "results.md").read_text()
    assert "| snap | 0.5 | 1 |" in table and "| demp | 0.05 | 1 |" in table
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
    assert main(["bench", "--preset", "quick", "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("finished earlier, skipped") == 7


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
