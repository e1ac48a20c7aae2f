"""Contract tests over the model registry: forward, backward, find_dead, removal, reload."""

import pytest
import torch
from torch import nn

import demp
from demp.experiments.models import MODELS, build_model

SHAPES = {"cnn1d": (1, 40), "resnet1d": (1, 40)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registry_model_contract(name, tmp_path):
    torch.manual_seed(0)
    shape = SHAPES.get(name, (1, 12, 12))
    activation = "gelu" if name == "vit" else "relu"
    model = build_model(name, 10, shape, width=0.125, activation=activation).double()
    x = torch.randn(16, *shape, dtype=torch.float64)
    out = model(x)
    assert out.shape == (16, 10)
    out.sum().backward()
    criterion = "eps" if name == "vit" else "zero"
    dead = demp.find_dead(model, x, criterion=criterion)
    assert dead.groups, dead.skipped
    if name == "vit":
        assert all(n.endswith("fc1") for n in dead.groups)
    opt = torch.optim.Adam(model.parameters())
    request = {n: [0] for n, g in dead.groups.items() if g.width > 1}
    report = demp.remove_units(model, request, opt, structure=dead.structure)
    assert report.params_after < report.params_before
    assert model(x).shape == (16, 10)
    demp.save_checkpoint(tmp_path / "ck", model, opt)
    fresh = build_model(name, 10, shape, width=0.125, activation=activation).double()
    demp.load_checkpoint(tmp_path / "ck", fresh)
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))


def test_registry_errors():
    with pytest.raises(demp.DempError, match="unknown model"):
        build_model("alexnet", 10, (3, 32, 32))
    with pytest.raises(demp.DempError, match="unknown activation"):
        build_model("mlp", 10, (3, 32, 32), activation="tanhh")
    with pytest.raises(demp.DempError, match="needs square images"):
        build_model("resnet18", 10, (1, 40))
    with pytest.raises(demp.DempError, match="needs sequences"):
        build_model("cnn1d", 10, (1, 28, 28))


def test_paper_mlp_shape():
    model = build_model("mlp", 10, (1, 28, 28))
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [100, 300, 10]
