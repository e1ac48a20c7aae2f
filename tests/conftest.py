import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


import pytest  # noqa: E402


@pytest.fixture
def interrupt_at(monkeypatch):
    """Make the harness raise KeyboardInterrupt (as Ctrl-C does) in its n-th training step.

    Returns a function ``arm(n)``; ``disarm()`` on the result restores the real step.
    """
    from demp.experiments.harness import loop

    real_step = loop.train_step

    def arm(n):
        calls = {"n": 0}

        def interrupting(*args):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return real_step(*args)

        monkeypatch.setattr(loop, "train_step", interrupting)
        return lambda: monkeypatch.setattr(loop, "train_step", real_step)

    return arm
