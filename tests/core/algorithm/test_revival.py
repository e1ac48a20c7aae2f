"""Reviving dead units with zero fan-out: exact, alive again, optimizer state cleared."""

from __future__ import annotations

import torch
from nets import MLP, VGG, ResNet, eval_out, kill

import demp
from demp.algorithm.revival import revive_units


def _setup(net):
    torch.manual_seed(0)
    model = net.double()
    x = torch.randn(32, 3, 8, 8, dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(x).sum().backward()
    opt.step()  # non-zero Adam moments everywhere
    structure = demp.build_checked_structure(model, [x])
    return model, x, opt, structure


def kill_at_norm(model, group, units):
    """Kill units as DemP does: scale 0 and a negative shift (the producer rows intact)."""
    with torch.no_grad():
        for slot in group.slots:
            if slot.role == "norm":
                module = model.get_submodule(slot.path)
                module.weight[slot.index[units, 0]] = 0
                module.bias[slot.index[units, 0]] = -1


def test_revival_is_exact_and_the_units_live_again():
    for net in (ResNet(), VGG()):
        model, x, opt, structure = _setup(net)
        # a group with a BatchNorm; not a residual stream (it carries the identity shortcut)
        names = [n for n, g in structure.groups.items()
                 if not n.endswith("conv2") and any(s.role == "norm" for s in g.slots)]  # fmt: skip
        name = max(names, key=lambda n: structure.groups[n].width)
        group = structure.groups[name]
        kill_at_norm(model, group, [0, 2])
        dead = demp.find_dead(model, [x], structure=structure)
        assert dead.groups[name].dead[[0, 2]].all()
        before = eval_out(model, x)
        count = revive_units(model, structure, {name: torch.tensor([0, 2])}, opt)
        assert count == 2
        torch.testing.assert_close(eval_out(model, x), before, rtol=0, atol=1e-12)
        after = demp.find_dead(model, [x], structure=structure)
        assert not after.groups[name].dead[[0, 2]].any()
        for slot in group.slots:
            module = model.get_submodule(slot.path)
            rows = slot.index[[0, 2]].reshape(-1)
            if slot.role == "consumer":
                assert (module.weight.index_select(1, rows) == 0).all()
                state = opt.state[module.weight]
                assert (state["exp_avg"].index_select(1, rows) == 0).all()
                assert (state["exp_avg_sq"].index_select(1, rows) == 0).all()
            elif slot.role == "norm":
                live = torch.ones(group.width, dtype=torch.bool)
                live[[0, 2]] = False
                median = module.weight.detach().abs()[slot.index[live, 0]].median()
                assert torch.equal(module.weight[rows], median.expand(len(rows)))
                assert (module.bias[rows] == 0).all()
                assert (opt.state[module.weight]["exp_avg"][rows] == 0).all()


def test_groups_without_a_normalization_layer_are_left_dead():
    torch.manual_seed(0)
    model = MLP().double()
    x = torch.randn(16, 5, dtype=torch.float64)
    structure = demp.build_checked_structure(model, [x])
    name = next(iter(structure.groups))
    kill(model, structure.groups[name], [1])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert revive_units(model, structure, {name: torch.tensor([1])}) == 0
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_a_target_run_revives_its_surplus_and_records_it():
    from tests.core.algorithm.test_pruner import synthetic, train

    def run(revive):
        torch.manual_seed(0)
        model, (x, y) = VGG((16, 32), size=8, hidden=32, out=10), synthetic((3, 8, 8))
        cfg = demp.DemPConfig(reg_strength=0.3, target_sparsity=0.3, prune_every=10,
                              revive=revive)  # fmt: skip
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        pruner = demp.DemonPruner(model, opt, x[:256], 200, cfg)
        train(model, opt, x, y, 200)
        pruner.finalize()
        return pruner

    revived, kept = run(True), run(False)
    assert sum(e["revived"] for e in revived.history) > 0
    assert sum(e["revived"] for e in kept.history) == 0
    # without revival the surplus stays dead to the end; with it, fewer dead units remain
    assert revived.history[-1]["dead"] - revived.history[-1]["removed"] < (
        kept.history[-1]["dead"] - kept.history[-1]["removed"]
    )
