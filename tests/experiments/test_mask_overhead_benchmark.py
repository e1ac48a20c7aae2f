"""benchmarks/mask_overhead.py: every method's mask updates of a run are counted and done."""

from bench_scripts import load_benchmark

from demp.experiments.models import build_model
from demp.masks import cosine_fraction
from demp.methods.dynamic_sparse import DynamicOptions
from demp.methods.magnitude import MagnitudeOptions


def test_the_updates_of_a_run_are_the_schedules_and_the_masks_reach_the_target(monkeypatch):
    script = load_benchmark("mask_overhead", monkeypatch)
    total = 100
    rows = script.main(["--batch", "8", "--steps", "1", "--total-steps", str(total),
                        "--target", "0.8", "--threads", "1"])  # fmt: skip

    # magnitude: every `every` steps from start to end, and at the end step itself
    mag = MagnitudeOptions()
    start, end = round(mag.sparse_start * total), round(mag.sparse_end * total)
    every = round(mag.update_every * total)
    due = {s for s in range(start, end + 1) if (s - start) % every == 0} | {end}
    assert rows["magnitude"]["update_steps"] == sorted(due)
    # SET and RigL: every `every` steps before the end, where the decayed fraction moves
    # a weight (surely where it is 1 % or more: the largest masked layer keeps 100+ weights)
    dyn = DynamicOptions()
    end = round(dyn.sparse_end * total)
    due = list(range(round(dyn.update_every * total), end, every))
    sure = [s for s in due if cosine_fraction(s, end, dyn.drop_fraction) >= 0.01]
    assert len(sure) > len(due) // 2
    for name in ("set", "rigl"):
        assert set(sure) <= set(rows[name]["update_steps"]) <= set(due)
    assert rows["snip"]["updates"] == 0 and rows["snip"]["setup_seconds"] > 0
    # after the run's updates every method holds its target's zeros
    params = sum(p.numel() for p in build_model("resnet18", 10, (1, 28, 28), 0.0625).parameters())
    assert {r["zeros"] for r in rows.values()} == {round(0.8 * params)}
    for r in rows.values():
        assert r["work"] > 0 and r["step"] > 0 and r["hold"] > 0
