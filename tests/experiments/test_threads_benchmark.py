"""benchmarks/threads.py at toy size: each cell trains in a fresh process, the busy loop goes."""

import json

from bench_scripts import load_benchmark


def test_a_cell_reads_the_runs_own_training_time_and_stops_its_busy_loop(tmp_path, monkeypatch):
    threads = load_benchmark("threads", monkeypatch)
    started = []
    real_popen = threads.subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(threads.subprocess, "Popen", popen)
    seconds = threads.measure("small", "busy", {"OMP_NUM_THREADS": "1"}, tmp_path / "run", 1, 2)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert seconds == summary["train_seconds"] > 0 and summary["steps"] == 2
    assert summary["threads"] == 1  # the environment's count, left alone by the command
    busy = [p for p in started if "while True" in " ".join(map(str, p.args))]
    assert len(busy) == 1 and busy[0].poll() is not None  # the busy loop was stopped
    auto = threads.train_seconds("small", None, tmp_path / "auto", 2)  # the demp command itself
    assert auto == json.loads((tmp_path / "auto" / "summary.json").read_text())["train_seconds"]
