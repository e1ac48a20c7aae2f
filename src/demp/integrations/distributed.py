"""DemP under multi-process DistributedDataParallel (torchrun, any backend).

Slicing a model inside a live ``DistributedDataParallel`` breaks its next step; wrapping
the shrunk model again works (FACTS §3). :class:`DDPModel` keeps one handle for the
training loop and re-wraps after every structure change; :func:`rebuild_reducer` instead
keeps a wrapper someone else holds (the Hugging Face Trainer's) valid, and
:class:`WrapperWatch` finds that wrapper. :func:`distributed_pruner` builds
a :class:`~demp.DemonPruner` whose death statistics are all-reduced with MAX, so every rank
decides the same dead set from its own probe shard; the gradients DDP averages are the
same on every rank, so the asymmetric-noise masks and the regularizer agree, and the noise
generator starts from the same seed: all ranks stay identical.

Example (under ``torchrun --nproc_per_node=2``)::

    dist.init_process_group("gloo")
    model = DDPModel(net)                              # use model(x) in the loop
    opt = torch.optim.Adam(model.module.parameters())
    pruner = distributed_pruner(model, opt, probe, total_steps)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..algorithm.config import DemPConfig
from ..algorithm.pruner import DemonPruner
from ..errors import DempError
from ..surgery import SurgeryReport


class DDPModel:
    """A DistributedDataParallel wrapper that stays valid across structure changes.

    Args:
        module: The model (on this rank's device).
        **ddp_kwargs: Passed to ``DistributedDataParallel`` at every (re-)wrap.
    """

    def __init__(self, module: nn.Module, **ddp_kwargs: Any) -> None:
        self.module = module
        self.ddp_kwargs = ddp_kwargs
        self.ddp = DistributedDataParallel(module, **ddp_kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Forward through the current DDP wrapper."""
        return self.ddp(*args, **kwargs)

    def rewrap(self, *_args: Any) -> None:
        """Wrap the (shrunk) module in a fresh DistributedDataParallel."""
        self.ddp = DistributedDataParallel(self.module, **self.ddp_kwargs)

    def train(self, mode: bool = True) -> DDPModel:
        """Set training mode on the module."""
        self.module.train(mode)
        return self

    def eval(self) -> DDPModel:
        """Set eval mode on the module."""
        return self.train(False)


def all_reduce_max(tensor: torch.Tensor) -> None:
    """All-reduce in place with MAX (over the default process group)."""
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)


def distributed_pruner(
    model: DDPModel,
    optimizer: torch.optim.Optimizer,
    probe: Any,
    total_steps: int,
    config: DemPConfig | None = None,
    **kwargs: Any,
) -> DemonPruner:
    """A DemonPruner on ``model.module`` that agrees across ranks and re-wraps DDP.

    Extra keyword arguments go to :class:`~demp.DemonPruner` (``on_structure_change``
    callbacks run after the re-wrap).
    """
    callbacks = [_rewrap(model), *kwargs.pop("on_structure_change", ())]
    return DemonPruner(
        model.module, optimizer, probe, total_steps, config,
        on_structure_change=callbacks, sync=all_reduce_max, **kwargs,
    )  # fmt: skip


def _rewrap(model: DDPModel) -> Any:
    def callback(_pruner: DemonPruner, _report: SurgeryReport) -> None:
        model.rewrap()

    return callback


def is_main_process() -> bool:
    """True on rank 0, or when not running distributed."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class WrapperWatch:
    """Find the ``DistributedDataParallel`` that wraps ``module`` at its first forward.

    For training loops that wrap the model themselves (the Hugging Face Trainer through
    accelerate) and hand callbacks only the bare module. A module forward pre-hook sees
    every module's forward until the wrapper's; then it is removed.

    Attributes:
        wrapper: The wrapper, once seen (None before).
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.wrapper: DistributedDataParallel | None = None
        self._handle: Any = torch.nn.modules.module.register_module_forward_pre_hook(self._seen)

    def _seen(self, module: nn.Module, _args: Any) -> None:
        if isinstance(module, DistributedDataParallel) and module.module is self.module:
            self.wrapper = module
            self.close()

    def close(self) -> None:
        """Stop watching (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def rebuild_reducer(ddp: DistributedDataParallel) -> None:
    """Make a live ``DistributedDataParallel`` follow its module's new parameter shapes.

    The wrapper stays the same object (a training loop holding it keeps working): its
    gradient reducer is built again from the module's current parameters, which must have
    the same shapes on every rank (checked). Uses DistributedDataParallel's own
    construction steps (private; present from torch 2.0 to 2.14 at least).

    Raises:
        DempError: This torch lacks those steps.
    """
    try:
        params, sparse = ddp._build_params_for_reducer()
        _verify_shapes(ddp, params)
        names = ddp._build_debug_param_to_name_mapping(params)
        ddp._ddp_init_helper(params, sparse, names, ddp.static_graph)
    except AttributeError as err:
        raise DempError(
            f"cannot rebuild DistributedDataParallel's reducer on torch {torch.__version__} "
            f"({err}); use demp.integrations.distributed.DDPModel, which wraps anew"
        ) from err


def _verify_shapes(ddp: DistributedDataParallel, params: list[torch.Tensor]) -> None:
    from torch.distributed.utils import _verify_param_shape_across_processes

    _verify_param_shape_across_processes(ddp.process_group, params)
