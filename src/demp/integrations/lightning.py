"""A Lightning callback that runs DemP (extra ``[lightning]``).

``DemonPruning(probe, config)`` attaches a :class:`~demp.DemonPruner` to the first
optimizer at fit start, logs units, trainable parameters and the FLOPs ratio through the
module's logger, finalizes at fit end, and survives Lightning checkpoints: when ``fit`` is
given a ``ckpt_path`` of a shrunk model, the freshly built LightningModule is reshaped to
the checkpoint's shapes before Lightning loads the weights (the stock loader would fail on
the shapes), and the pruner's state is restored.

Example::

    trainer = L.Trainer(max_steps=1000, callbacks=[DemonPruning(probe, DemPConfig())])
    trainer.fit(module, loader)
"""

from __future__ import annotations

from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as err:  # pragma: no cover
    raise ImportError("demp.integrations.lightning needs: pip install 'demp[lightning]'") from err

from ..algorithm.config import DemPConfig
from ..algorithm.pruner import DemonPruner
from ..algorithm.restart import restart_schedulers
from ..checkpoint import reshape_to
from ..errors import CheckpointError


class DemonPruning(pl.Callback):
    """Run DemP inside ``Trainer.fit``.

    Args:
        probe: Unaugmented training examples for the death checks (on the module's device).
        config: A :class:`~demp.DemPConfig`.
        total_steps: Planned optimizer steps (default: ``trainer.estimated_stepping_batches``).
    """

    def __init__(
        self, probe: Any, config: DemPConfig | None = None, total_steps: int | None = None
    ) -> None:
        super().__init__()
        self.probe, self.config, self.total_steps = probe, config, total_steps
        self.pruner: DemonPruner | None = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Make Lightning's weight loading reshape the module to the checkpoint's shapes first.

        Lightning loads a ``ckpt_path`` after ``setup``, through
        ``trainer.strategy.load_model_state_dict``; the wrapper installed here gives the
        freshly built module the saved shapes just before that load.
        """
        strategy = trainer.strategy
        original = strategy.load_model_state_dict

        def load(checkpoint: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            state = checkpoint.get("state_dict")
            if state is None:
                raise CheckpointError("the Lightning checkpoint holds no state_dict")
            reshape_to(pl_module, {k: list(v.shape) for k, v in state.items()})
            return original(checkpoint, *args, **kwargs)

        strategy.load_model_state_dict = load
        self._restore = (strategy, original)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Remove the loading wrapper."""
        restore = getattr(self, "_restore", None)
        if restore is not None:
            strategy, original = restore
            strategy.load_model_state_dict = original
            self._restore = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Attach the pruner to the first optimizer (and restore its state on resume)."""
        total = self.total_steps or int(trainer.estimated_stepping_batches)
        self.pruner = DemonPruner(pl_module, trainer.optimizers[0], self.probe, total, self.config)
        # a restart counts optimizer steps: schedulers stepped per epoch keep their course
        steps = [c.scheduler for c in trainer.lr_scheduler_configs if c.interval == "step"]
        restart_schedulers(steps, self.pruner.restart, total)
        if self._pending is not None:
            self.pruner.load_state_dict(self._pending)
            self._pending = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_args: Any
    ) -> None:
        """Log live units, trainable parameters, the FLOPs ratio and the penalty."""
        if self.pruner is None:
            return
        summary = self.pruner.summary()
        pl_module.log_dict(
            {
                "demp/units": float(summary.units),
                "demp/params": float(summary.params),
                "demp/inference_flops_ratio": summary.inference_flops_ratio,
                "demp/penalty": self.pruner.penalty(),
            },
            on_step=True,
        )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Last death check and removal; detach from the optimizer."""
        if self.pruner is not None:
            self.pruner.finalize()
            self.pruner.detach()

    def state_dict(self) -> dict[str, Any]:
        """The pruner's state, saved in Lightning checkpoints."""
        return self.pruner.state_dict() if self.pruner is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the pruner's state until the pruner exists (fit start)."""
        self._pending = state_dict or None
