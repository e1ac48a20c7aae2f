"""torch.compile: every structure change gets a compiled graph, past Dynamo's recompile limit."""

import torch
from torch import nn

import demp
from demp.integrations.compiled import CompiledModel

EVENTS = 10  # more than torch._dynamo.config.recompile_limit (8)


class Counting:
    """A torch.compile backend that runs the traced graph and records each compilation."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append([tuple(t.shape) for t in example_inputs if hasattr(t, "shape")])
        return gm.forward


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 40), nn.ReLU(), nn.Linear(40, 3))


def run(use_callback):
    """EVENTS prune events, each removing units; returns the model, backend, and per event
    whether a graph was compiled, and the largest compiled-vs-eager difference."""
    model, backend = net(), Counting()
    handle = CompiledModel(model, backend=backend)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.randn(32, 6)
    callbacks = [handle.recompile] if use_callback else []
    cfg = demp.DemPConfig(reg_strength=0.0, noise="off", dynamic=False)
    pruner = demp.DemonPruner(model, opt, x, 100, cfg, on_structure_change=callbacks)
    worst, compiled_after = 0.0, []
    for _ in range(EVENTS):
        with torch.no_grad():
            model[0].weight[0] = 0.0
            model[0].bias[0] = -1.0  # unit 0 dead on every input
        assert pruner.prune_now().removed >= 1
        before = len(backend.graphs)
        out = handle(x)
        compiled_after.append(len(backend.graphs) > before)
        worst = max(worst, float((out - model(x)).abs().max()))
        out.sum().backward()  # training through the compiled graph works
        opt.step()
        opt.zero_grad()
    assert model[0].out_features <= 40 - EVENTS
    return model, backend, compiled_after, worst


def test_each_structure_change_recompiles_cleanly():
    model, backend, compiled_after, worst = run(use_callback=True)
    assert all(compiled_after)  # a fresh graph after every one of the 10 changes
    assert worst < 1e-6  # and it computes what the eager shrunk model computes
    widths = {shapes for graph in backend.graphs for shapes in graph if len(shapes) == 2}
    assert (model[0].out_features, 6) in widths  # the last graph was traced at the last width


def test_without_the_callback_dynamo_gives_up_after_its_limit():
    """The failure the callback prevents: past the limit, calls silently run eagerly."""
    torch._dynamo.reset()
    _model, _backend, compiled_after, worst = run(use_callback=False)
    assert not all(compiled_after[-2:])
    assert worst < 1e-6


def test_on_the_cpu_inductor_keeps_the_layout(monkeypatch):
    """The workaround for the crash on pruned models (benchmarks/speed_cpu.md)."""
    calls = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: calls.append(kw) or module)
    net = nn.Linear(3, 2)
    CompiledModel(net)
    CompiledModel(net, options={"max_autotune": True})
    CompiledModel(net, options={"layout_optimization": True})  # the caller's choice wins
    CompiledModel(net, mode="max-autotune-no-cudagraphs")  # mode or options, not both
    CompiledModel(net, backend="eager")  # not Inductor
    CompiledModel(nn.Linear(3, 2, device="meta"))  # not on the CPU (as on a GPU)
    model = CompiledModel(net)
    model.recompile()
    assert calls == [
        {"options": {"layout_optimization": False}},
        {"options": {"layout_optimization": False, "max_autotune": True}},
        {"options": {"layout_optimization": True}},
        {"mode": "max-autotune-no-cudagraphs"},
        {"backend": "eager"},
        {},
        {"options": {"layout_optimization": False}},
        {"options": {"layout_optimization": False}},
    ]
    assert model.recompiles == 1
