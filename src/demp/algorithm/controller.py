"""DemP+'s target controller: drive the regularization strength toward a target sparsity.

What the measurements showed (ResNet-18 width 1/4, Fashion-MNIST, Adam lr 5e-3 with
cosine decay, 1000 steps; benchmarks/RESULTS-target.md): deaths lag the strength by a few
hundred steps (with Adam an L1 term well above the loss gradient shrinks a scale at about
the learning rate per step whatever lambda is, so a scale of 1 needs ~200 steps to reach
0), then come in a wave; once the learning rate has decayed, raising lambda kills almost
nothing. A law that tracked a reference and lowered lambda when ahead of it lowered it
during the wave and landed 6-8 points short; counting falling scales as "about to die"
over-predicted (most settle at a small value). So:

- **Reference.** ``r(t) = target * min(1, t / (reach * T))`` with ``reach`` 0.3 by
  default (DemP+ sets 0.15: ``DemPConfig.target_reach``): the deaths must come while the
  learning rate is high, and the final architecture then has the rest of the run.
- **Up when behind.** ``scale *= exp(min(ln 4, g * (r(t) - s) / target))``, held while
  the last interval's deaths closed at least half the remaining lag (anti-windup: deaths
  lag the strength). ``g`` is ``gain`` (ln 4: a check a whole target behind multiplies the
  strength by 4) until the first units have died, when the model's response is still
  unseen, and three times that after, when a stall is a measured response (at 90 % the
  single gain landed 3 points short, the learning rate having decayed before the scale had
  grown enough).
- **Never down.** Ahead of the reference but below the target, the scale is held: the
  sparsity a strength brings is reached only after the lag, and the removal never cuts
  past the target anyway (:mod:`demp.algorithm.budget`).
- **Held peak.** The configured schedule is followed up to its peak, then held there (its
  decay would otherwise fight the controller) until the target is reached.
- **Ceiling.** The scale never exceeds ``max_scale`` (64 by default). With Adam a penalty
  far above the loss gradients shrinks every scale at the learning rate's pace, useful
  units included, and a unit whose scale reaches 0 with a positive shift outputs a
  constant: alive, so never removed. Measured on a 30-epoch run with a step learning rate
  (RESULTS-target.md, "Windup"): without a ceiling the deaths stalled at 81 % while the
  scale grew to 32,000x and the model fell to chance.
- **Stall.** At full strength (the scale at its ceiling, the schedule past its rise), if
  ``patience`` (3) intervals between checks in a row, spanning at least the loop's
  measured response time (the steps from the first rise to the first deaths; 20 % of the
  run while none was seen), gained less than the tolerance, the target is given up: the
  controller releases as if it had been reached (``stalled_at`` records the step) and the
  rest of the run recovers accuracy. The run ends short of the target, and says so.
- **Deadline.** A target not reached by ``deadline`` of the run (0.6 by default; 1.0:
  never) is given up there, whatever the scale: the rest of the run trains at a released
  strength. Measured on the long preset (FACTS §10, 2026-12): without it a run 0.6 points
  short of its target held a strength 40x its start to the last step, and its test
  accuracy swung between 67 and 84 % over the last third.
- **Release.** Once ``s >= target - tolerance`` (the tolerance is the smallest unit that
  can still go, and at least the smaller of half a point and 2 % of what the target
  keeps: 0.1 point at 95 %), or on a stall, pushing stops: the strength
  and the noise decay to zero along a half cosine over ``release`` of the run. Removal
  never cuts past the target (:mod:`demp.algorithm.budget`); units that die beyond it are
  revived with zero fan-out (:mod:`demp.algorithm.revival`) or, with ``revive=False``,
  stay in the model dead (they change nothing it computes); ``pruner.history`` counts
  both.

The strength at step ``t`` is ``reg_strength * scale * held(t) * release(t)``; the noise
follows ``noise_std * noise_schedule(t) * min(1, scale) * release(t)`` (never above its
configured peak: with Adam a noise step of the learning rate's size would swamp training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..schedules import Schedule, cosine_ramp

_MAX_LOG_STEP = math.log(4.0)
_STALLED = 3.0  # gain multiplier once units have died: a stall is then a measured response
MAX_SCALE = 64.0  # default ceiling of the scale (see module doc, "Ceiling")
PATIENCE = 3  # intervals between checks at full strength without progress: target given up
STALL_WINDOW = 0.2  # ... and at least this fraction of the run while no response was seen


@dataclass
class TargetController:
    """Feedback on the regularization strength toward a target sparsity (see module doc).

    Attributes:
        target: The sparsity to reach, in (0, 1).
        total_steps: Steps of the run.
        schedule: The strength schedule whose rise is followed up to its peak.
        reach: Fraction of the run at which the reference reaches the target.
        release: Fraction of the run over which the strength decays once reached.
        gain: Log-change of the scale per unit of relative error (``ln 4``: a check that
            is a whole target behind multiplies the strength by 4).
        max_scale: Ceiling of ``scale``.
        patience: Intervals between checks at full strength without progress before the
            target is given up (and at least the loop's measured response time,
            :meth:`response_time`).
        stall_window: The response time, as a fraction of the run, until one is measured.
        deadline: Fraction of the run after which a target not yet reached is given up.
        scale: The controlled multiplier of the configured peak strength.
        reached_at: Step at which the target was reached (None: not yet).
        stalled_at: Step at which the target was given up, at the ceiling or at the
            deadline (None: not given up).
        trajectory: One entry per check: step, sparsity, reference, scale, multiplier.
    """

    target: float
    total_steps: int
    schedule: Schedule
    reach: float = 0.3
    release: float = 0.05
    gain: float = _MAX_LOG_STEP
    max_scale: float = MAX_SCALE
    patience: int = PATIENCE
    stall_window: float = STALL_WINDOW
    deadline: float = 1.0
    scale: float = 1.0
    reached_at: int | None = None
    stalled_at: int | None = None
    trajectory: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.max_scale < 1.0:
            raise ValueError(f"TargetController.max_scale must be >= 1, got {self.max_scale}")
        if self.patience < 1:
            raise ValueError(f"TargetController.patience must be >= 1, got {self.patience}")
        if not 0.0 < self.deadline <= 1.0:
            raise ValueError(f"TargetController.deadline must be in (0, 1], got {self.deadline}")
        self._peak_step, self._peak = _peak_of(self.schedule, self.total_steps)

    @property
    def released_at(self) -> int | None:
        """Step at which pushing stopped: the target reached or given up (None: pushing)."""
        return self.reached_at if self.reached_at is not None else self.stalled_at

    def reference(self, step: int) -> float:
        """The sparsity the run should have at ``step``."""
        return self.target * min(1.0, step / max(self.reach * self.total_steps, 1.0))

    def held(self, step: int) -> float:
        """The schedule up to its peak (normalized to 1 there), then 1."""
        if step >= self._peak_step or self._peak <= 0:
            return 1.0
        return min(1.0, self.schedule(step, self.total_steps) / self._peak)

    def released(self, step: int) -> float:
        """1 before the target is reached (or given up), then a half-cosine decay to 0."""
        if self.released_at is None:
            return 1.0
        span = max(self.release * self.total_steps, 1.0)
        return cosine_ramp((step - self.released_at) / span, 1.0, 0.0)

    def multiplier(self, step: int) -> float:
        """Multiplier of the configured peak strength at ``step``."""
        return self.scale * self.held(step) * self.released(step)

    def noise_multiplier(self, step: int) -> float:
        """Multiplier of the noise schedule at ``step`` (never above 1)."""
        return min(1.0, self.scale) * self.released(step)

    def update(self, step: int, sparsity: float, tolerance: float = 0.0) -> None:
        """Take the sparsity measured after the check at ``step`` into account.

        Args:
            step: The step of the check.
            sparsity: The sparsity now (after this check's removal).
            tolerance: Count the target as reached this close below it.
        """
        reference = self.reference(step)
        if self.released_at is None:
            if sparsity >= self.target - tolerance:
                self.reached_at = step
            elif step >= self.deadline * self.total_steps or self._stalled(
                step, sparsity, tolerance
            ):
                self.stalled_at = step
            else:
                raised = self.scale * math.exp(self._log_step(sparsity, reference))
                self.scale = min(self.max_scale, raised)
        self.trajectory.append(
            {
                "step": step,
                "sparsity": sparsity,
                "reference": reference,
                "scale": self.scale,
                "multiplier": self.multiplier(step),
                "reached": self.reached_at is not None,
                "stalled": self.stalled_at is not None,
            }
        )

    def _stalled(self, step: int, sparsity: float, tolerance: float) -> bool:
        """At full strength over the stall window, which gained less than ``tolerance``.

        Full strength is the scale at its ceiling and the schedule past its held rise
        (the recorded multiplier at ``max_scale``). The window is ``patience`` intervals
        between checks (``patience + 1`` checks, this one included) and at least the
        model's measured response time (:meth:`response_time`): a stall shorter than the
        time deaths took to follow the first rise says nothing.
        """
        window = self.response_time(tolerance)
        for anchor in reversed(self.trajectory):  # back to the window's start, all at the ceiling
            if anchor["multiplier"] < self.max_scale:  # not yet at full strength (held rise)
                return False
            checks = sum(1 for e in self.trajectory if e["step"] >= anchor["step"])
            if checks >= self.patience and step - anchor["step"] >= window:
                return sparsity - anchor["sparsity"] < max(tolerance, 1e-12)
        return False

    def response_time(self, tolerance: float) -> float:
        """Steps from the first rise of the scale to the first check that gained ``tolerance``.

        The dead time of the loop (with Adam about a scale's size over the learning rate);
        ``stall_window`` of the run while no response has been seen yet.
        """
        rise = next((e for e in self.trajectory if e["scale"] > 1.0), None)
        if rise is not None:
            for entry in self.trajectory:
                later = entry["step"] > rise["step"]
                if later and entry["sparsity"] - rise["sparsity"] >= max(tolerance, 1e-12):
                    return float(entry["step"] - rise["step"])
        return self.stall_window * self.total_steps

    def _log_step(self, sparsity: float, reference: float) -> float:
        """The log-change of the scale at a check below the target (never negative)."""
        lag = reference - sparsity
        if lag <= 0:
            return 0.0
        if self.trajectory and sparsity - self.trajectory[-1]["sparsity"] >= 0.5 * lag:
            return 0.0
        gain = self.gain * (_STALLED if sparsity > 0 else 1.0)
        return min(_MAX_LOG_STEP, gain * lag / self.target)

    def state_dict(self) -> dict[str, Any]:
        """The controlled scale, the steps it was reached or given up at, the trajectory."""
        return {
            "scale": self.scale,
            "reached_at": self.reached_at,
            "stalled_at": self.stalled_at,
            "trajectory": [dict(e) for e in self.trajectory],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.scale = min(float(state["scale"]), self.max_scale)  # older states had no ceiling
        reached = state.get("reached_at")
        self.reached_at = None if reached is None else int(reached)
        stalled = state.get("stalled_at")
        self.stalled_at = None if stalled is None else int(stalled)
        self.trajectory = [dict(e) for e in state.get("trajectory", [])]


def _peak_of(schedule: Schedule, total_steps: int) -> tuple[int, float]:
    """First step at which the schedule reaches its maximum over the run, and that value."""
    stride = max(1, total_steps // 2000)
    best_step, best = 0, float("-inf")
    for step in range(0, total_steps + 1, stride):
        value = schedule(step, total_steps)
        if value > best:
            best_step, best = step, value
    return best_step, best
