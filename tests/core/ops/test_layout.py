"""A cut keeps each tensor's memory format: channels-last models stay channels-last."""

import copy

import torch
from torch import nn

import demp
from demp.ops.layout import slice_like
from demp.structure.build import StructureOptions, build_checked_structure

CL = torch.channels_last


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ).double()  # fmt: skip


def trained(model: nn.Module, x: torch.Tensor) -> torch.optim.Optimizer:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()
    return opt


def test_a_channels_last_model_keeps_its_layout_and_computes_the_same_through_a_cut():
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    plain, fast = net(), net().to(memory_format=CL)
    opts = trained(plain, x), trained(fast, x)
    cuts = {"0": [1, 4, 6], "3": [0, 5]}  # the 1x1 conv's input and output sides both cut
    for model, opt in zip((plain, fast), opts, strict=True):
        demp.remove_units(model, cuts, structure=demp.build_structure(model, x), optimizer=opt)
    for name in ("0", "3", "6"):
        weight = fast.get_submodule(name).weight
        assert weight.is_contiguous(memory_format=CL), name
        assert weight.grad.is_contiguous(memory_format=CL), name
        for key in ("exp_avg", "exp_avg_sq"):
            assert opts[1].state[weight][key].is_contiguous(memory_format=CL), (name, key)
    assert plain[0].weight.is_contiguous() and plain[3].weight.is_contiguous()
    assert plain[0].weight.shape == (5, 3, 3, 3) and plain[3].weight.shape == (4, 5, 1, 1)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-12, atol=1e-12)
    trained(fast, x), trained(plain, x)  # training goes on after the cut, in both layouts
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-9, atol=1e-9)


def test_slice_like_keeps_values_and_only_channels_last_layouts():
    keep = [(0, torch.tensor([0, 2])), (1, torch.tensor([1]))]
    base = torch.randn(3, 4, 5, 5)
    last = base.contiguous(memory_format=CL)
    assert torch.equal(slice_like(last, keep), base[[0, 2]][:, [1]])
    assert slice_like(last, keep).is_contiguous(memory_format=CL)
    assert slice_like(base, keep).is_contiguous()
    both = torch.randn(3, 4, 1, 1).contiguous(memory_format=CL)  # size-1 dims: both layouts
    assert both.is_contiguous() and slice_like(both, keep).is_contiguous()
    last3d = torch.randn(3, 4, 2, 2, 2).contiguous(memory_format=torch.channels_last_3d)
    assert slice_like(last3d, keep).is_contiguous(memory_format=torch.channels_last_3d)
    strided = torch.randn(4, 6)[:, ::2]  # neither layout: sliced as index_select leaves it
    assert torch.equal(slice_like(strided, [(1, torch.tensor([0, 2]))]), strided[:, [0, 2]])


class Pooled(nn.Module):
    """conv -> BN -> ReLU -> conv -> pool to 1 -> flatten -> linear; ``mixing``: a restride
    of the second conv's output that reads the storage across channels instead."""

    def __init__(self, mixing: bool = False) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.fc, self.mixing = nn.Conv2d(8, 6, 3, padding=1), nn.Linear(6, 2), mixing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(torch.relu(self.bn1(self.conv1(x))))
        if self.mixing:  # element (n, c) from storage offset n * C + c: not channel c
            h = h.contiguous().as_strided((h.shape[0], h.shape[1], 1, 1), (h.shape[1], 1, 1, 1))
        else:
            h = nn.functional.adaptive_avg_pool2d(h, 1)
        return self.fc(h.flatten(1))


def checked(model: nn.Module, x: torch.Tensor) -> demp.Structure:
    options = StructureOptions.of((), False, True, None)
    return build_checked_structure(model, x, options)


def test_a_channels_last_pool_to_one_is_cut_like_the_default_layout():
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    torch.manual_seed(0)
    plain = Pooled().double().eval()
    fast = copy.deepcopy(plain).to(memory_format=CL)
    groups = {}
    for name, model in (("plain", plain), ("fast", fast)):
        structure = checked(model, x)
        groups[name] = ({n: g.width for n, g in structure.groups.items()}, set(structure.skipped))
        demp.remove_units(model, {"conv2": [1, 4]}, structure=structure)
    assert groups["fast"] == groups["plain"] == ({"conv1": 8, "conv2": 6}, {"fc"})
    assert fast.conv2.weight.is_contiguous(memory_format=CL)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-12, atol=1e-12)


def test_an_as_strided_that_mixes_channels_stays_refused():
    x = torch.randn(4, 3, 8, 8)
    structure = checked(Pooled(mixing=True), x)
    assert "conv2" not in structure.groups and "conv2" in structure.skipped
