"""Process-group set-up for every way the trainer is started.

* plain ``xas-train train`` (no launcher, no MPI): a one-process group on 127.0.0.1 with a free
  port, so DeepSpeed never looks for mpi4py;
* ``torchrun`` (one or many nodes, c10d rendezvous) and the ``deepspeed`` launcher: RANK,
  WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT come from the launcher.

The backend is NCCL on CUDA GPUs and gloo on the CPU; nothing else changes between the two.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _single_process_env() -> None:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    os.environ.update(
        {
            "RANK": "0",
            "WORLD_SIZE": "1",
            "LOCAL_RANK": "0",
            "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
            "MASTER_PORT": os.environ.get("MASTER_PORT", str(free_port())),
        }
    )


def setup_distributed() -> DistInfo:
    """Initialise (once) the default process group through DeepSpeed and describe this rank."""
    _single_process_env()
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    import deepspeed

    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
    return DistInfo(rank, world_size, local_rank, device, backend)


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def all_reduce_mean_(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """In-place mean of ``tensor`` over ranks."""
    if world_size > 1:
        torch.distributed.all_reduce(tensor)
        tensor /= world_size
    return tensor
