"""DemP with ``torch.compile``: a clean recompile after every structure change.

A compiled model guards on its parameters' shapes, so the first call after units are
removed recompiles by itself; but TorchDynamo counts recompilations of the same code, and
past ``torch._dynamo.config.recompile_limit`` (8) it silently runs the model eagerly from
then on (FACTS §3). A DemP run can change shapes more often than that. :class:`CompiledModel`
keeps one handle for the training loop and, after each structure change, drops
TorchDynamo's caches (``torch._dynamo.reset()``) and compiles the shrunk model afresh, so
every structure gets a compiled graph. The reset is process-wide: other compiled
functions recompile on their next call.

On the CPU, with Inductor and no ``mode``, the model is compiled with Inductor's
``layout_optimization`` off (:data:`CPU_OPTIONS`; options given by the caller win): with
it on, Inductor turns the convolutions channels-last, and a model with
:class:`~demp.ops.select.ChannelSelect` shortcuts (``decouple_residuals``, what DemP trains)
crashed the process in its compiled backward with 2 threads (torch 2.13.0, a segmentation
fault or a corrupted heap, every time; the same model with plain identity shortcuts
trained). With it off the same models train (benchmarks/speed_cpu.md, "The crash").

Example::

    model = CompiledModel(net)                         # use model(x) in the loop
    pruner = demp.DemonPruner(net, opt, probe, total_steps,
                              on_structure_change=[model.recompile])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

CPU_OPTIONS: dict[str, Any] = {"layout_optimization": False}
"""Inductor options for a model on the CPU (see the module docs)."""


class CompiledModel:
    """A ``torch.compile`` handle that stays valid (and compiled) across structure changes.

    Args:
        module: The model; DemP prunes this module, not the compiled wrapper.
        **compile_kwargs: Passed to ``torch.compile`` at every (re)compile.

    Attributes:
        recompiles: Compiles after the first one.
        fresh: True until the caller clears it after the first call of a new compile
            (``torch.compile`` compiles then: a loop can time that call apart).
    """

    def __init__(self, module: nn.Module, **compile_kwargs: Any) -> None:
        self.module = module
        self.compile_kwargs = compile_kwargs
        self.compiled = torch.compile(module, **self.effective_kwargs())
        self.recompiles = 0
        self.fresh = True

    def effective_kwargs(self) -> dict[str, Any]:
        """What ``torch.compile`` gets: the caller's, plus :data:`CPU_OPTIONS` on the CPU.

        Only with Inductor (the default backend) and no ``mode`` (``torch.compile`` takes
        ``mode`` or ``options``, not both), and only for a module whose first parameter
        (or buffer) is on the CPU.
        """
        kwargs = dict(self.compile_kwargs)
        inductor = kwargs.get("backend", "inductor") == "inductor" and "mode" not in kwargs
        if inductor and _on_cpu(self.module):
            kwargs["options"] = {**CPU_OPTIONS, **(kwargs.get("options") or {})}
        return kwargs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Forward through the compiled model."""
        return self.compiled(*args, **kwargs)

    def recompile(self, *_args: Any) -> None:
        """Drop TorchDynamo's caches and compile the (shrunk) module afresh.

        Takes any arguments, so it can be an ``on_structure_change`` callback as it is.
        """
        torch._dynamo.reset()
        self.compiled = torch.compile(self.module, **self.effective_kwargs())
        self.recompiles += 1
        self.fresh = True

    def train(self, mode: bool = True) -> CompiledModel:
        """Set training mode on the module."""
        self.module.train(mode)
        return self

    def eval(self) -> CompiledModel:
        """Set eval mode on the module."""
        return self.train(False)


def _on_cpu(module: nn.Module) -> bool:
    """Whether the module's first parameter (or buffer) lives on the CPU (True if none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device.type == "cpu"
    return True
