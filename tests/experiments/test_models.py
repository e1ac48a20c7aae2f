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


def test_a_registered_model_is_a_model_choice_at_once():
    from demp.experiments.cli.main import build_parser
    from demp.experiments.harness.config import TrainConfig
    from demp.experiments.models import registry

    before = dict(registry.MODELS)

    @registry.register_model("tiny-res", "a test model", per_block=True)
    def _tiny(k, shape, width, act):
        return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.Size(shape).numel()), k))

    try:
        args = build_parser().parse_args(["train", "--model", "tiny-res", "--out", "x"])
        assert args.model == "tiny-res"
        assert (
            "tiny-res"
            in build_parser()._subparsers._group_actions[0].choices["train"].format_help()
        )
        assert build_model("tiny-res", 3, (2, 4))(torch.zeros(5, 2, 4)).shape == (5, 3)
        config = TrainConfig.from_dict({"model": "tiny-res", "method": "demp", "steps": 4})
        assert config.residual_mode() == "per-block"
        assert TrainConfig.from_dict({"model": "mlp", "method": "demp", "steps": 4}
                                     ).residual_mode() == "coupled"  # fmt: skip
        with pytest.raises(demp.DempError, match="registered twice"):
            registry.register_model("tiny-res", "again")(_tiny)
    finally:
        registry.MODELS.clear()
        registry.MODELS.update(before)
