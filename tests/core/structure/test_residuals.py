"""decouple_residuals: per-block residual units, exact before and after cuts."""

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from residual_nets import BLOCKS, DEAD, group_with, inputs, kill, layout, make, out

import demp


def test_zoo_resnet_decouples_exactly_and_groups_per_block():
    model = make("zoo-basic", (2, 2), 4, 0)
    x = inputs(0)
    before, params, modules = out(model, x), [id(p) for p in model.parameters()], layout(model)
    coupled = demp.build_checked_structure(model, x)
    report = demp.decouple_residuals(model, x)
    assert report.decoupled == {
        f"layers.{i}.{j}:add": f"layers.{i}.{j}.shortcut" for i, j in [(0, 0), (0, 1), (1, 1)]
    }
    assert report.projections == ["layers.1.0:add"] and not report.coupled
    assert [id(p) for p in model.parameters()] == params
    assert [p for p, _ in layout(model)] == [p for p, _ in modules]  # same paths
    assert torch.equal(out(model, x), before)
    s = demp.build_checked_structure(model, x)
    assert list(s.skipped) == ["fc"]
    # stem + 4 inner groups + 4 post-add groups (stage 1's stream is no longer one group)
    assert len(s.groups) == 9 and len(coupled.groups) == 6  # coupled: 2 streams + 4 inner
    assert s.num_units == 4 + 2 * (4 + 4) + 2 * (8 + 8)
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        name = group_with(s, f"layers.{i}.{j}.conv2")
        if (i, j) != (1, 0):
            assert group_with(s, f"layers.{i}.{j}.shortcut") == name
        else:  # the projection's conv and the block's last conv produce one group
            assert group_with(s, "layers.1.0.shortcut.0") == name
    again = demp.decouple_residuals(model, x)
    assert sorted(again.already) == sorted(report.decoupled) and not again.decoupled
    assert torch.equal(out(model, x), before)


@pytest.mark.parametrize("kind", ["tv-basic", "tv-bottleneck"])
def test_torchvision_blocks_are_rewritten_with_the_same_parameters(kind):
    model = make(kind, (2, 2), 4, 1)
    x = inputs(1, side=32)
    before, params = out(model, x), [id(p) for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters())
    report = demp.decouple_residuals(model, x)
    assert set(report.decoupled.values()) == {
        "layers.0.0.identity_select", "layers.0.1.identity_select", "layers.1.1.identity_select"
    } - ({"layers.0.0.identity_select"} if kind == "tv-bottleneck" else set())  # fmt: skip
    assert [id(p) for p in model.parameters()] == params
    assert optimizer.param_groups[0]["params"][0] is next(model.parameters())
    assert torch.equal(out(model, x), before)
    block = model.layers[1][1]
    assert type(block).__name__ == kind.replace("tv-", "TV").replace("basic", "BasicBlock").replace(
        "bottleneck", "Bottleneck"
    )
    assert block.stride == 1 and isinstance(block.identity_select, demp.ChannelSelect)
    for clone in (copy.deepcopy(model),):
        assert list(clone.state_dict()) == list(model.state_dict())
        assert torch.equal(out(clone, x), before)
    assert not demp.decouple_residuals(model, x).decoupled


def test_a_unit_dead_after_one_add_is_cut_only_per_block():
    model = make("zoo-basic", (3, 1), 4, 2)
    x = inputs(2)
    c = 1
    with torch.no_grad():  # dead after the add of layers.0.1 only: its branch is -1e6
        model.layers[0][1].bn2.weight[c] = 0
        model.layers[0][1].bn2.bias[c] = DEAD
    reference = out(model, x)
    coupled = demp.find_dead(copy.deepcopy(model), x)
    stream = group_with(coupled.structure, "layers.0.1.conv2")
    assert c not in coupled.groups[stream].indices.tolist()  # alive after the other adds

    demp.decouple_residuals(model, x)
    dead = demp.find_dead(model, x)
    name = group_with(dead.structure, "layers.0.1.conv2")
    assert dead.groups[name].indices.tolist() == [c]
    for other in ("conv1", "layers.0.0.conv2", "layers.0.2.conv2"):  # before and after it
        assert c not in dead.groups[group_with(dead.structure, other)].indices.tolist()
    widths = dead.structure.widths()
    demp.remove_units(model, dead)
    assert dead.structure.widths()[name] == widths[name] - 1
    assert model.layers[0][1].shortcut.selection.shape == (3, 4)  # row c gone
    assert model.layers[0][2].shortcut.selection.shape == (4, 3)  # column c gone
    assert model.layers[0][2].conv1.in_channels == 3
    assert (out(model, x) - reference).abs().max() < 1e-10


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(BLOCKS)),
    layers=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple),
    width=st.integers(2, 5),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_random_residual_nets_stay_exact_through_decoupling_and_cuts(
    kind, layers, width, seed, data
):
    model = make(kind, layers, width, seed)
    x = inputs(seed, n=3, side=16 if kind.startswith("zoo") else 32)
    before, params = out(model, x), [id(p) for p in model.parameters()]
    report = demp.decouple_residuals(model, x)
    assert not report.coupled
    assert [id(p) for p in model.parameters()] == params
    assert (out(model, x) - before).abs().max() == 0
    structure = demp.build_checked_structure(model, x)
    assert list(structure.skipped) == ["fc"]
    names = sorted(structure.groups)
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
    killed = {}
    for name in chosen:
        width_now = structure.groups[name].width
        units = data.draw(st.lists(st.integers(0, width_now - 1), min_size=1, unique=True))
        kill(model, structure.groups[name], units)
        killed[name] = sorted(units)
    reference = out(model, x)
    dead = demp.find_dead(model, x, structure=structure)
    for name, units in killed.items():
        assert set(units) <= set(dead.groups[name].indices.tolist())
    demp.remove_units(model, dead)
    assert (out(model, x) - reference).abs().max() < 1e-10
    fresh = demp.build_checked_structure(model, x)
    assert fresh.widths() == structure.widths()


@pytest.mark.parametrize("kind", ["zoo-basic", "tv-basic"])
def test_modes_are_kept_and_new_modules_take_their_blocks(kind):
    model = make(kind, (1, 1), 2, 9).train()
    model.layers[1].eval()
    x = inputs(9, side=32)
    running = {k: b.clone() for k, b in model.named_buffers()}
    demp.decouple_residuals(model, x)
    assert model.training and all(m.training for m in model.layers[0].modules())
    assert not any(m.training for m in model.layers[1].modules())
    after = dict(model.named_buffers())
    assert all(torch.equal(b, after[k]) for k, b in running.items())  # it ran in eval mode
