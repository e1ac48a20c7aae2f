"""A tiny randomly initialized ViT with 15 MLP units dead at init, and its data (the Hugging
Face callback tests, single- and multi-process; needs transformers)."""

import torch
from transformers import ViTConfig, ViTForImageClassification

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


def vit(act="gelu"):
    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32,
                       num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       num_labels=4, hidden_act=act)  # fmt: skip
    model = ViTForImageClassification(config)
    with torch.no_grad():  # dead: GELU outputs ~1e-23 (eps criterion), ReLU exactly 0
        for layer, units in KILLED.items():
            fc1 = model.vit.layers[layer].mlp.fc1
            fc1.weight[units] = 0
            fc1.bias[units] = -10.0
    return model
