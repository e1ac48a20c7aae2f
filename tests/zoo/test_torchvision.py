"""torchvision's classification families (random init, nothing downloaded): forced-dead
units are found and cut exactly; decouple_residuals gives its ResNets per-block groups."""

import pytest
import torch

tv = pytest.importorskip(
    "torchvision.models", reason="the model-zoo tests run in .venv-zoo (setup.sh --zoo)"
)
from zoo_contract import check_contract  # noqa: E402

import demp  # noqa: E402

# The deep and wide members of a family are built with fewer blocks (same block code);
# shift as in test_timm.py: 0 where a group can end without an activation.
MODELS = {
    "resnet18": (lambda: tv.resnet18(num_classes=5), -1.0),
    "resnet50": (lambda: tv.resnet50(num_classes=5), -1.0),
    "resnext": (  # grouped 3x3 convolutions: those groups are skipped
        lambda: tv.ResNet(
            tv.resnet.Bottleneck, [1, 1, 1, 1], groups=8, width_per_group=4, num_classes=5
        ),
        -1.0,
    ),  # fmt: skip
    "wide_resnet": (
        lambda: tv.ResNet(tv.resnet.Bottleneck, [1, 1, 1, 1], width_per_group=128, num_classes=5),
        -1.0,
    ),  # fmt: skip
    "vgg11_bn": (lambda: tv.vgg11_bn(num_classes=5), -1.0),
    "mobilenet_v2": (lambda: tv.mobilenet_v2(num_classes=5), 0.0),
    "mobilenet_v3_small": (lambda: tv.mobilenet_v3_small(num_classes=5), 0.0),
    "densenet121": (lambda: tv.densenet121(num_classes=5), -1.0),
    "regnet_x_400mf": (lambda: tv.regnet_x_400mf(num_classes=5), -1.0),
    "regnet_y_400mf": (lambda: tv.regnet_y_400mf(num_classes=5), -1.0),
    "squeezenet1_1": (lambda: tv.squeezenet1_1(num_classes=5), -1.0),
    "efficientnet_b0": (lambda: tv.efficientnet_b0(num_classes=5), 0.0),
    "convnext_tiny": (lambda: tv.convnext_tiny(num_classes=5), 0.0),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torchvision_model_contract(name, tmp_path):
    build, shift = MODELS[name]
    size = 64 if name == "squeezenet1_1" else 32
    x = torch.randn(4, 3, size, size, dtype=torch.float64)
    structure, _, report = check_contract(build, x, tmp_path, shift=shift)
    assert report.removed > 0
    assert all(reason for reason in structure.skipped.values())


def test_shufflenet_is_refused_clearly_and_left_unchanged():
    model = tv.shufflenet_v2_x0_5(num_classes=5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(demp.DempError, match="could not trace ShuffleNetV2.*channel shuffle"):
        demp.find_dead(model, torch.randn(4, 3, 32, 32))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def decoupled(build):
    def make():
        model = build()
        demp.decouple_residuals(model, torch.randn(2, 3, 32, 32))
        return model

    return make


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_resnet_decoupled_contract(name, tmp_path):
    build, shift = MODELS[name]
    plain = demp.build_checked_structure(build().double(), torch.randn(2, 3, 32, 32).double())
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    structure, _, report = check_contract(decoupled(build), x, tmp_path, shift=shift)
    assert len(structure.groups) > len(plain.groups)  # a group per block, not per stage
    assert report.removed > 0
