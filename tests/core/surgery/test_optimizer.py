"""Surgery carries the optimizer state: training continues as if nothing was removed."""

import copy

import pytest
import torch
from nets import ResNet, eval_out, kill
from torch import nn

import demp

OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "amsgrad": lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True),
    "sgd": lambda p: torch.optim.SGD(p, lr=1e-2),
    "sgdm": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9),
    "nesterov": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2),
}


def setup(seed=0):
    torch.manual_seed(seed)
    model = ResNet(blocks=(1, 1), width=4).double()
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (16,))
    structure = demp.build_structure(model, x[:2])
    names = list(structure.groups)
    kill(model, structure.groups[names[0]], [1, 2])
    kill(model, structure.groups[names[-1]], [0])
    return model, x, y


def step(model, opt, x, y):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def run(make_opt, sabotage=None):
    """Train A and B alike, cut B's dead units, take one more step; return max |A - B|."""
    model_a, x, y = setup()
    model_b = copy.deepcopy(model_a)
    opt_a, opt_b = make_opt(model_a.parameters()), make_opt(model_b.parameters())
    for _ in range(3):
        step(model_a, opt_a, x, y)
        step(model_b, opt_b, x, y)
    report = demp.prune_dead(model_b, x, opt_b)
    assert report.removed >= 3
    if sabotage == "fresh_optimizer":
        opt_b = make_opt(model_b.parameters())
    elif sabotage == "stale_parameter":  # what replacing a Parameter object does
        conv = model_b.layers[1].conv1
        conv.weight = nn.Parameter(conv.weight.detach().clone())
    step(model_a, opt_a, x, y)
    step(model_b, opt_b, x, y)
    step(model_a, opt_a, x, y)
    step(model_b, opt_b, x, y)
    return (eval_out(model_a, x) - eval_out(model_b, x)).abs().max().item()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_training_continues_identically_after_surgery(name):
    assert run(OPTIMIZERS[name]) <= 1e-10


@pytest.mark.parametrize("sabotage", ["fresh_optimizer", "stale_parameter"])
def test_equivalence_check_detects_a_broken_carry_over(sabotage):
    assert run(OPTIMIZERS["adam"], sabotage) > 1e-6


def test_parameters_keep_identity_grads_and_frozen_flags():
    model, x, y = setup()
    model.stem.weight.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    step(model, opt, x, y)
    nn.functional.cross_entropy(model(x), y).backward()
    before = {n: p for n, p in model.named_parameters()}
    demp.prune_dead(model, x, opt)
    after = dict(model.named_parameters())
    assert all(before[n] is after[n] for n in before)
    assert not model.stem.weight.requires_grad
    for p in model.parameters():
        if p.grad is not None:
            assert p.grad.shape == p.shape
        for value in opt.state.get(p, {}).values():
            assert value.ndim == 0 or value.shape == p.shape
    step(model, opt, x, y)  # the next step runs on the shrunk model


class Lion(torch.optim.Optimizer):
    def __init__(self, params):
        super().__init__(params, {"lr": 1e-3})

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    state["m"] = state.get("m", torch.zeros_like(p)) * 0.9 + p.grad
                    p.data.add_(state["m"].sign(), alpha=-group["lr"])


def test_unknown_optimizer_refused_before_any_change():
    model, x, y = setup()
    opt = Lion(model.parameters())
    step(model, opt, x, y)
    dead = demp.find_dead(model, x)
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(demp.UnsupportedOptimizerError, match="Lion"):
        demp.remove_units(model, dead, opt)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert dead.structure.widths() == {n: g.width for n, g in dead.groups.items()}


def test_backward_works_while_an_old_graph_is_alive():
    model, x, y = setup()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    old = nn.functional.cross_entropy(model(x), y)  # alive across the surgery, as in a loop
    old.backward()
    opt.step()
    demp.prune_dead(model, x, opt)
    twin = copy.deepcopy(model)  # the same pruned model, never part of the old graph
    opt.zero_grad(set_to_none=True)
    twin.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    nn.functional.cross_entropy(twin(x), y).backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert torch.equal(p.grad, q.grad), name  # the gradients of the shrunk model
    assert old.grad_fn is not None  # the old graph was alive all along
    opt.step()
