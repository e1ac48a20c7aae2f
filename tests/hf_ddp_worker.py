"""The Hugging Face Trainer with DemonPruningCallback under torchrun (2 CPU processes).

Run: ``torchrun --standalone --nproc_per_node=2 hf_ddp_worker.py OUT``. Rank 0 writes
OUT/result.json: the widths, the prune events and whether the ranks' parameters agree.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification

from demp import DemPConfig
from demp.integrations.hf import DemonPruningCallback

KILLED = {0: list(range(10)), 1: [3, 7, 9, 20, 40]}


class Images(torch.utils.data.Dataset):
    def __init__(self, n=128):
        g = torch.Generator().manual_seed(0)
        self.y = torch.randint(0, 4, (n,), generator=g)
        self.x = torch.randn(n, 3, 16, 16, generator=g) + self.y.view(-1, 1, 1, 1) * 0.5

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def vit():
    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32,
                       num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       num_labels=4, hidden_act="relu")  # fmt: skip
    model = ViTForImageClassification(config)
    with torch.no_grad():  # dead: ReLU outputs exactly 0
        for layer, units in KILLED.items():
            fc1 = model.vit.layers[layer].mlp.fc1
            fc1.weight[units] = 0
            fc1.bias[units] = -10.0
    return model


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
    model = vit()
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


if __name__ == "__main__":
    main(sys.argv[1])
