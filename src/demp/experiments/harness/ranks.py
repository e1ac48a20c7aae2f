"""The harness under torchrun: which process this is, and what it shares with the others.

``demp train --nproc N`` (or ``torchrun --nproc_per_node=N -m demp train ...``) starts N
processes that each run :class:`~demp.experiments.harness.runner.Run`. Every rank builds the same
global batch (the data order depends only on the seed, epoch and batch index) and trains
on its slice ``batch[rank::N]``, so the run sees the same global batch as one process.
Only rank 0 writes the run folder.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ...errors import DempError


@dataclass(frozen=True)
class Ranks:
    """The process's place in a (possibly single-process) run.

    Attributes:
        world: Number of processes.
        rank: This process's rank (0 writes the run folder).
        local_rank: Its rank on this machine (picks the CUDA device).
    """

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True on rank 0, the only rank that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when several processes train together."""
        return self.world > 1

    @classmethod
    def from_env(cls, device: torch.device) -> Ranks:
        """Read torchrun's environment and join its process group (gloo on CPU, else nccl)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        ranks = cls(world, int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return ranks

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA runs."""
        if self.distributed and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def check_batch(self, batch_size: int) -> None:
        """The global batch must split evenly over the ranks."""
        if batch_size % self.world:
            raise DempError(
                f"batch size {batch_size} does not split evenly over {self.world} processes; "
                "use a multiple of --nproc"
            )

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a global batch."""
        return tensor[self.rank :: self.world] if self.distributed else tensor

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sum numbers over the ranks (identity in a single process)."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group.

        Collects garbage first: DDP wrappers left in reference cycles would otherwise be
        freed at interpreter exit, where gloo's pending work objects abort the process
        ("terminate called without an active exception", seen with torch 2.13 on CPU).
        """
        if self.distributed and dist.is_initialized():
            gc.collect()
            dist.destroy_process_group()
