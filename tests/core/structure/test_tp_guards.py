"""Guards around Torch-Pruning's tracing (demp.structure.tp_guards)."""

import torch
import torch_pruning as tp
from torch import nn

import demp
from demp.structure.tp_guards import without_cache


class Attention(nn.Module):
    """Single-head attention, then an MLP; ``use_cache`` as a transformers decoder has it."""

    def __init__(self, d=8):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, 12), nn.Linear(12, d)
        self.seen = []

    def forward(self, x, use_cache=True):
        self.seen.append(use_cache)
        scores = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2), dim=-1)
        h = x + self.o(scores @ self.v(x))
        return h + self.fc2(torch.relu(self.fc1(h)))


def test_groups_that_would_be_refused_are_not_searched(monkeypatch):
    searched = []
    real = tp.DependencyGraph.get_pruning_group

    def spy(self, module, *args, **kwargs):
        searched.append(module)
        return real(self, module, *args, **kwargs)

    monkeypatch.setattr(tp.DependencyGraph, "get_pruning_group", spy)
    model = Attention()
    s = demp.build_structure(model, {"x": torch.randn(2, 5, 8)})
    assert set(s.groups) == {"fc1"}
    for name in ("q", "k", "v"):  # refused before Torch-Pruning searched their groups
        assert "may mix channels" in s.skipped[name]
        assert getattr(model, name) not in searched
    assert model.fc1 in searched


def test_keyword_inputs_are_traced_without_a_cache():
    model = Attention()
    demp.build_structure(model, {"x": torch.randn(2, 5, 8)})
    assert model.seen and not any(model.seen)


def test_without_cache_leaves_other_inputs_alone():
    model, x = Attention(), torch.randn(2, 5, 8)
    assert without_cache(model, x) is x  # positional input: nothing to add
    assert without_cache(model, {"x": x, "use_cache": True})["use_cache"] is True
    assert without_cache(nn.Linear(8, 8), {"input": x}) == {"input": x}
    assert without_cache(model, {"x": x}) == {"x": x, "use_cache": False}


class MixedCat(nn.Module):
    """A cuttable branch concatenated with a branch that mixes its channels (softmax)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.Conv2d(8, 3, 1)

    def forward(self, x):
        mixed = torch.softmax(self.a(x), dim=1)
        return self.c(torch.cat([torch.relu(self.b(x)), mixed], dim=1))


def test_the_early_refusal_does_not_cross_a_concatenation():
    # b's channels meet the softmax only as their own range of the concatenation
    s = demp.build_structure(MixedCat(), torch.randn(2, 3, 4, 4))
    assert "b" in s.groups
    assert "Softmax" in s.skipped["a"]
