"""Learning-rate schedules as pure functions of the step (so a resumed run needs no state)."""

from __future__ import annotations

from ...schedules import cosine_decay, one_cycle

LR_SCHEDULES = ("constant", "step", "one-cycle", "cosine")  # --lr-schedule choices


def lr_at(
    step: int,
    base: float,
    total_steps: int,
    schedule: str,
    decay_factor: float = 0.2,
    decay_every: float = 0.3,
) -> float:
    """Return the learning rate at ``step``.

    ``step``: multiply by ``decay_factor`` every ``decay_every`` of the run (the paper's
    ResNet recipe: x0.2 every 77 of 250 epochs); ``one-cycle``: warm-up over 30 % then
    cosine decay (peak ``base``); ``cosine``: cosine decay from ``base`` to 0.
    """
    if schedule == "constant":
        return base
    if schedule == "step":
        period = max(1, round(decay_every * total_steps))
        return base * decay_factor ** (step // period)
    if schedule == "one-cycle":
        return one_cycle(step, base, total_steps, warmup="cosine")
    if schedule == "cosine":
        return cosine_decay(step, base, total_steps)
    raise ValueError(f"unknown lr schedule {schedule!r}")
