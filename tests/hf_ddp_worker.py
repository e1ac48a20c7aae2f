"""The Hugging Face Trainer with DemonPruningCallback under torchrun (2 CPU processes).

Run: ``torchrun --standalone --nproc_per_node=2 hf_ddp_worker.py OUT``. Rank 0 writes
OUT/result.json: the widths, the prune events and whether the ranks' parameters agree.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from hf_nets import Images, vit
from torchrun import leave
from transformers import Trainer, TrainingArguments

from demp import DemPConfig
from demp.integrations.hf import DemonPruningCallback


def agree(model):
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    both = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(both, flat)
    return all(torch.equal(both[0], b) for b in both[1:])


def main(out):
    data = Images()
    cfg = DemPConfig(reg_strength=0.0, criterion="zero", prune_every=4, prune_start=6)
    callback = DemonPruningCallback(data.x[:64], cfg)  # each rank's probe may differ
    args = TrainingArguments(
        output_dir=f"{out}/trainer", max_steps=12, per_device_train_batch_size=8,
        learning_rate=1e-3, logging_steps=4, save_strategy="steps", save_steps=8, report_to="none",
        use_cpu=True, ddp_backend="gloo", disable_tqdm=True, seed=0, dataloader_num_workers=0,
    )  # fmt: skip
    model = vit("relu")  # ReLU: the dead units' outputs are exactly 0
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    same = agree(model)
    if dist.get_rank() == 0:
        result = {
            "world": dist.get_world_size(),
            "widths": [layer.mlp.fc1.out_features for layer in model.vit.layers],
            "events": [[e["step"], e["removed"]] for e in callback.pruner.history],
            "same": same,
            "wrapper": type(callback._watch.wrapper).__name__,
            "saved": sorted(p.name for p in Path(out, "trainer", "checkpoint-8").glob("demp_*")),
        }
        with open(f"{out}/result.json", "w") as f:
            json.dump(result, f)
    leave(out)  # every rank marks itself done and exits without the teardown that aborted in CI


if __name__ == "__main__":
    main(sys.argv[1])
