"""Why a DemP run stalls short of its target: the units it leaves alive, measured.

For each run folder: rebuild the run's final model from its checkpoint, feed it test
images, and read every unit's activation where its consumers read it (after the ReLU).
A unit is dead when its activation is never positive (DemP removes those) and
near-constant when it is alive but its standard deviation over the images and positions
is below ``--rel`` (1 %) of its mean absolute value: such a unit feeds the next layer
almost only a constant, like a bias, yet no death check can remove it. The table also
gives the normalization scales' sizes (``|gamma|``), the share of positive shifts
(``beta``), and the weight sparsity the run would have if its near-constant units were
cut as well (an upper bound on what folding them into the next layer could give).

    .venv/bin/python benchmarks/near_constant.py RUN_DIR [RUN_DIR ...] [--rel 0.01] \\
        [--images 1000] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from speed import rebuild  # benchmarks/speed.py: the run's model, decoupled like the run
from torch import nn

import demp
from demp.experiments.data import load_dataset
from demp.experiments.harness.config import TrainConfig


def activations(model: nn.Module, structure: demp.Structure, x: torch.Tensor) -> dict:
    """Each group's activations as its first consumer reads them: (samples, units)."""
    seen, hooks = {}, []
    for name, group in structure.groups.items():
        slot = group.consumers[0]
        module = model.get_submodule(slot.path)
        dim = -1 if isinstance(module, nn.Linear) else 1

        def hook(_m, args, name=name, dim=dim):
            seen[name] = args[0].movedim(dim, -1).detach()

        hooks.append(module.register_forward_pre_hook(hook))
    model.eval()
    with torch.no_grad():
        model(x)
    for handle in hooks:
        handle.remove()
    out = {}
    for name, group in structure.groups.items():
        flat, index = seen[name].reshape(-1, seen[name].shape[-1]), group.consumers[0].index
        units = [flat[:, index[j].reshape(-1)].reshape(-1) for j in range(group.width)]
        out[name] = torch.stack(units, 1) if index.dim() > 1 else flat[:, index]
    return out


def classify(acts: torch.Tensor, rel: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit (column of ``acts``): alive (ever positive), and alive but near-constant."""
    alive = acts.amax(0) > 0
    return alive, alive & (acts.std(0) <= rel * acts.abs().mean(0))


def measure(run_dir: Path, x: torch.Tensor, rel: float, data) -> dict:
    """One row: dead and near-constant units, scales, and the sparsity with them cut."""
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    model, _ = rebuild(config, config.width, data.input_shape, data.num_classes, x[:2])
    demp.load_checkpoint(run_dir / "checkpoint", model)
    structure = demp.build_checked_structure(model, x[:2], config.demp.structure_options())
    initial = json.loads((run_dir / "summary.json").read_text())["params_initial"]
    params = demp.count_trainable(model)
    dead = flat = 0
    cut = {}
    for name, acts in activations(model, structure, x).items():
        alive, near = classify(acts, rel)
        dead, flat = dead + int((~alive).sum()), flat + int(near.sum())
        if near.any() and int(near.sum()) < structure.groups[name].width:
            cut[name] = near.nonzero().flatten().tolist()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    gamma = torch.cat([m.weight.detach().abs() for m in norms])
    beta = torch.cat([m.bias.detach() for m in norms])
    if cut:
        demp.remove_units(model, cut, structure=structure)
    return {
        "run": run_dir.name, "units": structure.num_units, "dead": dead, "near": flat,
        "gamma_median": float(gamma.median()),
        "gamma_small": float((gamma < 1e-2).float().mean()),
        "beta_positive": float((beta > 0).float().mean()),
        "weight_sparsity": 1 - params / initial,
        "if_cut": 1 - demp.count_trainable(model) / initial,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--rel", type=float, default=0.01)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    config = TrainConfig.from_dict(json.loads((args.runs[0] / "config.json").read_text()))
    data = load_dataset(config.dataset, args.data_dir or config.data_dir, 16, args.images, 0)
    print(f"| run | units | dead | near-constant (sd < {args.rel:g} x mean) | median gamma | "
          "gamma < 0.01 | beta > 0 | weight sparsity | with near-constant cut |\n"
          "|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    rows = []
    for run_dir in args.runs:
        r = measure(run_dir, data.test_x[: args.images], args.rel, data)
        print(f"| {r['run']} | {r['units']} | {r['dead']} | {r['near']} | "
              f"{r['gamma_median']:.4f} | {r['gamma_small']:.0%} | {r['beta_positive']:.0%} | "
              f"{r['weight_sparsity']:.1%} | {r['if_cut']:.1%} |", flush=True)  # fmt: skip
        rows.append(r)
    return rows


if __name__ == "__main__":
    main()
