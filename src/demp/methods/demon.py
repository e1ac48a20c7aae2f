"""``demp``: Demon Pruning (paper Algorithm 1) as a method: a DemonPruner on the run.

The pruner keeps its own channel groups and history; its options are the run's ``[demp]``
table (:class:`~demp.DemPConfig`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..algorithm import DemonPruner, DemPConfig
from ..checkpoint.state import decode_state, encode_state
from ..errors import DempError
from ..structure import Structure
from .base import Method, MethodContext
from .registry import register_method


class DemP(Method):
    """DemP's regularizer, noise and dynamic pruning, through a :class:`~demp.DemonPruner`."""

    def __init__(self, config: DemPConfig, ctx: MethodContext) -> None:
        self.pruner = DemonPruner(
            ctx.model,
            ctx.optimizer,
            ctx.probe,
            ctx.total_steps,
            config,
            batch_size=ctx.batch_size,
            on_structure_change=[lambda _p, _r: ctx.structure_changed()],
            sync=ctx.sync,
        )

    @property
    def structure(self) -> Structure:  # type: ignore[override]
        """The pruner's groups (rebuilt when its state is loaded)."""
        return self.pruner.structure

    @property
    def history(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The pruner's death-check events."""
        return self.pruner.history

    def finish(self, ctx: MethodContext) -> None:
        """The last death check and removal (every rank: the decision is all-reduced)."""
        self.pruner.finalize()
        short = self.pruner.steering.shortfall()
        if short:
            ctx.note(short)

    def summary_fields(self) -> dict[str, Any]:
        """The target sparsity (None without one)."""
        return {"target": self.pruner.config.target_sparsity}

    def penalty(self) -> float:
        """``lambda_t * R`` now."""
        return self.pruner.penalty()

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
        """The pruner's state (step, noise RNG, history, controller), JSON-encoded."""
        return {}, {"pruner": encode_state(self.pruner.state_dict())}

    def load_state_dict(
        self, tensors: dict[str, torch.Tensor], values: dict[str, Any] | None, step: int
    ) -> None:
        """Restore the pruner (the model is already at the checkpoint's widths)."""
        if not values or "pruner" not in values:
            raise DempError("cannot resume DemP: the checkpoint holds no pruner state")
        self.pruner.load_state_dict(decode_state(values["pruner"]))


@register_method("demp", summary="Demon Pruning (this library)", demp_config=True)
def demp(config: DemPConfig, ctx: MethodContext) -> Method:
    """DemP with the run's DemPConfig."""
    return DemP(config, ctx)
