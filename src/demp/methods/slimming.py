"""Network Slimming: L1 on the BatchNorm scales, a global |gamma| threshold, fine-tuning.

A constant ``slim_lambda * sign(gamma)`` is added to the scales' gradients until
``slim_prune_at`` of the budget; then the units with the smallest ``|gamma|`` (max over a
group's BatchNorms) go, globally, down to the target sparsity (neuron by default), and training goes
on without the L1 term (FACTS §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..algorithm.regularizer import add_penalty_gradient
from ..structure import Structure
from .base import Method, MethodContext
from .common import check_target, prune_once, target_field, target_metric_field
from .registry import register_method


@dataclass(frozen=True)
class SlimmingOptions:
    """Options of Network Slimming."""

    target: float = target_field()
    target_metric: str = target_metric_field()
    slim_lambda: float = field(
        default=1e-4, metadata={"help": "network slimming: L1 strength on BN scales"}
    )
    slim_prune_at: float = field(
        default=0.5, metadata={"help": "network slimming: prune at this fraction of the run"}
    )

    def __post_init__(self) -> None:
        check_target(self.target, self.target_metric)
        if self.slim_lambda < 0.0:
            raise ValueError(f"slim_lambda must be >= 0, got {self.slim_lambda}")
        if not 0.0 < self.slim_prune_at <= 1.0:
            raise ValueError(f"slim_prune_at must be in (0, 1], got {self.slim_prune_at}")


class Slimming(Method):
    """Constant L1 on BN scales, global |gamma| threshold, fine-tune."""

    def __init__(self, options: SlimmingOptions, ctx: MethodContext) -> None:
        self.options = options
        self.scales = [
            m.weight
            for m in ctx.model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
        ]
        self.prune_step = max(1, round(options.slim_prune_at * ctx.total_steps))
        self.handle: Any = ctx.optimizer.register_step_pre_hook(self._l1)

    def _l1(self, *_args: Any) -> None:
        add_penalty_gradient(self.scales, "l1", self.options.slim_lambda)

    def after_step(self, ctx: MethodContext, step: int) -> None:
        """At the prune step: threshold on |gamma|, then fine-tune without L1."""
        if self.handle is None or step < self.prune_step:
            return
        self._stop_l1()
        scores = gamma_scores(ctx.model, ctx.structure)
        prune_once(ctx, scores, self.options.target, self.options.target_metric)  # type: ignore[arg-type]

    def load_state_dict(
        self, tensors: dict[str, torch.Tensor], values: dict[str, Any] | None, step: int
    ) -> None:
        """A resumed run past the prune step fine-tunes without the L1 term."""
        if step >= self.prune_step:
            self._stop_l1()

    def summary_fields(self) -> dict[str, float]:
        """The target sparsity."""
        return {"target": self.options.target}

    def _stop_l1(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def gamma_scores(model: nn.Module, structure: Structure) -> dict[str, torch.Tensor]:
    """|gamma| per unit (max over the group's BatchNorms); +inf for groups without one."""
    out = {}
    for name, group in structure.groups.items():
        score = torch.full((group.width,), float("inf"), dtype=torch.float64)
        norms = [s for s in group.slots if s.role == "norm"]
        if norms:
            score = torch.stack(
                [
                    model.get_submodule(s.path)
                    .weight.detach()
                    .abs()
                    .cpu()
                    .double()[s.index]
                    .amax(1)
                    for s in norms
                ]
            ).amax(0)
        out[name] = score
    return out


@register_method("slimming", options=SlimmingOptions, summary="Network Slimming (L1 on BN)")
def slimming(options: SlimmingOptions, ctx: MethodContext) -> Method:
    """Network Slimming (Liu et al. 2017; FACTS §2)."""
    return Slimming(options, ctx)
