"""Guards (min_units, round_to) and refusals that must leave everything unchanged."""

import copy

import pytest
import torch
from nets import MLP, ResNet, TinyViT, kill
from torch import nn

import demp


def mlp_with_dead(units):
    torch.manual_seed(0)
    model = MLP((8, 6), in_dim=4).double()
    x = torch.randn(64, 4, dtype=torch.float64)
    s = demp.build_structure(model, x[:2])
    kill(model, s.groups["body.0"], units)
    return model, x


def test_min_units_keeps_the_most_active():
    model, x = mlp_with_dead(range(8))
    dead = demp.find_dead(model, x)
    assert dead.groups["body.0"].num_dead == 8
    report = demp.remove_units(model, dead, min_units=2)
    assert model.body[0].out_features == 2
    assert report.groups[0].width_after == 2


def test_min_units_below_one_is_refused():
    model, x = mlp_with_dead([0])
    with pytest.raises(demp.DempError, match="min_units must be >= 1"):
        demp.prune_dead(model, x, min_units=0)


def test_round_to_keeps_multiples_and_prefers_active_dead_units():
    model, x = mlp_with_dead([0, 1, 2, 3, 4])  # 3 alive of 8
    dead = demp.find_dead(model, x)
    score = dead.groups["body.0"].score
    score[[0, 1, 2, 3, 4]] = torch.tensor([0.0, 0.0, 0.0, 0.0, 1e-9], dtype=score.dtype)
    demp.remove_units(model, dead, round_to=4)
    assert model.body[0].out_features == 4
    kept_bias = model.body[0].bias.detach()
    assert (kept_bias == -1).sum() == 1  # the one kept dead unit (unit 4, the most active)


def test_mapping_request_and_refusal_of_skipped_group():
    model = TinyViT()
    x = torch.randn(4, 3, 8, 8)
    dead = demp.find_dead(model, x)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(demp.UnsupportedGroupError, match="embed.*LayerNorm"):
        demp.remove_units(model, {"fc1": [0], "embed": [1]}, structure=dead.structure)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    report = demp.remove_units(model, {"fc1": [0, 3]}, structure=dead.structure)
    assert model.fc1.out_features == 14 and model.fc2.in_features == 14
    assert report.removed == 2
    model(x)


def test_stale_decision_and_bad_indices_are_refused():
    model, x = mlp_with_dead([1])
    dead = demp.find_dead(model, x)
    demp.remove_units(model, dead)
    with pytest.raises(demp.DempError, match="stale"):
        demp.remove_units(model, dead)
    with pytest.raises(demp.DempError, match="out of range"):
        demp.remove_units(model, {"body.0": [7]}, structure=dead.structure)
    with pytest.raises(demp.UnsupportedGroupError, match="no channel group named"):
        demp.remove_units(model, {"nope": [0]}, structure=dead.structure)


def test_structure_detects_a_model_changed_behind_its_back():
    model, x = mlp_with_dead([1])
    s = demp.build_structure(model, x[:2])
    model.body[2] = nn.Linear(8, 5)
    with pytest.raises(demp.StaleStructureError, match="body.2"):
        demp.find_dead(model, x, structure=s)


def test_transactional_when_a_late_tensor_fails(monkeypatch):
    model = ResNet(blocks=(1,), width=4)
    x = torch.randn(4, 3, 8, 8)
    s = demp.build_structure(model, x[:2])
    kill(model, s.groups["stem"], [0])
    dead = demp.find_dead(model, x, structure=s)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = copy.deepcopy(model.state_dict())
    calls = {"n": 0}
    original = torch.Tensor.index_select

    def failing(self, dim, index):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("out of memory")
        return original(self, dim, index)

    monkeypatch.setattr(torch.Tensor, "index_select", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        demp.remove_units(model, dead, opt)
    monkeypatch.undo()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.stem.out_channels == 4
    assert s.widths()["stem"] == 4
