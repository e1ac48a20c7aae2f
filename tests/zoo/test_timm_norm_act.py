"""timm's norm-act layers (and torchvision's frozen batch norm) between two convolutions:
the per-channel ones are cut exactly, the others are skipped with their reason."""

import functools

import pytest
import torch
from torch import nn

layers = pytest.importorskip(
    "timm.layers", reason="the model-zoo tests run in .venv-zoo (setup.sh --zoo)"
)
from timm.layers.evo_norm import EvoNorm2dB0  # noqa: E402
from timm.layers.filter_response_norm import (  # noqa: E402
    FilterResponseNormAct2d,
    FilterResponseNormTlu2d,
)
from torchvision.ops.misc import FrozenBatchNorm2d  # noqa: E402
from zoo_contract import check_contract  # noqa: E402

import demp  # noqa: E402

PER_CHANNEL = {
    "BatchNormAct2d": layers.BatchNormAct2d,
    "GroupNormAct(group_size=1)": functools.partial(layers.GroupNormAct, group_size=1),
    "FrozenBatchNormAct2d": layers.FrozenBatchNormAct2d,
    "FrozenBatchNorm2d": FrozenBatchNorm2d,
    "FilterResponseNormAct2d": FilterResponseNormAct2d,
    "FilterResponseNormTlu2d": FilterResponseNormTlu2d,
}
OVER_CHANNELS = {  # norm -> what the skip says
    "GroupNormAct(num_groups=2)": (functools.partial(layers.GroupNormAct, num_groups=2),
                                   "normalizes over the channels"),
    "GroupNorm1Act": (layers.GroupNorm1Act, "normalizes over the channels"),
    "LayerNormAct2d": (layers.LayerNormAct2d, "normalizes over the channels"),
    "RmsNormAct2d": (layers.RmsNormAct2d, "no row of the layer table covers RmsNormAct2d"),
    "EvoNorm2dB0": (EvoNorm2dB0, "no row of the layer table covers EvoNorm2dB0"),
}  # fmt: skip


def net(norm):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), norm(8), nn.ReLU(), nn.Conv2d(8, 8, 3), norm(8),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(PER_CHANNEL))
def test_per_channel_norm_act_layers_are_cut_exactly(name, tmp_path):
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    structure, _, report = check_contract(lambda: net(PER_CHANNEL[name]), x, tmp_path)
    assert set(structure.groups) == {"0", "3"} and report.removed == 4


@pytest.mark.parametrize("name", sorted(OVER_CHANNELS))
def test_norm_act_layers_over_the_channels_are_skipped_with_the_reason(name):
    norm, reason = OVER_CHANNELS[name]
    model = net(norm)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(demp.DempError, match="no prunable channel group") as err:
        demp.find_dead(model, torch.randn(4, 3, 8, 8))
    assert reason in str(err.value)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
