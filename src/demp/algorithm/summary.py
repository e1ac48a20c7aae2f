"""What a DemonPruner run did so far: sparsity, FLOPs ratios, time inside the pruner."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PrunerSummary:
    """What a :class:`~demp.DemonPruner` run did so far (definitions of FACTS §1).

    Attributes:
        steps: Optimizer steps counted.
        events: Death checks run; ``removals``: those that removed units.
        units_initial, units: Monitored units (channels of the prunable groups).
        params_initial, params: Trainable parameters.
        neuron_sparsity: ``1 - units / units_initial``.
        weight_sparsity: ``1 - params / params_initial``.
        inference_flops_ratio: Forward FLOPs per example now / initially.
        train_flops_ratio: Training FLOPs so far / those of the dense run over the same
            steps (each step costs 3 x forward FLOPs x batch, so the batch cancels).
        train_flops: Absolute training FLOPs so far (None unless ``batch_size`` was given).
        seconds: Seconds inside the pruner per phase (regularizer, noise, check, surgery).
        wall_seconds: Wall-clock seconds since the pruner was attached.
    """

    steps: int
    events: int
    removals: int
    units_initial: int
    units: int
    params_initial: int
    params: int
    neuron_sparsity: float
    weight_sparsity: float
    inference_flops_ratio: float
    train_flops_ratio: float
    train_flops: float | None
    seconds: dict[str, float]
    wall_seconds: float

    @property
    def overhead(self) -> float:
        """Fraction of the wall-clock time spent inside the pruner."""
        return sum(self.seconds.values()) / self.wall_seconds if self.wall_seconds else 0.0

    def __str__(self) -> str:
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())
        return "\n".join(
            [
                f"steps {self.steps}, death checks {self.events} "
                f"({self.removals} of them removed units)",
                f"units {self.units_initial} -> {self.units} "
                f"(neuron sparsity {self.neuron_sparsity:.1%})",
                f"trainable params {self.params_initial} -> {self.params} "
                f"(weight sparsity {self.weight_sparsity:.1%})",
                f"inference FLOPs ratio {self.inference_flops_ratio:.3f}, "
                f"training FLOPs ratio so far {self.train_flops_ratio:.3f}",
                f"time in pruner {sum(self.seconds.values()):.2f}s of {self.wall_seconds:.2f}s "
                f"({self.overhead:.1%}): {phases}",
            ]
        )
