"""DemP+'s removal budget: floors, the cap at the target, the reachable maximum."""

from __future__ import annotations

import copy

import pytest
import torch
from nets import VGG, ResNet

import demp
from demp.algorithm.budget import cap_removal, group_floors, largest_removal
from demp.structure import CostModel


def _setup(net=None):
    torch.manual_seed(0)
    model, x = net or ResNet(), torch.randn(4, 3, 8, 8)
    structure = demp.build_checked_structure(model, [x])
    return model, x, structure, CostModel.measure(model, structure, x[:1])


def _everything(structure):
    return {n: torch.arange(1, g.width) for n, g in structure.groups.items()}


def _cut(model, structure, removed):
    model2, structure2 = copy.deepcopy(model), copy.deepcopy(structure)
    demp.remove_units(model2, removed, structure=structure2)
    return model2, structure2


def test_group_floors_closed_form():
    floors = group_floors({"a": 10, "b": 3, "c": 64}, min_units=2, min_fraction=0.25)
    assert floors == {"a": 3, "b": 2, "c": 16}
    assert group_floors({"a": 8}, 1, 0.5) == {"a": 4}  # exact products are not rounded up


@pytest.mark.parametrize("metric", ["weight", "neuron", "flops"])
@pytest.mark.parametrize("fraction", [0.1, 0.4, 0.8])
def test_cap_never_overshoots_and_leaves_no_piece_that_fits(metric, fraction):
    model, x, structure, costs = _setup()
    everything = _everything(structure)
    budget = fraction * costs.saving(everything, metric)
    chosen = cap_removal(costs, everything, budget, metric)
    model2, structure2 = _cut(model, structure, chosen)
    saved = {
        "weight": demp.count_trainable(model) - demp.count_trainable(model2),
        "neuron": structure.num_units - structure2.num_units,
        "flops": demp.forward_flops(model, x[:1]) - demp.forward_flops(model2, x[:1]),
    }[metric]
    assert saved <= budget + 1e-6
    # no group's next unit would still fit: the cap stops within one unit per group
    for name, idx in everything.items():
        taken = chosen.get(name, torch.zeros(0, dtype=torch.long))
        if taken.numel() < idx.numel():
            more = torch.cat([taken, idx[taken.numel() : taken.numel() + 1]])
            assert costs.saving({**chosen, name: more}, metric) > budget


def test_cap_keeps_round_to_multiples_and_passes_small_requests_through():
    model, x, structure, costs = _setup(VGG((16, 8)))
    request = {n: torch.arange(4, g.width) for n, g in structure.groups.items()}
    assert cap_removal(costs, request, float("inf"), "weight") == request
    chosen = cap_removal(costs, request, 0.5 * costs.saving(request, "weight"), "weight", chunk=4)
    for name, idx in chosen.items():
        assert (structure.groups[name].width - idx.numel()) % 4 == 0


def test_floors_hold_in_remove_units_and_bound_the_largest_removal():
    model, x, structure, costs = _setup()
    initial = structure.widths()
    floors = group_floors(initial, 1, 0.5)
    everything = {n: torch.arange(g.width) for n, g in structure.groups.items()}
    demp.remove_units(model, everything, structure=structure, floors=floors)
    assert structure.widths() == {n: max(1, -(-w // 2)) for n, w in initial.items()}
    most = largest_removal(structure, floors, None)
    assert all(idx.numel() == 0 for idx in most.values())


def test_unreachable_target_is_refused_at_construction():
    torch.manual_seed(0)
    model, x = ResNet(), torch.randn(64, 3, 8, 8)
    opt = torch.optim.Adam(model.parameters())
    cfg = demp.DemPConfig(target_sparsity=0.99, min_fraction=0.5)
    with pytest.raises(demp.DempError, match="cannot be reached.*at most"):
        demp.DemonPruner(model, opt, x, total_steps=100, config=cfg)
    demp.DemonPruner(model, opt, x, total_steps=100, config=cfg.__class__(target_sparsity=0.4))
