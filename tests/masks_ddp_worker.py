"""Masks under torch.distributed: ``torchrun --standalone --nproc_per_node=2
masks_ddp_worker.py OUT``. Each rank masks by its own random scores (as non-deterministic
kernels could make it), then ``WeightMasks.broadcast``; rank 0 writes OUT/result.json:
whether the ranks' masks differed before and agree after."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from nets import VGG

from demp.masks import WeightMasks, layer_counts, maskable_layers


def gathered(masks: WeightMasks) -> list[torch.Tensor]:
    flat = torch.cat([masks.kept[layer.path].reshape(-1) for layer in masks.layers]).to(torch.uint8)
    out = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(out, flat)
    return out


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = VGG((8, 16), size=8, hidden=12, out=5)
    layers = maskable_layers(model, torch.randn(2, 3, 8, 8), dense_first_last=False)
    masks = WeightMasks.dense(model, layers)
    g = torch.Generator().manual_seed(100 + rank)
    scores = {layer.path: torch.rand(layer.shape, generator=g) for layer in layers}
    masks.mask_lowest(scores, layer_counts(layers, 500, "uniform"), 500)
    before = gathered(masks)
    masks.broadcast()
    after = gathered(masks)
    if rank == 0:
        result = {
            "differed_before": not torch.equal(before[0], before[1]),
            "same_after": torch.equal(after[0], after[1]),
            "rank0_kept": torch.equal(after[0], before[0]),
            "zeros": masks.zeros(),
        }
        (out / "result.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
