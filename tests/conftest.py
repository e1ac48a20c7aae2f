import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
# the demp command leaves torch's thread count alone under OMP_NUM_THREADS: every run of a
# test then computes with the same count (a resumed run must match a straight one bit for bit)
os.environ["OMP_NUM_THREADS"] = str(torch.get_num_threads())


import pytest  # noqa: E402

PHASES = ("data", "forward", "backward", "optimizer", "method", "evaluation", "checkpoint")


@pytest.fixture
def interrupt_at(monkeypatch):
    """Send the process SIGINT (as Ctrl-C does) inside the n-th step, at a chosen phase.

    ``arm(n, phase="data", signum=SIGINT, times=1)``: phases "data" (before the step's
    compute), "forward", "backward", "optimizer" (before its step), "method" (after the
    method's optimizer hooks), count training steps; "evaluation" and "checkpoint" count
    calls of the harness's evaluation and checkpoint writes. ``times=2`` sends the signal
    twice (stop at once). The returned ``disarm()`` restores the real functions.
    """
    import signal

    from demp.experiments.harness import callbacks, loop

    real = {"step": loop.train_step, "evaluate": callbacks.evaluate,
            "save": callbacks.save_checkpoint}  # fmt: skip

    def restore():
        monkeypatch.setattr(loop, "train_step", real["step"])
        monkeypatch.setattr(callbacks, "evaluate", real["evaluate"])
        monkeypatch.setattr(callbacks, "save_checkpoint", real["save"])

    def arm(n, phase="data", signum=signal.SIGINT, times=1):
        calls = {"n": 0}

        def send(*_args, **_kwargs):
            for _ in range(times):
                signal.raise_signal(signum)

        def counted(fn):
            def wrapper(*args, **kwargs):
                calls["n"] += 1
                if calls["n"] == n:
                    send()
                return fn(*args, **kwargs)

            return wrapper

        def step(net, optimizer, x, y):
            calls["n"] += 1
            if calls["n"] != n:
                return real["step"](net, optimizer, x, y)
            hooks = []
            if phase == "data":
                send()
            elif phase == "forward":
                hooks.append(net.register_forward_pre_hook(send))
            elif phase == "backward":
                hooks.append(next(net.parameters()).register_hook(lambda g: send()))
            elif phase == "optimizer":
                hooks.append(optimizer.register_step_pre_hook(send))
            elif phase == "method":
                hooks.append(optimizer.register_step_post_hook(send))  # after the method's
            try:
                return real["step"](net, optimizer, x, y)
            finally:
                for hook in hooks:
                    hook.remove()

        if phase == "evaluation":
            monkeypatch.setattr(callbacks, "evaluate", counted(real["evaluate"]))
        elif phase == "checkpoint":
            monkeypatch.setattr(callbacks, "save_checkpoint", counted(real["save"]))
        else:
            monkeypatch.setattr(loop, "train_step", step)
        return restore

    return arm
