"""Process-group set-up for every way the trainer is started.

* plain ``xas-train train`` (no launcher, no MPI): a one-process group on 127.0.0.1 with a free
  port, so DeepSpeed never looks for mpi4py;
* ``torchrun`` (one or many nodes, c10d rendezvous) and the ``deepspeed`` launcher: RANK,
  WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT come from the launcher.

The backend is NCCL on CUDA GPUs and gloo on the CPU; nothing else changes between the two.
The trainer initialises ``torch.distributed`` itself (NCCL bound to this rank's GPU through
``device_id``), hands the group to DeepSpeed, and destroys it when the run ends
(:func:`teardown_distributed`) if it created it.

No first-use compile stall: DeepSpeed's CPU comm backend JIT-compiles its ``deepspeed_shm_comm``
op when it starts, under a lock in ``~/.cache/torch_extensions`` shared by every job of the
user. That op serves only ``inference_all_reduce``, which training never calls, so CPU runs skip
it (:func:`_without_shm_op`), and any op a run does build goes to a per-job
``TORCH_EXTENSIONS_DIR`` (:func:`job_extensions_dir`) unless the user chose one.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    owns_group: bool = False

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


def job_extensions_dir() -> Path:
    """Where this job's JIT-compiled torch extensions go: one folder per job (Slurm job,
    torchrun run or rendezvous port) and user in the temp dir, shared by the job's ranks."""
    job = (
        os.environ.get("SLURM_JOB_ID")
        or os.environ.get("TORCHELASTIC_RUN_ID")
        or f"port{os.environ.get('MASTER_PORT', os.getpid())}"
    )
    return Path(tempfile.gettempdir()) / f"xas-torch-extensions-{os.getuid()}-{job}"


@contextlib.contextmanager
def _without_shm_op() -> Iterator[None]:
    """Keep DeepSpeed's comm backend from JIT-building ``deepspeed_shm_comm`` while it starts
    (CPU runs; the op only serves ``inference_all_reduce``, never called in training)."""
    # ``import deepspeed.comm.torch as m`` would bind ``deepspeed.comm``'s ``torch`` attribute
    ds_torch = importlib.import_module("deepspeed.comm.torch")
    build = ds_torch.build_shm_op
    ds_torch.build_shm_op = lambda: None
    try:
        yield
    finally:
        ds_torch.build_shm_op = build


def _init_group(backend: str, device: torch.device) -> None:
    """``torch.distributed`` from the launcher's env (``device_id`` binds NCCL to the GPU)."""
    torch.distributed.init_process_group(
        backend=backend, device_id=device if device.type == "cuda" else None
    )


def setup_distributed() -> DistInfo:
    """Initialise the default process group (unless one exists) and DeepSpeed's comm backend
    on it, without compiling anything on the CPU; describe this rank."""
    _single_process_env()
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(job_extensions_dir()))
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    import deepspeed

    owns = not torch.distributed.is_initialized()
    if owns:
        _init_group(backend, device)
    quiet = _without_shm_op() if device.type == "cpu" else contextlib.nullcontext()
    with quiet:
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
    return DistInfo(rank, world_size, local_rank, device, backend, owns)


def teardown_distributed(info: DistInfo) -> None:
    """Destroy the default process group (and DeepSpeed's references to it) if
    :func:`setup_distributed` created it; a group the caller made is left alone."""
    if info.owns_group and torch.distributed.is_initialized():
        import deepspeed.comm

        deepspeed.comm.destroy_process_group()


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
