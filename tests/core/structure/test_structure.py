import pytest
import torch
from nets import MLP, VGG, Basic, Bottleneck, ResNet, Separable, TinyViT
from torch import nn

import demp


def build(model, x, **kw):
    return demp.build_structure(model, x, **kw)


def test_mlp_groups_and_output_layer():
    s = build(MLP(), torch.randn(2, 5))
    assert set(s.groups) == {"body.0", "body.2", "body.4"}
    assert s.output_layers == ["head"]
    assert "head" in s.skipped
    assert [s.groups[n].width for n in ("body.0", "body.2", "body.4")] == [8, 12, 6]
    assert s.num_units == 26


def test_resnet18_layout_has_twelve_groups():
    model = ResNet(Basic, blocks=(2, 2, 2, 2), width=4)
    s = build(model, torch.randn(2, 3, 16, 16))
    # 8 block-inner groups + 4 residual streams (the stem's joins stage 1's stream)
    assert len(s.groups) == 12
    inner = [n for n in s.groups if n.endswith("conv1")]
    assert len(inner) == 8


def test_bottleneck_resnet_groups():
    model = ResNet(Bottleneck, blocks=(2, 1), width=4)
    s = build(model, torch.randn(2, 3, 8, 8))
    assert len([n for n in s.groups if n.endswith(("conv1", "conv2"))]) == 6
    assert len(s.groups) == 1 + 6 + 2  # stem (projection shortcut follows), inner, streams


def test_flatten_maps_one_channel_to_hw_features():
    model = VGG(channels=(6, 8), size=8)
    s = build(model, torch.randn(2, 3, 8, 8))
    group = s.groups["features.4"]
    (slot,) = [x for x in group.slots if x.path == "fc1"]
    assert slot.index.shape == (8, 4)
    assert slot.index[1].tolist() == [4, 5, 6, 7]


def test_concat_and_depthwise_are_grouped():
    s = build(Separable(), torch.randn(2, 3, 6, 6))
    roles = {(x.path, x.role) for x in s.groups["a"].slots}
    assert ("dw", "depthwise") in roles and ("bn", "norm") in roles
    (cat_slot,) = [x for x in s.groups["b"].slots if x.path == "mix"]
    assert cat_slot.index.reshape(-1).tolist() == [6, 7, 8, 9]


def test_tracing_restores_mode_and_never_cuts_inputs():
    model = ResNet(Basic, blocks=(1, 1)).train()
    model.layers[0].eval()
    build(model, torch.randn(2, 3, 8, 8))
    assert model.training and not model.layers[0].training and model.layers[1].training
    s = build(model, torch.randn(2, 3, 8, 8))
    for g in s.groups.values():
        assert all(not (x.path == "stem" and x.role == "consumer") for x in g.slots)


def test_ignored_layers_by_module_and_path():
    model = MLP()
    s = build(model, torch.randn(2, 5), ignored_layers=[model.body[2], "body.4"])
    assert set(s.groups) == {"body.0"}
    assert "output layer or ignored" in s.skipped["body.2"]
    with pytest.raises(ValueError, match="no module named 'nope'"):
        build(model, torch.randn(2, 5), ignored_layers=["nope"])


def test_vit_mlp_prunable_attention_and_layernorm_skipped():
    s = build(TinyViT(), torch.randn(2, 3, 8, 8))
    assert set(s.groups) == {"fc1"}
    assert any("LayerNorm" in r or "MultiheadAttention" in r for r in s.skipped.values())


def test_layernorm_opt_in_accepts_the_stream():
    class LNNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.ln, self.b = nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2)

        def forward(self, x):
            return self.b(torch.relu(self.ln(self.a(x))))

    refused = build(LNNet(), torch.randn(3, 4))
    assert "a" in refused.skipped and "LayerNorm" in refused.skipped["a"]
    accepted = build(LNNet(), torch.randn(3, 4), allow_inexact_norm=True)
    assert "a" in accepted.groups


def test_grouped_conv_refused_with_path():
    class G(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.g, self.fc = (
                nn.Conv2d(3, 8, 1),
                nn.Conv2d(8, 8, 3, groups=2),
                nn.Linear(8, 2),
            )

        def forward(self, x):
            return self.fc(self.g(torch.relu(self.a(x))).mean((2, 3)))

    s = build(G(), torch.randn(2, 3, 5, 5))
    assert "g (Conv2d) is a grouped convolution (groups=2)" in s.skipped["a"]


class ChannelMean(nn.Module):
    """A channel-mixing op Torch-Pruning takes for element-wise: x - mean over channels."""

    def __init__(self):
        super().__init__()
        self.pre, self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.a(torch.relu(self.pre(x))))
        return self.b(h - h.mean(-1, keepdim=True))


class BufferScale(nn.Module):
    """A per-channel buffer the tracer cannot see: cutting a channel breaks the broadcast."""

    def __init__(self):
        super().__init__()
        self.pre, self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 6), nn.Linear(6, 2)
        self.register_buffer("scale", torch.linspace(1, 2, 6))

    def forward(self, x):
        return self.b(torch.relu(self.a(torch.relu(self.pre(x)))) * self.scale)


@pytest.mark.parametrize("net", [ChannelMean, BufferScale])
def test_find_dead_skips_what_it_cannot_cut_exactly(net):
    model = net().double()
    dead = demp.find_dead(model, torch.randn(8, 4, dtype=torch.float64), verify=True)
    assert "a" in dead.skipped and "trial cut" in dead.skipped["a"]
    assert set(dead.groups) == {"pre"}
    with pytest.raises(demp.UnsupportedGroupError, match="cannot cut group 'a': a trial cut"):
        demp.remove_units(model, {"a": [1]}, structure=dead.structure)
    unverified = demp.find_dead(model, torch.randn(8, 4, dtype=torch.float64), verify=False)
    assert "a" in unverified.groups  # the static checks alone would have let it through


def test_no_prunable_group_is_a_clear_error():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(demp.DempError, match="no prunable channel group found"):
        demp.find_dead(model, torch.randn(3, 4))


def test_structure_renumbering_matches_a_fresh_trace():
    from nets import kill

    model = Separable().double()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    s = build(model, x)
    kill(model, s.groups["b"], [0, 2])
    kill(model, s.groups["a"], [1])
    dead = demp.find_dead(model, x, structure=s)
    demp.remove_units(model, dead)
    fresh = build(model, x)
    assert set(fresh.groups) == set(s.groups)
    for name, group in s.groups.items():
        got = {(x.path, x.role): x.index.tolist() for x in group.slots}
        want = {(x.path, x.role): x.index.tolist() for x in fresh.groups[name].slots}
        assert got == want


def test_a_failure_inside_torch_pruning_is_a_clear_error(monkeypatch):
    # torchvision's ShuffleNet makes Torch-Pruning's reshape bookkeeping divide by zero
    # (tests/zoo); here its bookkeeping fails the same way, inside its own code
    from torch_pruning.dependency import index_mapping

    def broken(graph):
        index_mapping.update_reshape_index_mapping(graph, None)

    monkeypatch.setattr(index_mapping, "update_index_mapping", broken)
    expected = r"could not trace MLP \(AttributeError in torch_pruning"
    with pytest.raises(demp.DempError, match=expected):
        demp.build_structure(MLP(), torch.randn(2, 5))


def test_an_error_of_the_model_itself_passes_through():
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        demp.build_structure(MLP(), torch.randn(2, 7))
