"""decouple_residuals with the rest of demp: optimizer state, checkpoints, refusals, counts."""

import copy

import pytest
import torch
from residual_nets import group_with, inputs, kill, layout, make, out
from torch import nn
from torch.nn import functional

import demp
from demp.experiments.models import resnet as zoo


def train_step(model, optimizer, x, y):
    model.train()
    loss = functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    model.eval()
    return loss.detach()


def kill_some(model, structure):
    """Kill units of two post-add groups and of one inner group; return them by group."""
    killed = {}
    for path, units in (
        ("layers.0.0.conv2", [0, 2]),
        ("layers.1.1.conv2", [3]),
        ("layers.1.0.conv1", [1]),
    ):
        name = group_with(structure, path)
        kill(model, structure.groups[name], units)
        killed[name] = units
    return killed


@pytest.mark.parametrize("kind", ["zoo-basic", "tv-basic"])
def test_adam_state_is_carried_and_training_continues_exactly(kind):
    model = make(kind, (2, 2), 4, 3)
    x, y = inputs(3, n=6, side=32), torch.arange(6) % 5
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    demp.decouple_residuals(model, x)
    train_step(model, optimizer, x, y)
    structure = demp.build_checked_structure(model, x)
    killed = kill_some(model, structure)
    twin, twin_opt = copy.deepcopy((model, optimizer))
    dead = demp.find_dead(model, x, structure=structure)
    assert all(set(u) <= set(dead.groups[n].indices.tolist()) for n, u in killed.items())
    # only the units dead for any input (others may be dead in eval mode only)
    demp.remove_units(model, killed, optimizer=optimizer, structure=structure)
    for p in model.parameters():
        state = optimizer.state[p]
        assert state["exp_avg"].shape == p.shape and state["exp_avg_sq"].shape == p.shape
    assert (out(model, x) - out(twin, x)).abs().max() < 1e-10
    for _ in range(2):  # the cut model trains as the uncut one does (dead units stay dead)
        loss, twin_loss = train_step(model, optimizer, x, y), train_step(twin, twin_opt, x, y)
        assert abs(float(loss - twin_loss)) < 1e-10
    assert (out(model, x) - out(twin, x)).abs().max() < 1e-10


@pytest.mark.parametrize("kind", ["zoo-basic", "zoo-bottleneck", "tv-basic", "tv-bottleneck"])
def test_checkpoint_reloads_into_a_fresh_decoupled_model(kind, tmp_path):
    model = make(kind, (2, 2), 4, 4)
    x, y = inputs(4, n=4, side=32), torch.arange(4) % 5
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    demp.decouple_residuals(model, x)
    train_step(model, optimizer, x, y)
    structure = demp.build_checked_structure(model, x)
    if "basic" in kind:
        kill_some(model, structure)
    dead = demp.find_dead(model, x, structure=structure)
    demp.remove_units(model, dead, optimizer=optimizer, min_units=1)
    demp.save_checkpoint(tmp_path / "ckpt", model, optimizer, structure=structure)

    fresh = make(kind, (2, 2), 4, 5)  # other weights, original sizes
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    demp.decouple_residuals(fresh, x)
    demp.load_checkpoint(tmp_path / "ckpt", fresh, fresh_opt)
    assert torch.equal(out(fresh, x), out(model, x))
    selections = {k: v for k, v in model.state_dict().items() if k.endswith("selection")}
    assert selections and all(torch.equal(fresh.state_dict()[k], v) for k, v in selections.items())
    assert demp.removal_history(tmp_path / "ckpt") == structure.history
    assert (
        abs(float(train_step(fresh, fresh_opt, x, y) - train_step(model, optimizer, x, y))) < 1e-10
    )


# --- adds that stay coupled, with the reason; the model is left as it was ---


class Broadcast(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + x)


class PoolShortcut(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + functional.avg_pool2d(x, 3, 1, 1))


class InPlaceIntoShortcut(PoolShortcut):
    def forward(self, x):
        return torch.relu(x.add_(self.bn(self.conv(x))))


class DataDependent(PoolShortcut):
    def forward(self, x):
        h = self.bn(self.conv(x))
        if h.sum() > 0:
            h = h * 2
        h += x
        return torch.relu(h)


class ModeDependent(PoolShortcut):
    def forward(self, x):
        h = functional.dropout(self.bn(self.conv(x)), 0.5, self.training)
        h += x
        return torch.relu(h)


class IdentityBlock(PoolShortcut):
    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + x)


class Net(nn.Module):
    """A stem (1 or 4 channels), one block (maybe run twice), a head."""

    def __init__(self, block, stem=4, twice=False):
        super().__init__()
        self.stem, self.block, self.twice = nn.Conv2d(3, stem, 1), block, twice
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.block(torch.relu(self.stem(x)))
        h = self.block(h) if self.twice else h
        return self.fc(h.mean((2, 3)))


class TopLevelAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.conv, self.fc = (
            nn.Conv2d(3, 4, 1),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.Linear(4, 2),
        )

    def forward(self, x):
        h = torch.relu(self.stem(x))
        return self.fc(torch.relu(self.conv(h) + h).mean((2, 3)))


REFUSED = {
    "broadcast": (lambda: Net(Broadcast(), stem=1), "block:add", "a broadcast add"),
    "pool": (lambda: Net(PoolShortcut()), "block:add", "the shortcut (avg_pool2d) is neither"),
    "in-place": (lambda: Net(InPlaceIntoShortcut()), "block:add_", "in-place add writes into"),
    "untraceable": (lambda: Net(DataDependent()), "block", "torch.fx cannot trace DataDependent"),
    "top-level": (TopLevelAdd, "<model>:add", "the model's own forward"),
    "mode": (lambda: Net(ModeDependent()), "block:add", "depends on the training mode"),
    "twice": (lambda: Net(IdentityBlock(), twice=True), "block:add", "runs 2 times"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_adds_it_cannot_decouple_are_listed_and_left_alone(case):
    factory, where, reason = REFUSED[case]
    model = factory().double().eval()
    x = inputs(6, n=2, side=6)
    before, modules, keys = out(model, x), layout(model), list(model.state_dict())
    report = demp.decouple_residuals(model, x)
    assert not report.decoupled
    assert reason in report.coupled[where], report.coupled
    assert layout(model) == modules and list(model.state_dict()) == keys
    assert torch.equal(out(model, x), before)


def test_an_error_midway_leaves_the_model_unchanged(monkeypatch):
    model = make("tv-basic", (2, 2), 4, 7)
    x = inputs(7, side=32)
    before, modules = out(model, x), layout(model)
    made = []

    def failing(*args, **kwargs):
        if made:
            raise RuntimeError("out of memory")
        made.append(demp.ChannelSelect(torch.eye(args[0], dtype=kwargs["dtype"])))
        return made[-1]

    monkeypatch.setattr(demp.ChannelSelect, "identity", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        demp.decouple_residuals(model, x)
    assert layout(model) == modules and torch.equal(out(model, x), before)


def test_mlp_residual_blocks_decouple_on_2d_features():
    class Block(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

        def forward(self, x):
            return torch.relu(self.fc2(torch.relu(self.fc1(x))) + x)

    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), Block(6), Block(6), nn.Linear(6, 3)).double()
    x = torch.randn(16, 5, dtype=torch.float64)
    before = out(model, x)
    report = demp.decouple_residuals(model, x)
    assert set(report.decoupled) == {"2:add", "3:add"}
    assert torch.equal(out(model, x), before)
    structure = demp.build_checked_structure(model, x)
    assert len(structure.groups) == 5  # stem, 2 hidden, 2 post-add
    with torch.no_grad():  # unit 4 dead after block 2's add only
        model[2].fc2.weight[4] = 0
        model[2].fc2.bias[4] = -1e6
    reference = out(model, x)
    dead = demp.find_dead(model, x, structure=structure)
    assert dead.groups[group_with(structure, "2.fc2")].indices.tolist() == [4]
    demp.remove_units(model, dead)
    assert (out(model, x) - reference).abs().max() < 1e-10


def test_resnet18_width_64_has_the_papers_3904_units():
    model = zoo.resnet18(width=64)
    x = torch.randn(2, 3, 8, 8)
    coupled = demp.build_structure(model, x).num_units
    demp.decouple_residuals(model, x)
    structure = demp.build_structure(model, x)
    # stem ReLU 64 + each block's inner ReLU (1920) + each block's post-add ReLU (1920)
    assert structure.num_units == 3904
    assert coupled == 64 + 128 + 256 + 512 + 1920  # one stream per stage
