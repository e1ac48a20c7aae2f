"""Property tests: force random units dead, find exactly them, remove them exactly."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nets import MLP, VGG, Basic, Bottleneck, ResNet, Separable, eval_out, kill
from torch import nn

import demp


@st.composite
def architectures(draw):
    kind = draw(st.sampled_from(["mlp", "vgg", "basic", "bottleneck", "separable"]))
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    if kind == "mlp":
        widths = draw(st.lists(st.integers(3, 12), min_size=1, max_size=4))
        return MLP(tuple(widths), in_dim=6), torch.randn(64, 6)
    if kind == "vgg":
        channels = draw(st.lists(st.integers(3, 8), min_size=1, max_size=2))
        return VGG(tuple(channels), size=8), torch.randn(32, 3, 8, 8)
    if kind == "separable":
        return Separable(draw(st.integers(4, 8))), torch.randn(32, 3, 6, 6)
    block = Basic if kind == "basic" else Bottleneck
    blocks = draw(st.lists(st.integers(1, 2), min_size=1, max_size=3))
    width = draw(st.integers(3, 5))
    return ResNet(block, tuple(blocks), width), torch.randn(16, 3, 8, 8)


def healthy(model: nn.Module) -> None:
    """Positive biases, so that no unit is dead by accident on the probe."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.BatchNorm2d)) and m.bias is not None:
                m.bias.fill_(0.5)


def brute_force_dead(model, structure, x):
    """Dead units computed independently: keep every consumer's whole input, test == 0."""
    inputs, handles = {}, []
    for group in structure.groups.values():
        for slot in group.consumers:
            module = model.get_submodule(slot.path)
            dim = -1 if isinstance(module, nn.Linear) else 1

            def hook(_m, args, path=slot.path, dim=dim):
                inputs[path] = args[0].movedim(dim, -1).detach().clone()

            handles.append(module.register_forward_pre_hook(hook))
    eval_out(model, x)
    for h in handles:
        h.remove()
    out = {}
    for name, group in structure.groups.items():
        out[name] = [
            j
            for j in range(group.width)
            if all((inputs[s.path][..., s.index[j]] == 0).all() for s in group.consumers)
        ]
    return out


def random_kills(draw, structure):
    chosen = {}
    for name, group in structure.groups.items():
        if group.width < 2:
            continue
        units = draw(st.sets(st.integers(0, group.width - 1), max_size=group.width - 1))
        if units:
            chosen[name] = sorted(units)
    return chosen


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=architectures(), data=st.data())
def test_find_and_remove_forced_dead_units_exactly(arch, data):
    model, x = arch
    model = model.double()
    x = x.double()
    healthy(model)
    structure = demp.build_structure(model, x[:4])
    for _round in range(2):
        chosen = random_kills(data.draw, structure)
        for name, units in chosen.items():
            kill(model, structure.groups[name], units)
        dead = demp.find_dead(model, x, structure=structure)
        assert dead.as_dict() == brute_force_dead(model, structure, x)
        for name, units in chosen.items():
            assert set(units) <= set(dead.groups[name].indices.tolist())
        before = eval_out(model, x)
        params = demp.count_trainable(model)
        report = demp.remove_units(model, dead)
        after = eval_out(model, x)
        assert after.shape == before.shape
        assert (after - before).abs().max().item() <= 1e-10
        # min_units=1: a group that died entirely keeps its most active unit
        assert report.removed == sum(min(g.num_dead, g.width - 1) for g in dead.groups.values())
        if report.removed:
            assert demp.count_trainable(model) < params == report.params_before
        left = demp.find_dead(model, x, structure=structure)
        assert all(g.num_dead == 0 or g.width == 1 for g in left.groups.values())


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv1d(1, 6, 5, padding=2), nn.BatchNorm1d(6)
        self.c2, self.b2 = nn.Conv1d(6, 8, 3, stride=2, padding=1), nn.BatchNorm1d(8)
        self.fc1, self.fc2 = nn.Linear(8 * 10, 7), nn.Linear(7, 3)

    def forward(self, x):
        h = torch.relu(self.b1(self.c1(x)))
        h = torch.relu(self.b2(self.c2(h)))
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))


def test_conv1d_with_flatten_is_removed_exactly():
    torch.manual_seed(0)
    model = Conv1dNet().double()
    healthy(model)
    x = torch.randn(32, 1, 20, dtype=torch.float64)
    s = demp.build_structure(model, x[:2])
    (fc1_slot,) = [x for x in s.groups["c2"].slots if x.path == "fc1"]
    assert fc1_slot.index.shape == (8, 10)
    kill(model, s.groups["c1"], [0, 5])
    kill(model, s.groups["c2"], [3])
    kill(model, s.groups["fc1"], [6])
    dead = demp.find_dead(model, x, structure=s)
    assert dead.as_dict() == {"c1": [0, 5], "c2": [3], "fc1": [6]}
    before = eval_out(model, x)
    demp.remove_units(model, dead)
    assert (eval_out(model, x) - before).abs().max().item() <= 1e-10
    assert (model.c2.in_channels, model.b2.num_features, model.fc1.in_features) == (4, 7, 70)
