"""Unstructured masks: schedules against closed forms, per-layer counts, SNIP against
autograd, SET/RigL moves, and masked weights (and Adam's moments) held at zero."""

import math

import pytest
import torch
from nets import VGG
from torch import nn

from demp.errors import DempError
from demp.masks import (
    MaskedLayer,
    WeightMasks,
    at_least,
    cosine_fraction,
    cubic_sparsity,
    layer_counts,
    maskable_layers,
)
from demp.methods.dynamic_sparse import move
from demp.methods.snip import snip_scores


def test_cubic_schedule_closed_form():
    # Zhu & Gupta: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3
    for t in [*range(0, 120, 7), 9, 10, 11, 89, 90, 91]:
        expected = 0.9 + (0.0 - 0.9) * (1 - (t - 10) / 80) ** 3 if 10 <= t <= 90 else None
        if t < 10:
            expected = 0.0
        if t > 90:
            expected = 0.9
        assert cubic_sparsity(t, 10, 90, 0.9) == pytest.approx(expected, abs=1e-15)
    assert cubic_sparsity(50, 10, 90, 0.8, initial=0.2) == pytest.approx(0.8 - 0.6 * 0.5**3)
    # a schedule that starts and ends at one step jumps to the final sparsity there
    assert cubic_sparsity(49, 50, 50, 0.9) == 0.0 and cubic_sparsity(50, 50, 50, 0.9) == 0.9


def test_cosine_drop_fraction_closed_form():
    assert cosine_fraction(0, 100, 0.3) == pytest.approx(0.3)
    assert cosine_fraction(50, 100, 0.3) == pytest.approx(0.15)
    assert cosine_fraction(25, 100, 0.3) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert cosine_fraction(100, 100, 0.3) == 0.0 and cosine_fraction(130, 100, 0.3) == 0.0


LAYERS = [MaskedLayer("a", (8, 3, 3, 3), 64.0), MaskedLayer("b", (16, 8, 3, 3), 16.0),
          MaskedLayer("c", (10, 16), 1.0)]  # fmt: skip


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
@pytest.mark.parametrize("zeros", [0, 1, 500, 1200, 1500])
def test_layer_counts_are_exact_in_total_and_within_one_weight_per_layer(distribution, zeros):
    counts = layer_counts(LAYERS, zeros, distribution)
    assert sum(counts.values()) == zeros
    total = sum(layer.size for layer in LAYERS)
    for layer in LAYERS:
        assert 0 <= counts[layer.path] <= layer.size
        if distribution == "uniform":
            assert abs(counts[layer.path] - zeros * layer.size / total) <= 1


def test_at_least_keeps_every_layers_zeros_and_the_total():
    sizes = [MaskedLayer("a", (6,), 1.0), MaskedLayer("b", (6,), 1.0), MaskedLayer("c", (2,), 1.0)]
    before, after = layer_counts(sizes, 10, "uniform"), layer_counts(sizes, 11, "uniform")
    assert before == {"a": 4, "b": 4, "c": 2} and after == {"a": 5, "b": 5, "c": 1}  # paradox
    fixed = at_least(after, before)
    assert sum(fixed.values()) == 11 and all(fixed[p] >= before[p] for p in before)
    assert fixed["c"] == 2 and sorted((fixed["a"], fixed["b"])) == [4, 5]
    with pytest.raises(DempError, match="more zeros"):
        at_least(before, after | {"c": 2})


def test_erk_density_is_proportional_to_sum_over_product_of_the_shape():
    counts = layer_counts(LAYERS, 1000, "erk")
    density = {ly.path: 1 - counts[ly.path] / ly.size for ly in LAYERS}
    raw = {ly.path: sum(ly.shape) / ly.size for ly in LAYERS}
    free = [ly.path for ly in LAYERS if density[ly.path] < 1]
    ratios = [density[p] / raw[p] for p in free]
    assert max(ratios) == pytest.approx(min(ratios), rel=0.02)  # one scale (rounding aside)
    assert layer_counts(LAYERS, 100, "global") is None


def test_too_many_zeros_or_an_unknown_distribution_are_refused():
    with pytest.raises(DempError, match="can be masked"):
        layer_counts(LAYERS, 10**6, "uniform")
    with pytest.raises(DempError, match="distribution"):
        layer_counts(LAYERS, 10, "random")


def test_maskable_layers_follow_the_forward_and_leave_first_and_last_dense():
    model = VGG((8, 16), size=8, hidden=12, out=5)
    x = torch.randn(3, 3, 8, 8)
    every = maskable_layers(model, x, dense_first_last=False)
    inner = maskable_layers(model, x, dense_first_last=True)
    assert [ly.path for ly in inner] == [ly.path for ly in every[1:-1]]
    convs = [ly for ly in every if len(ly.shape) == 4]
    assert convs[0].positions == 64  # 8x8 output pixels per example
    assert every[-1].positions == 1


def test_mask_lowest_per_layer_and_globally():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    layers = [MaskedLayer("0", (3, 4), 1.0), MaskedLayer("1", (2, 3), 1.0)]
    masks = WeightMasks.dense(model, layers)
    scores = {"0": torch.arange(12.0).reshape(3, 4), "1": -torch.arange(6.0).reshape(2, 3)}
    masks.mask_lowest(scores, {"0": 2, "1": 1}, 3)
    assert masks.layer_zeros() == {"0": 2, "1": 1}
    assert not masks.kept["0"][0, :2].any() and not masks.kept["1"][1, 2]
    masks.mask_lowest(scores, None, 4)  # global: the 4 lowest of all 18 scores
    assert masks.layer_zeros() == {"0": 0, "1": 4}


def test_snip_scores_equal_a_direct_autograd_computation():
    torch.manual_seed(0)
    model = VGG((4, 8), size=8, hidden=6, out=3).double()
    batches = [(torch.randn(5, 3, 8, 8, dtype=torch.float64), torch.randint(0, 3, (5,)))
               for _ in range(2)]  # fmt: skip
    paths = [p for p, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = snip_scores(model, paths, batches)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    model.train()
    loss = sum(nn.functional.cross_entropy(model(x), y) for x, y in batches) / 2
    loss.backward()
    for path in paths:
        w = model.get_submodule(path).weight
        torch.testing.assert_close(scores[path], (w.grad * w).abs().detach(), rtol=1e-12, atol=0)


def test_move_drops_the_smallest_and_grows_the_top_scored_inactive():
    kept = torch.tensor([True, True, True, False, False, False])
    magnitude = torch.tensor([0.5, 0.1, 0.9, 0.0, 0.0, 0.0])
    grad = torch.tensor([9.0, 8.0, 0.0, 0.2, 3.0, 0.1])  # the kept ones' gradients are ignored
    after = move(kept, magnitude, grad, 1)
    # drop index 1 (|w| 0.1); grow the top |grad| among {1, 3, 4, 5}: index 1 (8.0)
    assert after.tolist() == [True, True, True, False, False, False]
    after = move(kept, magnitude, torch.tensor([9.0, 0.0, 0.0, 0.2, 3.0, 0.1]), 2)
    # drop 1 and 0; grow the top 2 of {0: 9, 1: 0, 3: .2, 4: 3, 5: .1}: 0 and 4
    assert after.tolist() == [True, False, True, False, True, False]
    assert int(after.sum()) == int(kept.sum())  # grown = dropped


def test_masked_weights_and_adam_moments_stay_zero_over_many_steps():
    torch.manual_seed(0)
    model = VGG((8, 16), size=8, hidden=12, out=5)
    x, y = torch.randn(64, 3, 8, 8), torch.randint(0, 5, (64,))
    layers = maskable_layers(model, x[:2], dense_first_last=False)
    masks = WeightMasks.dense(model, layers)
    scores = {ly.path: torch.rand(ly.shape) for ly in layers}
    masks.mask_lowest(scores, layer_counts(layers, 600, "uniform"), 600)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(50):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        masks.apply(model, opt)
    for ly in layers:
        weight = model.get_submodule(ly.path).weight
        gone = ~masks.kept[ly.path]
        assert bool((weight[gone] == 0).all()) and bool((weight[~gone] != 0).all())
        for key in ("exp_avg", "exp_avg_sq"):
            assert bool((opt.state[weight][key][gone] == 0).all())
    assert masks.zeros() == 600


def test_magnitude_masks_follow_the_cubic_schedule_at_its_update_steps():
    from demp.methods import MethodContext
    from demp.methods.magnitude import Magnitude, MagnitudeOptions

    torch.manual_seed(0)
    model = VGG((8, 16), size=8, hidden=12, out=5)
    opt = torch.optim.Adam(model.parameters())
    ctx = MethodContext(model, opt, 100, 10, torch.randn(4, 3, 8, 8), 4)
    options = MagnitudeOptions(target=0.6, sparse_start=0.1, sparse_end=0.55, update_every=0.1)
    method = Magnitude(options, ctx)  # updates at steps 10, 20, ..., 50 and at the end, 55
    method.before_training(ctx)
    for step in range(1, 101):
        zeros, layer_zeros = method.masks.zeros(), method.masks.layer_zeros()
        changed = method.update(ctx, step)
        assert changed == (step in (10, 20, 30, 40, 50, 55))
        if changed:
            expected = round(cubic_sparsity(step, 10, 55, 0.6) * method.params)
            assert method.masks.zeros() == expected >= zeros
            assert all(method.masks.layer_zeros()[p] >= n for p, n in layer_zeros.items())
        else:
            assert method.masks.zeros() == zeros
    assert method.masks.zeros() == round(0.6 * method.params)


def test_rigl_update_grows_by_the_dense_gradient_at_zero_with_zero_optimizer_state():
    from demp.methods import MethodContext
    from demp.methods.dynamic_sparse import DynamicOptions
    from demp.methods.rigl import RigL

    torch.manual_seed(0)
    model = VGG((8, 16), size=8, hidden=12, out=5)
    x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 5, (32,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ctx = MethodContext(model, opt, 100, 10, x[:4], 32)
    options = DynamicOptions(target=0.5, update_every=0.1, drop_fraction=0.3)
    method = RigL(options, ctx)
    method.before_training(ctx)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()  # Adam writes this step's gradient into the state of masked weights too
    before = {p: k.clone() for p, k in method.masks.kept.items()}
    weights = {p: model.get_submodule(p).weight.detach().clone() for p in before}
    grads = {p: model.get_submodule(p).weight.grad.detach().abs() for p in before}
    assert method.update(ctx, 10)
    for path, kept in before.items():
        weight = model.get_submodule(path).weight
        after = method.masks.kept[path]
        n = round(cosine_fraction(10, 75, 0.3) * int(kept.sum()))
        # independently: drop the n smallest kept |w|, grow the n largest |grad| of the rest
        drop = torch.zeros_like(kept)
        drop.view(-1)[torch.where(kept, weights[path].abs(), torch.inf).view(-1).topk(
            n, largest=False).indices] = True  # fmt: skip
        grow = torch.zeros_like(kept)
        pool = ~kept | drop
        grow.view(-1)[torch.where(pool, grads[path], -torch.inf).view(-1).topk(n).indices] = True
        assert torch.equal(after, (kept & ~drop) | grow)
        grown = after & ~kept
        assert bool((weight[grown] == 0).all())
        for key in ("exp_avg", "exp_avg_sq"):
            assert bool((opt.state[weight][key][grown] == 0).all())
    for p in model.parameters():
        p.grad = None
    with pytest.raises(DempError, match="no gradient after the step"):
        method.update(ctx, 20)


def test_masks_broadcast_gives_every_rank_rank_0s_masks(tmp_path):
    import json

    from torchrun import torchrun

    done = torchrun("masks_ddp_worker.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result == {"differed_before": True, "same_after": True, "rank0_kept": True,
                      "zeros": 500}  # fmt: skip


class _Twice(nn.Module):
    """A linear layer the forward calls twice, beside two more."""

    def __init__(self):
        super().__init__()
        self.first, self.shared, self.last = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.last(self.shared(torch.relu(self.shared(self.first(x)))))


def test_a_layer_called_twice_counts_its_positions_twice():
    layers = maskable_layers(_Twice(), torch.randn(4, 6), dense_first_last=False)
    assert [(ly.path, ly.positions) for ly in layers] == [
        ("first", 1.0),
        ("shared", 2.0),
        ("last", 1.0),
    ]


def test_frozen_weights_stay_dense_and_tied_or_computed_weights_are_refused():
    model = _Twice()
    model.first.weight.requires_grad_(False)
    paths = [ly.path for ly in maskable_layers(model, torch.randn(4, 6), False)]
    assert paths == ["shared", "last"]

    tied = _Twice()
    tied.first.weight = tied.shared.weight  # one Parameter in two layers
    with pytest.raises(DempError, match="first and shared share one weight"):
        maskable_layers(tied, torch.randn(4, 6), False)

    normed = _Twice()
    nn.utils.parametrizations.weight_norm(normed.shared)
    with pytest.raises(DempError, match="shared.weight is computed"):
        maskable_layers(normed, torch.randn(4, 6), False)
