"""On a CUDA device: exact removal, training with pruning, the fused noise, a harness run.

Skipped, with that reason, where torch sees no CUDA device (the CI machine); run on a GPU
machine with ``python -m pytest tests/core/test_cuda.py``.
"""

import copy
import json

import pytest
import torch
from nets import VGG, Basic, ResNet, eval_out, kill
from torch import nn

import demp
from demp.experiments.cli.main import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def positive_biases(model: nn.Module) -> None:
    """No unit dead by accident: every bias 0.5."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.BatchNorm2d)) and m.bias is not None:
                m.bias.fill_(0.5)


def test_forced_dead_units_are_found_and_removed_exactly_on_cuda():
    torch.manual_seed(0)
    model = ResNet(Basic, (1, 2), 6).double().to(CUDA)
    positive_biases(model)
    x = torch.randn(32, 3, 8, 8, dtype=torch.float64, device=CUDA)
    structure = demp.build_structure(model, x[:2])
    chosen = {name: [0, g.width - 1] for name, g in structure.groups.items() if g.width > 2}
    for name, units in chosen.items():
        kill(model, structure.groups[name], units)
    dead = demp.find_dead(model, x, structure=structure)
    on_cpu = copy.deepcopy(model).cpu()
    cpu_dead = demp.find_dead(on_cpu, x.cpu(), structure=demp.build_structure(on_cpu, x[:2].cpu()))
    assert dead.as_dict() == cpu_dead.as_dict()
    assert all(set(units) <= set(dead.as_dict()[name]) for name, units in chosen.items())
    before = eval_out(model, x)
    report = demp.remove_units(model, dead)
    after = eval_out(model, x)
    assert report.removed >= sum(map(len, chosen.values())) > 0
    assert after.shape == before.shape
    assert (after - before).abs().max().item() <= 1e-10
    assert all(p.device.type == "cuda" for p in model.parameters())


def test_training_with_pruning_on_cuda_keeps_parameters_and_adam_state_on_the_device():
    torch.manual_seed(0)
    model = VGG((16, 32), size=8, hidden=32, out=10).to(CUDA)
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(10, 3, 8, 8, generator=g)
    y = torch.randint(0, 10, (1024,), generator=g)
    x = (protos[y] + torch.randn(1024, 3, 8, 8, generator=g)).to(CUDA)
    y = y.to(CUDA)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    cfg = demp.DemPConfig(reg_strength=1e-1, prune_every=25)
    pruner = demp.DemonPruner(model, opt, x[:256], total_steps=200, config=cfg, batch_size=64)
    losses = []
    for step in range(200):
        i = torch.arange(64, device=CUDA) + (64 * step) % 960
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    removed = sum(e["removed"] for e in pruner.history)
    pruner.finalize()
    assert removed > 0 and pruner.summary().weight_sparsity > 0
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    assert all(p.device.type == "cuda" for p in model.parameters())
    for p in model.parameters():
        for value in opt.state[p].values():
            if torch.is_tensor(value) and value.dim() > 0:
                assert value.device.type == "cuda" and value.shape == p.shape


def test_fused_noise_on_cuda_leaves_dead_units_bit_identical_and_moves_live_ones():
    torch.manual_seed(0)
    model = VGG((8, 8), size=8, hidden=16, out=4).to(CUDA)
    positive_biases(model)
    x = torch.randn(16, 3, 8, 8, device=CUDA)
    y = torch.randint(0, 4, (16,), device=CUDA)
    structure = demp.build_structure(model, x[:2])
    name = next(iter(structure.groups))
    kill(model, structure.groups[name], [1, 3])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    cfg = demp.DemPConfig(noise_std=1e-2, reg_strength=1e-2, schedule=demp.Constant(),
                          dynamic=False)  # fmt: skip
    demp.DemonPruner(model, opt, x, total_steps=50, config=cfg)
    rows = [(model.get_submodule(s.path), s.index[[1, 3]].reshape(-1))
            for s in structure.groups[name].slots if s.role != "consumer"]  # fmt: skip
    frozen = [m.weight[r].detach().clone() for m, r in rows]
    live = [m.weight[0].detach().clone() for m, _ in rows]
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for (m, r), before, alive in zip(rows, frozen, live, strict=True):
        assert torch.equal(m.weight[r].detach(), before)
        assert not torch.equal(m.weight[0].detach(), alive)


def test_an_interrupted_harness_run_on_cuda_resumes_from_its_checkpoint(tmp_path, interrupt_at):
    out = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--train-size", "256", "--test-size", "64",
            "--batch-size", "32", "--model", "resnet18", "--width", "0.125", "--steps", "48",
            "--reg-strength", "0.05", "--prune-every", "8", "--lr", "1e-2", "--device", "cuda",
            "--no-progress", "--out", str(out)]  # fmt: skip
    disarm = interrupt_at(21)
    assert main(args) == 130
    disarm()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 48 and 0 <= summary["test_acc"] <= 1
    assert (out / "checkpoint" / "model.safetensors").exists()


def test_a_chunked_group_is_cut_exactly_on_cuda():
    from nets import ChunkNet

    torch.manual_seed(0)
    model = ChunkNet(c=6, parts=2).double().to(CUDA)
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64, device=CUDA)
    structure = demp.build_checked_structure(model, x[:2])
    assert structure.groups["stem"].parts == 2
    with torch.no_grad():  # unit 1: channel 1 of each half
        model.bn.weight[[1, 7]] = 0.0
        model.bn.bias[[1, 7]] = -1.0
    before = eval_out(model, x)
    dead = demp.find_dead(model, x, structure=structure)
    demp.remove_units(model, dead)
    assert model.stem.out_channels == 10
    assert (eval_out(model, x) - before).abs().max().item() <= 1e-10


UNSTRUCTURED = ["train", "--dataset", "synthetic", "--train-size", "256", "--test-size", "64",
                "--batch-size", "32", "--model", "resnet18", "--width", "0.125", "--steps",
                "40", "--score-batches", "2", "--target", "0.6", "--device", "cuda",
                "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("method", ["magnitude", "snip", "set", "rigl"])
def test_unstructured_methods_hold_their_masks_on_cuda(method, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / method
    assert main([*UNSTRUCTURED, "--method", method, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert abs(summary["weight_sparsity"] - 0.6) <= 1 / summary["params_initial"]
    masks = load_file(out / "checkpoint" / "extra.safetensors")
    weights = load_file(out / "checkpoint" / "model.safetensors")
    for key, kept in masks.items():
        assert bool((weights[key.removeprefix("mask.") + ".weight"][~kept] == 0).all())


def test_a_rigl_run_on_cuda_resumes_bit_identically(tmp_path, interrupt_at, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # no atomics in conv
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)

    straight, cut = tmp_path / "straight", tmp_path / "cut"
    args = [*UNSTRUCTURED, "--method", "rigl"]
    assert main([*args, "--out", str(straight)]) == 0
    disarm = interrupt_at(21)
    assert main([*args, "--out", str(cut)]) == 130
    disarm()
    assert main(["train", "--resume", str(cut), "--no-progress"]) == 0
    for name in ("checkpoint/extra.safetensors", "checkpoint/model.safetensors"):
        a, b = load_file(straight / name), load_file(cut / name)
        assert all(torch.equal(a[k], b[k]) for k in a)
