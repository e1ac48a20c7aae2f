"""Checkpoints of shrunk models reload into freshly built ones, optimizer included."""

import copy
import json

import pytest
import torch
from nets import ResNet, eval_out, kill
from torch import nn

import demp


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
    demp.prune_dead(model, x, opt)
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
    demp.save_checkpoint(tmp_path / "ckpt", model, opt, extra={"step": 2})
    model2, opt2 = fresh()
    extra = demp.load_checkpoint(tmp_path / "ckpt", model2, opt2)
    assert extra == {"step": 2}
    assert model2.layers[0].conv1.out_channels == model.layers[0].conv1.out_channels == 2
    assert torch.equal(eval_out(model, x), eval_out(model2, x))
    assert torch.equal(one_step(model, opt, x, y), one_step(model2, opt2, x, y))
    assert demp.removal_history(model2) == demp.removal_history(model)
    # the reloaded model can be pruned and saved again
    demp.save_checkpoint(tmp_path / "ckpt", model2, opt2)
    model3, opt3 = fresh()
    demp.load_checkpoint(tmp_path / "ckpt", model3, opt3)
    assert torch.equal(eval_out(model2, x), eval_out(model3, x))


def test_checkpoint_holds_no_pickle(tmp_path):
    model, opt, _, _ = trained_and_shrunk(tmp_path)
    path = demp.save_checkpoint(tmp_path / "ckpt", model, opt)
    names = sorted(p.name for p in path.iterdir())
    assert names == ["model.safetensors", "optimizer.json", "optimizer.safetensors", "spec.json"]
    spec = json.loads((path / "spec.json").read_text())
    assert spec["shapes"]["stem.weight"] == [3, 3, 3, 3]
    assert spec["original_shapes"]["stem.weight"] == [4, 3, 3, 3]


def test_mismatched_model_is_refused_before_any_change(tmp_path):
    model, opt, _, _ = trained_and_shrunk(tmp_path)
    demp.save_checkpoint(tmp_path / "ckpt", model, opt)
    other = ResNet(blocks=(1, 1), width=6).double()
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
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(demp.CheckpointError, match="cannot read"):
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
