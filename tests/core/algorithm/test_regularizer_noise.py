"""The regularizer as a gradient, the noise's scale, and asymmetric noise on dead units."""

import copy

import pytest
import torch
from nets import VGG, kill
from torch import nn

import demp
from demp.algorithm.regularizer import regularized_parameters


def bn_net():
    torch.manual_seed(0)
    return VGG(channels=(4, 6), size=8).double(), torch.randn(16, 3, 8, 8, dtype=torch.float64)


@pytest.mark.parametrize("reg", ["l1", "l2"])
@pytest.mark.parametrize("target", ["norm_scale", "all"])
def test_regularizer_gradient_equals_autograd_of_the_penalty(reg, target):
    model, x = bn_net()
    y = torch.randint(0, 4, (16,))
    twin = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    cfg = demp.DemPConfig(reg=reg, reg_target=target, reg_strength=0.3, noise="off")
    pruner = demp.DemonPruner(model, opt, x, total_steps=100, config=cfg)
    pruner.step = 20  # inside the warm-up: lambda_t = 0.3 * 20 / 26.1
    seen = {}
    opt.register_step_pre_hook(
        lambda *_: seen.update({n: p.grad.clone() for n, p in model.named_parameters()})
    )
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()

    lam = pruner.reg_strength_at(20)
    assert lam == pytest.approx(0.3 * 20 / (0.3 * 87))
    params = regularized_parameters(twin, target)
    loss = nn.functional.cross_entropy(twin(x), y)
    if reg == "l1":
        loss = loss + lam * sum(p.abs().sum() for p in params)
    else:
        loss = loss + lam * 0.5 * sum(p.pow(2).sum() for p in params)
    loss.backward()
    for name, p in twin.named_parameters():
        torch.testing.assert_close(seen[name], p.grad, rtol=0, atol=1e-12)
    assert len(params) == (2 if target == "norm_scale" else len(list(twin.parameters())))


def test_penalty_value_for_logging():
    model, x = bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    cfg = demp.DemPConfig(reg="l1", reg_strength=0.5, schedule=demp.Constant(), noise="off")
    pruner = demp.DemonPruner(model, opt, x, total_steps=10, config=cfg)
    gammas = [model.features[1].weight.detach(), model.features[5].weight.detach()]
    assert pruner.penalty() == pytest.approx(0.5 * sum(g.abs().sum().item() for g in gammas))


def test_noise_standard_deviation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 3))
    x = torch.randn(8, 300)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    cfg = demp.DemPConfig(
        reg="off", noise="symmetric", noise_std=2e-3, schedule=demp.Constant(), prune_every=10**6
    )
    demp.DemonPruner(model, opt, x, total_steps=100, config=cfg)
    before = model[0].weight.detach().clone()
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
    delta = (model[0].weight.detach() - before).reshape(-1).double()
    n = delta.numel()  # 60,000 draws: the sample std is within 1 % at > 3 standard errors
    assert abs(delta.std().item() / 2e-3 - 1) < 0.01
    assert abs(delta.mean().item()) < 4 * 2e-3 / n**0.5


def test_noise_is_not_scaled_by_the_learning_rate_and_follows_the_schedule():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 2))
    x = torch.randn(4, 100)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    cfg = demp.DemPConfig(reg="off", noise="symmetric", noise_std=1e-2, prune_every=10**6)
    pruner = demp.DemonPruner(model, opt, x, total_steps=1000, config=cfg)
    pruner.step = 130  # half-way through the linear warm-up (261 steps)
    before = model[0].weight.detach().clone()
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
    std = (model[0].weight.detach() - before).std().item()
    assert std == pytest.approx(1e-2 * 130 / 261, rel=0.05)


def test_asymmetric_noise_leaves_dead_units_bit_identical():
    model, x = bn_net()
    y = torch.randint(0, 4, (16,))
    s = demp.build_structure(model, x[:2])
    kill(model, s.groups["features.0"], [1, 3])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    cfg = demp.DemPConfig(
        noise_std=1e-2, reg_strength=1e-2, schedule=demp.Constant(), dynamic=False
    )
    demp.DemonPruner(model, opt, x, total_steps=50, config=cfg)
    conv, bn, nxt = model.features[0], model.features[1], model.features[4]
    dead = [1, 3]
    frozen = [
        conv.weight[dead],
        conv.bias[dead],
        bn.weight[dead],
        bn.bias[dead],
        nxt.weight[:, dead],
    ]
    frozen = [t.detach().clone() for t in frozen]
    alive_before = conv.weight[0].detach().clone()
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    now = [conv.weight[dead], conv.bias[dead], bn.weight[dead], bn.bias[dead], nxt.weight[:, dead]]
    for a, b in zip(frozen, now, strict=True):
        assert torch.equal(a, b.detach())
    assert not torch.equal(alive_before, conv.weight[0].detach())


def test_fused_noise_over_chunks_dtypes_layouts_and_missing_grads(monkeypatch):
    from demp.algorithm import noise as noise_module

    monkeypatch.setattr(noise_module, "_CHUNK", 50)  # several draws per dtype
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)  # a non-contiguous layout
    params = [conv.weight, conv.bias, nn.Parameter(torch.randn(30, dtype=torch.float64)),
              nn.Parameter(torch.randn(7)), nn.Parameter(torch.randn(60))]  # fmt: skip
    for p in params[:3]:
        p.grad = torch.randn_like(p) * (torch.rand_like(p) > 0.5)  # half the entries dead
    params[4].grad = torch.zeros_like(params[4])  # all dead; params[3] has no gradient
    injector = noise_module.NoiseInjector("asymmetric", seed=0, device=torch.device("cpu"))
    plan = injector.plan(params)
    assert len(plan.draws) > 2 and all(params[3] is not p for d in plan.draws for p in d.params)
    masks = [p.grad != 0 if p.grad is not None else None for p in params]  # independently
    before = [p.detach().clone() for p in params]
    for p in params:  # the regularizer may change .grad after the plan: the masks stay
        if p.grad is not None:
            p.grad.add_(1.0)
    injector.add(plan, std=1e-2)
    for p, b, m in zip(params, before, masks, strict=True):
        assert p.dtype == b.dtype and p.shape == b.shape
        if m is None:
            assert torch.equal(p, b)
            continue
        assert torch.equal(p[~m], b[~m])  # no noise where the gradient was zero
        moved = (p - b)[m]  # empty for the all-dead parameter
        assert bool((moved != 0).all()) and float(moved.abs().sum()) < 0.1 * max(moved.numel(), 1)
    assert int(masks[0].sum() + masks[1].sum() + masks[2].sum()) > 0
