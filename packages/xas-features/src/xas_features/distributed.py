"""Rank and world size under torchrun, the deepspeed launcher or Slurm, with gloo barriers.

No new machinery: ``RANK``/``WORLD_SIZE`` (torchrun, deepspeed) or ``SLURM_PROCID``/
``SLURM_NTASKS`` (srun) tell each process its shard; when the world has more than one process
``torch.distributed`` is initialised (gloo on CPU) so that ranks can wait for each other.

Under ``srun`` the ranks meet on the first node of the step (where task 0 runs), on a port
derived from the job id (:func:`slurm_rendezvous`), so that jobs sharing a node do not collide;
``xas_train.slurm`` derives the training scripts' ``MASTER_PORT`` from the same constants.
A ``MASTER_ADDR``/``MASTER_PORT`` already in the environment wins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

PORT_BASE, PORT_SPAN = 20000, 20000
"""Rendezvous port of a Slurm job: ``PORT_BASE + SLURM_JOB_ID % PORT_SPAN``."""

_BRACKET = re.compile(r"\[([^\]]*)\]")


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


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list, as ``scontrol show hostnames`` lists it first:
    ``"gpu[007-009,012],cpu01" -> "gpu007"``, ``"r[1-2]n[05-06]" -> "r1n05"``."""
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):  # the first top-level comma ends the first entry
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            end = i
            break
    entry = nodelist[:end].strip()
    return _BRACKET.sub(lambda m: re.split(r"[,-]", m.group(1))[0], entry)


def slurm_rendezvous(environ: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    """``(MASTER_ADDR, MASTER_PORT)`` for the tasks of a Slurm step, or None outside Slurm.

    The address is the first node of the step (``SLURM_STEP_NODELIST``, else
    ``SLURM_JOB_NODELIST``; ``SLURM_LAUNCH_NODE_IPADDR`` when neither is set), the port
    ``PORT_BASE + SLURM_JOB_ID % PORT_SPAN``.
    """
    env = os.environ if environ is None else environ
    job = env.get("SLURM_JOB_ID", "")
    if not job.isdigit():
        return None
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
    addr = first_host(nodelist) if nodelist else env.get("SLURM_LAUNCH_NODE_IPADDR", "")
    return (addr or "127.0.0.1"), PORT_BASE + int(job) % PORT_SPAN


def init_distributed(info: RankInfo) -> bool:
    """Initialise a gloo process group when ``world_size > 1``; returns whether one is active."""
    if info.world_size <= 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        addr, port = slurm_rendezvous() or ("127.0.0.1", 29512)
        os.environ.setdefault("MASTER_ADDR", addr)
        os.environ.setdefault("MASTER_PORT", str(port))
        os.environ.setdefault("RANK", str(info.rank))
        os.environ.setdefault("WORLD_SIZE", str(info.world_size))
        dist.init_process_group("gloo", rank=info.rank, world_size=info.world_size)
    return True


def barrier(active: bool) -> None:
    if active:
        import torch.distributed as dist

        dist.barrier()
