"""CostModel: its savings equal an independent count after really cutting the units."""

from __future__ import annotations

import copy

import pytest
import torch

import demp
from demp.structure import CostModel
from tests.nets import MLP, VGG, Bottleneck, ResNet, Separable, TinyViT

NETS = {
    "mlp": (lambda: MLP(), lambda: torch.randn(4, 5)),
    "vgg": (lambda: VGG(), lambda: torch.randn(4, 3, 8, 8)),
    "resnet": (lambda: ResNet(), lambda: torch.randn(4, 3, 8, 8)),
    "bottleneck": (lambda: ResNet(Bottleneck, (1, 1)), lambda: torch.randn(4, 3, 8, 8)),
    "separable": (lambda: Separable(), lambda: torch.randn(4, 3, 8, 8)),
    "vit": (lambda: TinyViT(), lambda: torch.randn(4, 3, 8, 8)),
}


def _setup(name: str):
    torch.manual_seed(0)
    build, data = NETS[name]
    model, x = build(), data()
    structure = demp.build_checked_structure(model, [x])
    return model, x, structure


def _cut_and_count(model, structure, removed, x):
    model2, structure2 = copy.deepcopy(model), copy.deepcopy(structure)
    demp.remove_units(model2, removed, structure=structure2)
    return {
        "weight": demp.count_trainable(model) - demp.count_trainable(model2),
        "neuron": structure.num_units - structure2.num_units,
        "flops": demp.forward_flops(model, x[:1]) - demp.forward_flops(model2, x[:1]),
    }


@pytest.mark.parametrize("name", sorted(NETS))
def test_one_unit_costs_equal_a_real_cut(name):
    model, x, structure = _setup(name)
    costs = CostModel.measure(model, structure, x[:1])
    assert structure.groups
    for metric in ("weight", "neuron", "flops"):
        per_unit = costs.unit_costs(metric)
        for group in structure.groups.values():
            counted = _cut_and_count(model, structure, {group.name: [0]}, x)
            assert per_unit[group.name] == pytest.approx(counted[metric], abs=1e-6), (
                group.name,
                metric,
            )


@pytest.mark.parametrize("name", ["resnet", "vgg", "bottleneck", "separable"])
def test_joint_saving_is_exact_not_additive(name):
    model, x, structure = _setup(name)
    costs = CostModel.measure(model, structure, x[:1])
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        removed = {}
        for group in structure.groups.values():
            n = int(torch.randint(0, group.width, (1,), generator=gen))
            removed[group.name] = torch.randperm(group.width, generator=gen)[:n].sort().values
        counted = _cut_and_count(model, structure, removed, x)
        for metric in ("weight", "neuron", "flops"):
            assert costs.saving(removed, metric) == pytest.approx(counted[metric], abs=1e-6)


def test_total_tracks_the_model_after_a_cut():
    model, x, structure = _setup("resnet")
    costs = CostModel.measure(model, structure, x[:1])
    flops_before, grouped_before = demp.forward_flops(model, x[:1]), costs.total("flops")
    name = next(iter(structure.groups))
    demp.remove_units(model, {name: [0, 1]}, structure=structure)
    assert costs.total("weight") == demp.count_trainable(model)
    assert costs.total("neuron") == structure.num_units
    # the grouped layers' FLOPs fall by exactly what the whole model's FLOPs fall by
    drop = flops_before - demp.forward_flops(model, x[:1])
    assert grouped_before - costs.total("flops") == pytest.approx(drop)
