"""DemonPruner end to end: dying, removal during training, resume, hooks, bad input."""

import copy
import warnings

import pytest
import torch
from nets import MLP, VGG, ResNet, eval_out, kill
from torch import nn

import demp


def synthetic(shape, n=1024, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(10, *shape, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (n,), generator=g)
    return protos[y] + torch.randn(n, *shape, generator=g, dtype=dtype), y


def train(model, opt, x, y, steps, batch=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        i = torch.randint(0, len(x), (batch,), generator=g)
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_units_die_and_are_removed_while_training(kind):
    torch.manual_seed(0)
    if kind == "mlp":  # the paper's 100-300-10 MLP (on 32-d synthetic inputs)
        model, (x, y) = MLP((100, 300), in_dim=32, out=10), synthetic((32,))
        cfg = demp.DemPConfig(reg_target="all", reg_strength=1e-2, noise_std=1e-3, prune_every=25)
    else:
        model, (x, y) = VGG((16, 32), size=8, hidden=32, out=10), synthetic((3, 8, 8))
        cfg = demp.DemPConfig(reg_strength=1e-1, prune_every=25)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    params = list(model.parameters())
    pruner = demp.DemonPruner(model, opt, x[:256], total_steps=200, config=cfg, batch_size=64)
    losses = train(model, opt, x, y, 200)
    during = sum(e["removed"] for e in pruner.history)
    pruner.finalize()
    summary = pruner.summary()
    assert during > 0 and pruner.history[0]["step"] == 25
    assert sum(losses[-10:]) < 0.2 * sum(losses[:10])
    assert summary.weight_sparsity > 0 and summary.neuron_sparsity > 0
    assert summary.inference_flops_ratio < 1 and summary.train_flops_ratio < 1
    assert summary.train_flops == pytest.approx(
        3 * 64 * summary.train_flops_ratio * 200 * pruner.costs.initial["flops"]
    )
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))
    assert all(
        p is q for p, q in zip(opt.param_groups[0]["params"], model.parameters(), strict=True)
    )
    assert "neuron sparsity" in str(summary)


def test_without_regularizer_and_noise_it_only_removes_truly_dead_units():
    # No conv bias before BatchNorm here: with Adam, such a bias's gradient is pure round-off
    # (BatchNorm removes the mean) and Adam magnifies it to full-size updates, which makes
    # two float64 runs differ at 1e-10 after a few steps for reasons unrelated to surgery.
    torch.manual_seed(0)
    model = ResNet(blocks=(1, 1), width=4, out=10).double()
    x, y = synthetic((3, 8, 8), n=256, dtype=torch.float64)
    s = demp.build_structure(model, x[:2])
    kill(model, s.groups["stem"], [0, 3])
    kill(model, s.groups["layers.1.conv1"], [5])
    twin = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt_twin = torch.optim.Adam(twin.parameters(), lr=1e-2)
    cfg = demp.DemPConfig(reg_strength=0.0, noise="off", prune_every=10)
    pruner = demp.DemonPruner(model, opt, x[:128], total_steps=14, config=cfg)
    train(model, opt, x, y, 14)  # removal at step 10, then 4 more steps on the smaller model
    train(twin, opt_twin, x, y, 14)
    assert pruner.history[0]["removed"] == 3
    assert demp.count_trainable(model) < demp.count_trainable(twin)
    assert (eval_out(model, x) - eval_out(twin, x)).abs().max().item() <= 1e-10


def make_run(seed=0):
    torch.manual_seed(seed)
    model = VGG((6, 8), size=8, hidden=12, out=10).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, opt


def test_resume_gives_identical_parameters(tmp_path):
    x, y = synthetic((3, 8, 8), n=256, dtype=torch.float64)
    cfg = demp.DemPConfig(reg_strength=5e-2, noise_std=1e-3, prune_every=10)

    def batches(start, stop, model, opt):
        for step in range(start, stop):
            i = torch.arange(step * 16, step * 16 + 16) % len(x)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()

    model_a, opt_a = make_run()
    pruner_a = demp.DemonPruner(model_a, opt_a, x[:64], total_steps=60, config=cfg)
    batches(0, 60, model_a, opt_a)

    model_b, opt_b = make_run()
    pruner_b = demp.DemonPruner(model_b, opt_b, x[:64], total_steps=60, config=cfg)
    batches(0, 30, model_b, opt_b)
    demp.save_checkpoint(tmp_path / "ck", model_b, opt_b, pruner=pruner_b)
    pruner_b.detach()

    model_c, opt_c = make_run(seed=99)  # fresh objects, original size
    pruner_c = demp.DemonPruner(model_c, opt_c, x[:64], total_steps=60, config=cfg)
    demp.load_checkpoint(tmp_path / "ck", model_c, opt_c, pruner=pruner_c)
    assert pruner_c.step == 30
    batches(30, 60, model_c, opt_c)

    assert sum(e["removed"] for e in pruner_a.history) > 0
    assert [e["step"] for e in pruner_c.history] == [e["step"] for e in pruner_a.history]
    state_a, state_c = model_a.state_dict(), model_c.state_dict()
    assert state_a.keys() == state_c.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_c[key]), key


def test_pruner_state_must_match_the_model(tmp_path):
    x, y = synthetic((3, 8, 8), n=64)
    model, opt = make_run()
    model.float()
    s = demp.build_structure(model, x[:2])
    kill(model, s.groups["features.0"], [1])
    cfg = demp.DemPConfig(prune_every=5)
    pruner = demp.DemonPruner(model, opt, x, total_steps=10, config=cfg)
    train(model, opt, x, y, 5)
    state = pruner.state_dict()
    other, other_opt = make_run()
    fresh = demp.DemonPruner(other.float(), other_opt, x, total_steps=10, config=cfg)
    with pytest.raises(demp.DempError, match="load the model checkpoint"):
        fresh.load_state_dict(state)


def test_detach_and_context_manager_remove_the_hooks():
    x, y = synthetic((3, 8, 8), n=64)
    model, opt = make_run()
    model.float()
    with demp.DemonPruner(model, opt, x, total_steps=10) as pruner:
        train(model, opt, x, y, 2)
        assert pruner.step == 2
    train(model, opt, x, y, 2)
    assert pruner.step == 2
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_grad_scaler_skipped_steps_are_not_counted():
    x, y = synthetic((3, 8, 8), n=64)
    model, opt = make_run()
    model.float()
    pruner = demp.DemonPruner(model, opt, x, total_steps=10)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for bad in (False, True, False):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[:16]), y[:16])
        scaler.scale(loss * (float("inf") if bad else 1.0)).backward()
        scaler.step(opt)
        scaler.update()
    assert pruner.step == 2


def test_prune_schedule_defaults_and_dynamic_off():
    x, y, model, opt = run_with_a_dead_unit()
    pruner = demp.DemonPruner(model, opt, x, total_steps=100)
    assert pruner.prune_every == 5
    train(model, opt, x, y, 4)
    assert pruner.history == []  # never at step 0, first check at prune_every
    train(model, opt, x, y, 1)
    assert [e["step"] for e in pruner.history] == [5]
    pruner.detach()

    _, _, model, opt = run_with_a_dead_unit()
    cfg = demp.DemPConfig(dynamic=False, prune_every=2)
    calls = []
    pruner = demp.DemonPruner(
        model,
        opt,
        x,
        total_steps=10,
        config=cfg,
        on_structure_change=[lambda p, r: calls.append(r)],
    )
    train(model, opt, x, y, 6)
    assert pruner.history == [] and model.features[0].out_channels == 6
    report = pruner.finalize()
    assert report.removed >= 1 and model.features[0].out_channels < 6
    assert calls == [report]


def test_non_finite_gradients_skip_regularizer_and_noise_with_a_warning():
    x, y = synthetic((3, 8, 8), n=64)
    model, opt = make_run()
    model.float()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    cfg = demp.DemPConfig(
        noise="symmetric", noise_std=1.0, schedule=demp.Constant(), prune_every=100
    )
    pruner = demp.DemonPruner(model, opt, x, total_steps=10, config=cfg)

    def step(poison):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:8]), y[:8]).backward()
        if poison:
            model.fc1.weight.grad[0, 0] = float("nan")
        before = {k: v.clone() for k, v in model.state_dict().items()}
        scale = model.features[1].weight
        grad = scale.grad.clone()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no host sync in the step: the warning comes later
            opt.step()
        sign = torch.sign(before["features.1.weight"])
        return before, model.state_dict(), scale.grad - grad, sign

    before, after, added, sign = step(poison=False)  # finite: noise (std 1) and regularizer
    assert not torch.equal(before["features.0.weight"], after["features.0.weight"])
    assert torch.allclose(added, 1e-3 * sign)
    before, after, added, _ = step(poison=True)  # lr 0: only fc1 (NaN * 0) changes
    assert all(torch.equal(before[k], after[k]) for k in before if "fc1" not in k)
    assert torch.equal(added, torch.zeros_like(added))
    assert pruner.step == 2
    with pytest.warns(RuntimeWarning, match=r"non-finite gradients in 1 step\(s\) before step 2"):
        pruner.prune_now()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once
        pruner.prune_now()


def test_bad_input_is_refused():
    x, _ = synthetic((3, 8, 8), n=16)
    model, opt = make_run()
    model.float()
    with pytest.raises(demp.DempError, match="total_steps must be a positive integer"):
        demp.DemonPruner(model, opt, x, total_steps=0)
    with pytest.raises(demp.ProbeError, match="empty"):
        demp.DemonPruner(model, opt, [], total_steps=10)
    with pytest.raises(demp.ProbeError, match="could not trace"):
        demp.DemonPruner(model, opt, torch.randn(4, 5), total_steps=10)
    with pytest.raises(demp.DempError, match="no prunable channel group"):
        lin = nn.Linear(3, 2)
        demp.DemonPruner(lin, torch.optim.SGD(lin.parameters(), 0.1), torch.randn(4, 3), 10)
    with pytest.raises(ValueError, match="reg must be one of"):
        demp.DemPConfig(reg="l0")
    with pytest.raises(demp.UnsupportedOptimizerError):
        demp.DemonPruner(model, torch.optim.LBFGS(model.parameters()), x, total_steps=10)
    assert not opt._optimizer_step_pre_hooks
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        demp.DemonPruner(model, opt, x, total_steps=10).detach()


def test_config_round_trips_through_a_dict():
    cfg = demp.DemPConfig(schedule=demp.OneCycle(warmup="cosine"), noise_schedule=demp.Warmup(0.1))
    assert demp.DemPConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown DemPConfig options"):
        demp.DemPConfig.from_dict({"lambda": 1})


def test_closure_steps_match_plain_steps():
    x, y = synthetic((3, 8, 8), n=64, dtype=torch.float64)
    cfg = demp.DemPConfig(reg_strength=1e-2, noise_std=1e-3, prune_every=3)
    results = []
    for use_closure in (False, True):
        model, opt = make_run()
        pruner = demp.DemonPruner(model, opt, x[:32], total_steps=6, config=cfg)
        for step in range(6):
            i = torch.arange(step * 8, step * 8 + 8)

            def closure(i=i, model=model, opt=opt):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x[i]), y[i])
                loss.backward()
                return loss

            if use_closure:
                opt.step(closure)
            else:
                closure()
                opt.step()
        results.append((pruner.step, model.state_dict()))
    (steps_a, a), (steps_b, b) = results
    assert steps_a == steps_b == 6 and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def run_with_a_dead_unit():
    """A float32 run whose first conv has unit 2 dead; returns (x, y, model, opt)."""
    x, y = synthetic((3, 8, 8), n=64)
    model, opt = make_run()
    model.float()
    kill(model, demp.build_structure(model, x[:2]).groups["features.0"], [2])
    return x, y, model, opt


def test_prune_start_delays_the_first_check():
    x, y, model, opt = run_with_a_dead_unit()
    cfg = demp.DemPConfig(prune_every=2, prune_start=5, reg_strength=0.0, noise="off")
    pruner = demp.DemonPruner(model, opt, x, total_steps=20, config=cfg)
    train(model, opt, x, y, 5)
    assert pruner.history == [] and model.features[0].out_channels == 6
    train(model, opt, x, y, 1)
    assert [e["step"] for e in pruner.history] == [6] and model.features[0].out_channels == 5
    pruner.detach()
    with pytest.raises(ValueError, match="prune_start must be an integer >= 0"):
        demp.DemPConfig(prune_start=-1)


def test_parameters_outside_the_optimizer_stay_bit_identical():
    """Noise and penalty touch only what the optimizer updates (a left-out layer, lr 0 or not)."""
    torch.manual_seed(0)
    model = VGG(channels=(4, 6), size=8)
    x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 4, (32,))
    left_out = list(model.features[0].parameters()) + list(model.features[1].parameters())
    ids = {id(p) for p in left_out}
    opt = torch.optim.SGD([p for p in model.parameters() if id(p) not in ids], lr=0.0)
    cfg = demp.DemPConfig(noise="symmetric", noise_std=1e-2, reg_strength=1.0,
                          schedule=demp.Constant(), shift_push=1.0, prune_every=1000)  # fmt: skip
    with pytest.warns(UserWarning, match="not in the optimizer.*features.0.weight"):
        pruner = demp.DemonPruner(model, opt, x, total_steps=1000, config=cfg)
    before = [p.detach().clone() for p in left_out]
    inside = model.fc1.weight.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert pruner.step == 5
    for p, b in zip(left_out, before, strict=True):
        assert torch.equal(p.detach(), b)
    assert not torch.equal(model.fc1.weight.detach(), inside)  # the optimizer's get the noise
