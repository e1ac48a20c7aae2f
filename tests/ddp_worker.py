"""DemP under DDP: run with ``torchrun --standalone --nproc_per_node=2 ddp_worker.py OUT``.

Also importable: ``run(world=1, rank=0)`` is the single-process twin with the same global
batch. Rank 0 writes OUT/result.json (events, per-event rank agreement) and OUT/params.pt
(final parameters, loaded with weights_only=True by the test).
"""

import gc
import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

import demp

STEPS, GLOBAL_BATCH = 40, 32


def net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 4),
    ).double()  # fmt: skip


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 1, 8, 8, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 4, (256,), generator=g)


def kill(layer, units):
    with torch.no_grad():
        layer.weight[units] = 0
        layer.bias[units] = -1


def run(world=1, rank=0):
    """Units are forced dead at step 0 and at step 15, so that the prune events at steps 10
    and 20 are decided far from any threshold (float differences between the DDP and the
    single-process run cannot flip them)."""
    model = net()
    x, y = data()
    kill(model[0], [1, 5])
    kill(model[6], [3])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt.register_step_post_hook(lambda *_: _kill_later(opt, model))
    cfg = demp.DemPConfig(reg_target="all", reg_strength=1e-4, noise_std=1e-3, prune_every=10)
    events = []
    if world > 1:
        from demp.integrations.distributed import DDPModel, distributed_pruner

        forward = DDPModel(model)

        def check(pruner, report):
            flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
            gathered = [torch.empty_like(flat) for _ in range(world)]
            dist.all_gather(gathered, flat)
            same = all(torch.equal(gathered[0], t) for t in gathered)
            events.append({"step": pruner.step, "removed": report.removed, "same": same})

        probe = x[:128][rank::world]  # each rank sees its shard of the probe set
        pruner = distributed_pruner(forward, opt, probe, STEPS, cfg, on_structure_change=[check])
    else:
        forward = model

        def record(pruner, report):
            events.append({"step": pruner.step, "removed": report.removed})

        pruner = demp.DemonPruner(model, opt, x[:128], STEPS, cfg, on_structure_change=[record])
    for step in range(STEPS):
        idx = torch.arange(step * GLOBAL_BATCH, (step + 1) * GLOBAL_BATCH) % len(x)
        idx = idx[rank::world]
        loss = nn.functional.cross_entropy(forward(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    pruner.finalize()
    return model, events, pruner.structure.widths()


def _kill_later(opt, model):
    """After the 15th optimizer step, force channel 7 of the second conv dead."""
    if int(next(iter(opt.state.values()))["step"]) == 15:
        kill(model[2], [7])


def main(out):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, events, widths = run(world, rank)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        torch.save({k: v for k, v in model.state_dict().items()}, os.path.join(out, "params.pt"))
        result = {"events": events, "widths": widths,
                  "same_at_end": all(torch.equal(gathered[0], t) for t in gathered)}  # fmt: skip
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump(result, f)
    del model
    gc.collect()  # free DDP wrappers now, not at interpreter exit (gloo aborts there)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
