"""Checkpoints of shrunk models reload into freshly built ones, optimizer included."""

import copy
import json
import pickle

import pytest
import torch
from nets import ResNet, eval_out, kill
from torch import nn

import demp
from demp.checkpoint import checkpoint_tensors


def trained_and_shrunk(tmp_path):
    torch.manual_seed(0)
    model = ResNet(blocks=(1, 1), width=4).double()
    x = torch.randn(8, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (8,))
    s = demp.build_structure(model, x[:2])
    kill(model, s.groups["layers.0.conv1"], [0, 2])
    kill(model, s.groups["stem"], [3])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    dead = demp.find_dead(model, x)
    demp.remove_units(model, dead, opt)
    model.history = dead.structure.history  # kept by the test: demp keeps nothing on the model
    return model, opt, x, y


def one_step(model, opt, x, y):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return eval_out(model, x)


def fresh():
    torch.manual_seed(123)
    model = ResNet(blocks=(1, 1), width=4).double()
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


def test_round_trip_outputs_and_next_step_identical(tmp_path):
    model, opt, x, y = trained_and_shrunk(tmp_path)
    structure = demp.Structure(groups={}, history=model.history)
    demp.save_checkpoint(tmp_path / "ckpt", model, opt, structure=structure, extra={"step": 2})
    model2, opt2 = fresh()
    extra = demp.load_checkpoint(tmp_path / "ckpt", model2, opt2)
    assert extra == {"step": 2}
    assert model2.layers[0].conv1.out_channels == model.layers[0].conv1.out_channels == 2
    assert torch.equal(eval_out(model, x), eval_out(model2, x))
    assert torch.equal(one_step(model, opt, x, y), one_step(model2, opt2, x, y))
    history = demp.removal_history(tmp_path / "ckpt")
    assert history == model.history == [{"layers.0.conv1": [0, 2], "stem": [3]}]
    # the reloaded model can be pruned and saved again
    demp.save_checkpoint(tmp_path / "ckpt", model2, opt2)
    model3, opt3 = fresh()
    demp.load_checkpoint(tmp_path / "ckpt", model3, opt3)
    assert torch.equal(eval_out(model2, x), eval_out(model3, x))


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_of_a_pruned_model_checkpoint_and_reload(tmp_path, how):
    """EMA copies and best-model snapshots: nothing about the cut lives outside the model."""
    model, opt, x, _ = trained_and_shrunk(tmp_path)
    clone = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    demp.save_checkpoint(tmp_path / "ckpt", clone)
    model2, _ = fresh()
    demp.load_checkpoint(tmp_path / "ckpt", model2)
    assert model2.layers[0].conv1.out_channels == 2
    assert torch.equal(eval_out(model2, x), eval_out(model, x))
    # a copy taken before the cut still saves the unpruned model
    torch.manual_seed(0)
    dense = ResNet(blocks=(1, 1), width=4).double()
    snapshot = copy.deepcopy(dense)
    demp.prune_dead(dense, x)
    demp.save_checkpoint(tmp_path / "dense", snapshot)
    model3, _ = fresh()
    demp.load_checkpoint(tmp_path / "dense", model3)
    assert torch.equal(eval_out(model3, x), eval_out(snapshot, x))


def test_a_shape_without_a_layer_rule_is_refused_before_any_change(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model.register_parameter("extra", nn.Parameter(torch.zeros(5)))
    demp.save_checkpoint(tmp_path / "ckpt", model)
    fresh_model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    fresh_model.register_parameter("extra", nn.Parameter(torch.zeros(7)))
    before = copy.deepcopy(fresh_model.state_dict())
    with pytest.raises(demp.CheckpointError, match="extra"):
        demp.load_checkpoint(tmp_path / "ckpt", fresh_model)
    assert all(torch.equal(before[k], v) for k, v in fresh_model.state_dict().items())


def test_checkpoint_holds_no_pickle(tmp_path):
    model, opt, _, _ = trained_and_shrunk(tmp_path)
    path = demp.save_checkpoint(tmp_path / "ckpt", model, opt)
    names = sorted(p.name for p in path.iterdir())
    assert names == ["model.safetensors", "optimizer.json", "optimizer.safetensors", "spec.json"]
    spec = json.loads((path / "spec.json").read_text())
    assert spec["shapes"]["stem.weight"] == [3, 3, 3, 3]
    assert "original_shapes" not in spec  # derived from the model at load time, not stored


def test_mismatched_model_is_refused_before_any_change(tmp_path):
    model, opt, _, _ = trained_and_shrunk(tmp_path)
    demp.save_checkpoint(tmp_path / "ckpt", model, opt)
    other = ResNet(blocks=(1, 1), width=2).double()  # narrower than the checkpoint
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(demp.CheckpointError, match="stem.weight has shape"):
        demp.load_checkpoint(tmp_path / "ckpt", other)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    with pytest.raises(demp.CheckpointError, match="missing"):
        demp.load_checkpoint(tmp_path / "ckpt", ResNet(blocks=(1,), width=4).double())
    with pytest.raises(demp.CheckpointError, match="holds Adam state, not SGD"):
        model2, _ = fresh()
        demp.load_checkpoint(tmp_path / "ckpt", model2, torch.optim.SGD(model2.parameters(), 0.1))


def test_corrupted_or_missing_files_are_clear_errors(tmp_path):
    model, opt, _, _ = trained_and_shrunk(tmp_path)
    path = demp.save_checkpoint(tmp_path / "ckpt", model)
    with pytest.raises(demp.CheckpointError, match="no optimizer state"):
        model2, opt2 = fresh()
        demp.load_checkpoint(path, model2, opt2)
    (path / "spec.json").write_text("{not json")
    with pytest.raises(demp.CheckpointError, match="corrupted"):
        demp.load_checkpoint(path, fresh()[0])
    with pytest.raises(demp.CheckpointError, match="not found"):
        demp.load_checkpoint(tmp_path / "nowhere", fresh()[0])
    path = demp.save_checkpoint(tmp_path / "ckpt", model)
    tensors = {"mask": torch.tensor([True, False, True])}
    path = demp.save_checkpoint(tmp_path / "ckpt", model, tensors=tensors)
    data = bytearray((path / "extra.safetensors").read_bytes())
    data[-1] ^= 1  # one bit of the mask's data flipped
    (path / "extra.safetensors").write_bytes(bytes(data))
    with pytest.raises(demp.CheckpointError, match="extra.safetensors is damaged"):
        checkpoint_tensors(path)
    assert not torch.equal(checkpoint_tensors(path, verify=False)["mask"], tensors["mask"])
    demp.load_checkpoint(path, fresh()[0], verify=False)  # the caller checked, or chose not to
    path = demp.save_checkpoint(tmp_path / "ckpt", model)
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(demp.CheckpointError, match="model.safetensors is damaged"):
        demp.load_checkpoint(path, fresh()[0])


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    model, opt, x, _ = trained_and_shrunk(tmp_path)
    path = demp.save_checkpoint(tmp_path / "ckpt", model, opt)

    class Unserializable:
        pass

    with pytest.raises(TypeError):
        demp.save_checkpoint(path, model, opt, extra={"bad": Unserializable()})
    model2, opt2 = fresh()
    demp.load_checkpoint(path, model2, opt2)
    assert torch.equal(eval_out(model, x), eval_out(model2, x))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
