"""`demp bench`: the quick preset end to end, restart skipping, preset contents."""

import csv

from demp.experiments.bench.presets import PRESETS
from demp.experiments.cli.main import main


def test_quick_preset_runs_every_method_and_skips_finished_runs(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--preset", "quick", "--out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(r["method"] for r in rows) == sorted(
        ["dense", "demp", "snap", "cropit-s", "earlysnap", "earlycrop-s", "slimming"]
    )
    dense = next(r for r in rows if r["method"] == "dense")
    assert float(dense["time_ratio"]) == 1.0 and float(dense["neuron_sparsity"]) == 0.0
    for r in rows:
        if r["method"] not in ("dense", "demp"):
            assert abs(float(r["neuron_sparsity"]) - 0.5) < 12 / 360  # one unit per group
    table = (out / "results.md").read_text()
    assert "| snap | 0.5 | 1 |" in table and "| demp | 0.05 | 1 |" in table
    assert (out / "accuracy_vs_sparsity.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["bench", "--preset", "quick", "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("finished earlier, skipped") == 7


def test_presets_cover_every_method_seed_and_level():
    cpu = PRESETS["cpu"].runs()
    assert len(cpu) == 2 * (1 + 4 + 5 * 4)
    names = [n for n, _ in cpu]
    assert len(set(names)) == len(names) and "earlycrop-s-0.55-s1" in names
    assert PRESETS["paper"].base["dataset"] == "cifar10"
