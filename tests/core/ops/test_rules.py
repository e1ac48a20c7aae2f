"""The layer table: lookups, completeness, and "a new layer type is one table row"."""

import copy
import dataclasses
import pickle
from operator import attrgetter

import pytest
import torch
from torch import nn

import demp
from demp.algorithm.regularizer import regularized_parameters
from demp.checkpoint import reshape_to
from demp.ops.rules import (
    DEFAULT_RULES,
    LayerRule,
    feature_dim,
    has_rule,
    norm_types,
    root_types,
    rule_for,
    side_size,
    size_attributes,
    sync_attributes,
)
from demp.ops.select import ChannelSelect
from demp.ops.slicing import apply_cuts
from demp.structure.verify import _restored

# --- a new layer type: a per-channel scale Torch-Pruning does not know -------------------


class Scale(nn.Module):
    """``x * weight`` per channel (NCHW): not a subclass of any layer demp or TP knows."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.rand(channels) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)


def _scale_sizes(module: Scale) -> dict[str, int]:
    return {"channels": module.weight.shape[0]}


SCALE_ROW = LayerRule(
    types=(Scale,),
    kind="norm",
    out_tensors=(("weight", 0),),
    size_attributes=("channels",),
    sync=_scale_sizes,
    out_size=attrgetter("channels"),
)


class ScaleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.scale = Scale(6)
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.scale(self.conv1(x)))
        return self.head(torch.relu(self.conv2(x)).mean((2, 3)))


# --- and a linear layer that is not an nn.Linear (a root row) -----------------------------


class MyLinear(nn.Module):
    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in) / fan_in**0.5)
        self.bias = nn.Parameter(torch.full((fan_out,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.t() + self.bias


def _no_sizes(_module: nn.Module) -> dict[str, int]:
    return {}


MY_LINEAR_ROW = LayerRule(
    types=(MyLinear,),
    kind="root",
    out_tensors=(("weight", 0), ("bias", 0)),
    in_tensors=(("weight", 1),),
    size_attributes=(),
    sync=_no_sizes,
    out_size=lambda m: m.weight.shape[0],
    in_size=lambda m: m.weight.shape[1],
    feature_dim=-1,
)


def _scale_net() -> tuple[ScaleNet, torch.Tensor]:
    torch.manual_seed(0)
    model = ScaleNet().double()
    with torch.no_grad():
        model.conv1.bias.fill_(0.5)
        model.conv2.bias.fill_(0.5)
    return model, torch.randn(16, 3, 6, 6, dtype=torch.float64)


def _adam_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    opt.zero_grad()
    model(x).square().mean().backward()
    opt.step()


def _output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def test_new_layer_type_is_one_row(tmp_path):
    model, x = _scale_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    _adam_step(model, opt, x)  # Adam state to slice
    with torch.no_grad():  # channel 2 of conv1 is dead: zero weights, negative bias
        model.conv1.weight[2] = 0
        model.conv1.bias[2] = -1
    before = _output(model, x)
    rules = DEFAULT_RULES.with_rule(SCALE_ROW)
    dead = demp.find_dead(model, x, rules=rules)
    assert dead.structure.rules is rules
    assert dead.groups["conv1"].dead.nonzero().reshape(-1).tolist() == [2]
    slots = {(s.path, s.role) for s in dead.structure.groups["conv1"].slots}
    assert slots == {("conv1", "producer"), ("scale", "norm"), ("conv2", "consumer")}
    report = demp.remove_units(model, dead, optimizer=opt)
    assert report.removed == 1
    assert model.scale.weight.shape == (5,) and model.scale.channels == 5
    assert model.conv1.out_channels == 5 and model.conv2.in_channels == 5
    torch.testing.assert_close(_output(model, x), before, rtol=0, atol=1e-10)
    for p in model.parameters():
        assert opt.state[p]["exp_avg"].shape == p.shape
    _adam_step(model, opt, x)  # one more step trains the shrunk model
    assert torch.isfinite(_output(model, x)).all()
    # a checkpoint of the shrunk model loads into a fresh one with the same row
    fresh = ScaleNet().double()
    reshape_to(fresh, {k: list(v.shape) for k, v in model.state_dict().items()}, rules)
    assert fresh.scale.channels == 5
    fresh.load_state_dict(model.state_dict())
    demp.save_checkpoint(tmp_path / "ckpt", model, opt)  # and through demp's checkpoints
    fresh = ScaleNet().double()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    with pytest.raises(demp.CheckpointError, match="not a layer demp cuts"):
        demp.load_checkpoint(tmp_path / "ckpt", fresh, fresh_opt)  # the default table
    demp.load_checkpoint(tmp_path / "ckpt", fresh, fresh_opt, rules=rules)
    torch.testing.assert_close(_output(fresh, x), _output(model, x), rtol=0, atol=0)


def test_without_the_row_the_group_is_skipped():
    model, x = _scale_net()
    with torch.no_grad():
        model.conv1.weight[2] = 0
        model.conv1.bias[2] = -1
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    dead = demp.find_dead(model, x)
    assert "conv1" not in dead.groups
    reason = dead.skipped["conv1"]
    assert "bare parameter" in reason and "scale (Scale)" in reason and "layer table" in reason
    with pytest.raises(demp.UnsupportedGroupError, match="cannot cut group 'conv1'"):
        demp.remove_units(model, {"conv1": [2]}, structure=dead.structure)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_a_root_row_for_a_linear_that_is_no_nn_linear():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(5, 8), nn.ReLU(), MyLinear(8, 6), nn.ReLU(), nn.Linear(6, 3)
    ).double()
    with torch.no_grad():
        model[0].bias.fill_(3.0)
        model[2].bias.fill_(10.0)
        model[0].weight[4] = 0
        model[0].bias[4] = -1
    x = torch.randn(32, 5, dtype=torch.float64)
    plain = demp.build_structure(model, x)
    reason = plain.skipped["0"]  # names the layer that has no row
    assert "MyLinear" in reason and "layer table" in reason and "2" not in plain.groups
    before = _output(model, x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    dead = demp.find_dead(model, x, rules=DEFAULT_RULES.with_rule(MY_LINEAR_ROW))
    assert set(dead.groups) == {"0", "2"}  # MyLinear consumes group "0", produces "2"
    assert dead.groups["0"].dead.nonzero().reshape(-1).tolist() == [4]
    demp.remove_units(model, dead, optimizer=opt)
    assert model[2].weight.shape == (6, 7)
    torch.testing.assert_close(_output(model, x), before, rtol=0, atol=1e-10)
    _adam_step(model, opt, x)


# --- lookups ------------------------------------------------------------------------------


def test_feature_dim():
    assert feature_dim(nn.Linear(3, 4)) == -1
    for conv in (nn.Conv1d(2, 3, 1), nn.Conv2d(2, 3, 1), nn.Conv3d(2, 3, 1)):
        assert feature_dim(conv) == 1
    assert feature_dim(nn.BatchNorm2d(3)) == 1 and feature_dim(nn.GroupNorm(3, 3)) == 1
    assert feature_dim(nn.LayerNorm(3)) == -1
    assert feature_dim(nn.ReLU()) == 1  # no row: channels first
    mine = MyLinear(3, 4)
    assert feature_dim(mine) == 1
    assert feature_dim(mine, DEFAULT_RULES.with_rule(MY_LINEAR_ROW)) == -1


def test_table_lookups_and_immutability():
    assert set(root_types()) == {nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, ChannelSelect}
    assert set(norm_types()) == {
        nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm,
    }  # fmt: skip
    assert not has_rule(Scale(3)) and not has_rule(nn.SyncBatchNorm(3))
    rules = DEFAULT_RULES.with_rule(SCALE_ROW)
    assert has_rule(Scale(3), rules) and not has_rule(Scale(3))  # the default is untouched
    assert Scale in rules.norm_types() and "channels" in size_attributes(rules)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.rows = ()
    with pytest.raises(TypeError, match="no surgery rule for Scale"):
        side_size(Scale(3), "out")
    assert has_rule(Scale(3), copy.deepcopy(rules))  # a structure holding it can be copied
    assert rule_for(nn.Linear(2, 3), pickle.loads(pickle.dumps(DEFAULT_RULES))).feature_dim == -1

    class Wide(nn.Linear):
        pass

    assert rule_for(Wide(2, 3)) is rule_for(nn.Linear(2, 3))  # subclasses use the row
    special = dataclasses.replace(MY_LINEAR_ROW, types=(Wide,))
    assert rule_for(Wide(2, 3), DEFAULT_RULES.with_rule(special)) is special  # most specific


def test_regularizer_reads_the_table():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.SyncBatchNorm(4),
        nn.InstanceNorm2d(4, affine=True), nn.GroupNorm(2, 4), nn.LayerNorm(4), Scale(4),
    )  # fmt: skip
    found = regularized_parameters(model, "norm_scale")
    assert [id(p) for p in found] == [id(model[i].weight) for i in range(1, 6)]
    with_scale = regularized_parameters(model, "norm_scale", DEFAULT_RULES.with_rule(SCALE_ROW))
    assert id(with_scale[-1]) == id(model[6].weight)


# --- completeness: each row's sizes are recomputed after a cut and restored after a trial ---

INSTANCES = [
    nn.Linear(6, 5),
    nn.Conv1d(6, 5, 3),
    nn.Conv2d(6, 5, 3),
    nn.Conv3d(6, 5, 1),
    nn.Conv2d(6, 6, 3, groups=6),  # depthwise
    nn.BatchNorm1d(6),
    nn.BatchNorm2d(6),
    nn.BatchNorm2d(6, affine=False),
    nn.BatchNorm3d(6),
    nn.LayerNorm(6),
    nn.GroupNorm(6, 6),
    nn.GroupNorm(1, 6),
    ChannelSelect.identity(6),
]


def test_every_row_has_an_instance_here():
    covered = {type(m) for m in INSTANCES}
    assert all(t in covered for row in DEFAULT_RULES.rows for t in row.types)


@pytest.mark.parametrize("module", INSTANCES, ids=lambda m: repr(m))
def test_trial_cut_restores_every_size_attribute(module):
    row = rule_for(module)
    assert set(row.sync(module)) <= set(row.size_attributes)
    model = nn.Sequential(module)
    sides = ["out"] if row.single_dim(module) else ["out", "in"]
    attrs = {a: getattr(module, a) for a in row.size_attributes}
    tensors = {n: (t, t.data) for n, t in [*module.named_parameters(), *module.named_buffers()]}
    cuts = {("0", s): torch.tensor([0, 1, 3, 4]) for s in sides}
    with _restored(model, {"0"}, DEFAULT_RULES):
        apply_cuts(model, cuts, trial=True)
        assert all(side_size(module, s) == 4 for s in sides)
        changed = {a for a in row.size_attributes if getattr(module, a) != attrs[a]}
        assert changed  # the cut updated the sizes, from the sliced tensors
    assert {a: getattr(module, a) for a in row.size_attributes} == attrs
    for name, (tensor, data) in tensors.items():
        now = dict([*module.named_parameters(), *module.named_buffers()])[name]
        assert now is tensor or not isinstance(tensor, nn.Parameter)
        assert now.data_ptr() == data.data_ptr() and now.shape == data.shape


def test_a_row_must_name_the_sizes_it_sets():
    bad = dataclasses.replace(SCALE_ROW, size_attributes=())
    rules = DEFAULT_RULES.with_rule(bad)
    with pytest.raises(TypeError, match="not among its size_attributes"):
        sync_attributes(Scale(3), rules)
    with pytest.raises(ValueError, match="root LayerRule needs"):
        dataclasses.replace(MY_LINEAR_ROW, in_size=None)


def test_rows_match_other_libraries_types_by_qualified_name():
    class Conv1D(nn.Module):  # shaped as transformers.pytorch_utils.Conv1D
        pass

    Conv1D.__module__, Conv1D.__qualname__ = "transformers.pytorch_utils", "Conv1D"

    class Sub(Conv1D):
        pass

    assert rule_for(Conv1D()) is not None and rule_for(Conv1D()).kind == "root"
    assert rule_for(Sub()) is rule_for(Conv1D())  # subclasses too
    other = type("Conv1D", (nn.Module,), {})  # same name, another module: no row
    assert rule_for(other()) is None
    with pytest.raises(ValueError, match="types or type_names"):
        LayerRule(types=(), kind="norm", out_tensors=(), size_attributes=(),
                  sync=dict, out_size=len)  # fmt: skip
