"""A small Vision Transformer. Only its MLP hidden units are prunable (paper §4.3).

Attention and the residual stream (LayerNorm over the embedding) are left alone by
demp and listed as skipped with their reason.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """Pre-norm transformer block: attention, then an MLP with ``mlp_ratio`` hidden units."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1, self.act, self.fc2 = (
            nn.Linear(dim, dim * mlp_ratio),
            act(),
            nn.Linear(dim * mlp_ratio, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """Patch embedding, learned positions, ``depth`` blocks, mean pooling, linear head.

    Args:
        num_classes: Outputs.
        in_channels: Input channels.
        image_size: Input height/width.
        patch: Patch size (must divide ``image_size``).
        dim: Embedding width.
        depth: Blocks.
        heads: Attention heads.
        mlp_ratio: MLP hidden units per embedding unit.
        act: Activation class (GELU by default, as in ViTs).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        patch: int = 4,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        act: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"patch {patch} does not divide image size {image_size}")
        self.embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.pos = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio, act) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of images."""
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(tokens)).mean(1))
