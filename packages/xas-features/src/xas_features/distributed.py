"""Rank and world size under torchrun, the deepspeed launcher or Slurm, with gloo barriers.

No new machinery: ``RANK``/``WORLD_SIZE`` (torchrun, deepspeed) or ``SLURM_PROCID``/
``SLURM_NTASKS`` (srun) tell each process its shard; when the world has more than one process
``torch.distributed`` is initialised (gloo on CPU) so that ranks can wait for each other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class RankInfo:
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def rank_info() -> RankInfo:
    """This process's rank and the world size from the launcher's environment (default 0/1)."""
    for rank_var, world_var in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank_var in os.environ and world_var in os.environ:
            return RankInfo(int(os.environ[rank_var]), int(os.environ[world_var]))
    return RankInfo(0, 1)


def init_distributed(info: RankInfo) -> bool:
    """Initialise a gloo process group when ``world_size > 1``; returns whether one is active."""
    if info.world_size <= 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29512")
        os.environ.setdefault("RANK", str(info.rank))
        os.environ.setdefault("WORLD_SIZE", str(info.world_size))
        dist.init_process_group("gloo", rank=info.rank, world_size=info.world_size)
    return True


def barrier(active: bool) -> None:
    if active:
        import torch.distributed as dist

        dist.barrier()
