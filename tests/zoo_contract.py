"""The model-zoo contract: force units dead, find them, cut them exactly, keep training,
reload. Shared by the timm, torchvision and transformers tests (tests/zoo)."""

from collections.abc import Callable, Mapping

import torch
from torch import nn

import demp

TOL = 1e-10  # float64


def output(model: nn.Module, x) -> torch.Tensor:
    """The model's output tensor (a ``logits`` field for transformers models), in eval mode."""
    was = model.training
    model.eval()
    with torch.no_grad():
        y = model(**x) if isinstance(x, Mapping) else model(x)
    model.train(was)
    return y.logits if hasattr(y, "logits") else y


def adam_step(model: nn.Module, opt: torch.optim.Optimizer, x) -> float:
    """One training step on a squared-output loss; returns the loss."""
    model.train()
    y = model(**x) if isinstance(x, Mapping) else model(x)
    y = y.logits if hasattr(y, "logits") else y
    loss = y.pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def force_dead(model: nn.Module, group: demp.ChannelGroup, units, shift: float) -> None:
    """Give ``units`` of ``group`` a constant pre-activation ``shift``.

    Norm layers get scale 0 and shift ``shift``; producers and depthwise convs zero rows
    and bias ``shift``. With ``shift=-1`` a ReLU-family unit is exactly dead; with
    ``shift=0`` so is a unit of any activation with f(0) = 0 (GELU, SiLU, hard-swish).
    """
    idx = torch.as_tensor(list(units), dtype=torch.long)
    rules = demp.ops.rules
    with torch.no_grad():
        for slot in group.slots:
            if slot.role == "consumer":
                continue
            module = model.get_submodule(slot.path)
            rows = slot.index[idx].reshape(-1)
            for name, dim in rules.tensors_on_side(module, "out"):
                tensor = getattr(module, name)
                if name == "weight":
                    tensor.index_fill_(dim, rows, 0.0)
                elif name == "bias":
                    tensor.index_fill_(dim, rows, shift)


def check_contract(
    build: Callable[[], nn.Module], x, tmp_path, *, shift: float = -1.0, fraction: float = 0.25
) -> tuple[demp.Structure, demp.DeadUnits, demp.SurgeryReport]:
    """Run the contract on a fresh float64 model from ``build`` and input ``x``.

    Asserts: a quarter of every group's units forced dead are all found; the cut model
    computes the same outputs (float64, 1e-10) and has fewer units; Adam's state matches
    the new shapes and training goes on; a checkpoint reloads into a freshly built model.
    """
    torch.manual_seed(0)
    model = build().double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    adam_step(model, opt, x)
    structure = demp.build_checked_structure(model, _head(x))
    killed = {n: range(max(1, int(g.width * fraction))) for n, g in structure.groups.items()}
    for name, group in structure.groups.items():
        force_dead(model, group, killed[name], shift)
    before = output(model, x)
    dead = demp.find_dead(model, x, structure=structure)
    for name, units in killed.items():
        assert bool(dead.groups[name].dead[list(units)].all()), f"{name}: forced units not found"
    report = demp.remove_units(model, dead, optimizer=opt)
    assert report.removed >= sum(len(u) for u in killed.values())
    after = output(model, x)
    scale = max(1.0, float(before.abs().max()))
    assert float((before - after).abs().max()) <= TOL * scale, "the cut changed the outputs"
    for p in model.parameters():
        for value in opt.state[p].values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                assert value.shape == p.shape
    assert torch.isfinite(torch.tensor(adam_step(model, opt, x)))
    demp.save_checkpoint(tmp_path / "ckpt", model, opt)
    torch.manual_seed(1)
    fresh = build().double()
    demp.load_checkpoint(tmp_path / "ckpt", fresh, torch.optim.Adam(fresh.parameters()))
    assert torch.equal(output(fresh, x), output(model, x))
    return structure, dead, report


def _head(x):
    if isinstance(x, Mapping):
        return {k: v[:2] for k, v in x.items()}
    return x[:2]
