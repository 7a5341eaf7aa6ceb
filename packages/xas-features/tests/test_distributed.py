"""Sharded featurization: 2 ranks under torchrun (gloo) equal one process bit for bit."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from xas_testkit import run_logged

from xas_data.store import XASDataset
from xas_features.distributed import rank_info


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rank_info_from_launchers(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    assert rank_info().world_size == 1
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert (rank_info().rank, rank_info().world_size) == (3, 8)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (rank_info().rank, rank_info().world_size) == (1, 2)


@pytest.mark.slow
def test_torchrun_two_ranks_equal_single_process(tmp_path, store_factory):
    single, sharded = tmp_path / "single.zarr", tmp_path / "sharded.zarr"
    store_factory(single, chunk_rows=2)
    shutil.copytree(single, sharded)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = ["featurize", "--featurizer", "descriptors", "--no-progress"]
    run_logged(
        [sys.executable, "-m", "xas_features.cli", *args, "--dataset", single],
        tmp_path / "single.log",
        env=env,
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    # torchrun and its 2 workers in one process group, output in a file (testkit deadline)
    run_logged(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            "-m",
            "xas_features.cli",
            *args,
            "--dataset",
            str(sharded),
        ],
        tmp_path / "torchrun.log",
        env=env,
    )
    a, b = XASDataset.open(single), XASDataset.open(sharded)
    (key,) = a.feature_names()
    assert b.feature_names() == [key]
    va, vb = a.read_features(key), b.read_features(key)
    assert va.shape[0] >= 4  # more than one chunk per rank
    np.testing.assert_array_equal(va, vb)  # NaN == NaN for missing descriptors
    assert b.feature_attrs(key)["complete"] and b.feature_attrs(key)["world_size"] == 2


def test_first_host_of_slurm_node_lists():
    from xas_features.distributed import first_host

    assert first_host("node07") == "node07"
    assert first_host("gpu[007-009,012],cpu01") == "gpu007"
    assert first_host("gpu[012,007-009]") == "gpu012"  # scontrol keeps the listed order
    assert first_host("r[1-2]n[05-06]") == "r1n05"
    assert first_host("a01,b[1-3]") == "a01"


def test_slurm_rendezvous_from_job_environment():
    from xas_features.distributed import PORT_BASE, PORT_SPAN, slurm_rendezvous

    assert slurm_rendezvous({}) is None  # not under Slurm
    job = {"SLURM_JOB_ID": "123457", "SLURM_JOB_NODELIST": "cn[101-104]"}
    assert slurm_rendezvous(job) == ("cn101", PORT_BASE + 123457 % PORT_SPAN)
    step = job | {"SLURM_STEP_NODELIST": "cn[103-104]"}
    assert slurm_rendezvous(step)[0] == "cn103"  # task 0 of the step runs there
    launch = {"SLURM_JOB_ID": "5", "SLURM_LAUNCH_NODE_IPADDR": "10.0.0.7"}
    assert slurm_rendezvous(launch) == ("10.0.0.7", PORT_BASE + 5)
    # two jobs on one node get different ports
    assert slurm_rendezvous({"SLURM_JOB_ID": "6"})[1] != slurm_rendezvous(launch)[1]


def test_init_distributed_uses_the_slurm_rendezvous(monkeypatch):
    import torch.distributed as dist

    from xas_features.distributed import RankInfo, init_distributed

    seen = {}
    for var in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE"):
        # setenv first: delenv of an absent variable records nothing, so the values that
        # init_distributed sets would leak into later tests (RANK=1/WORLD_SIZE=2 -> a hang)
        monkeypatch.setenv(var, "unset")
        monkeypatch.delenv(var)
    monkeypatch.setenv("SLURM_JOB_ID", "40001")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "cn[07-08]")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        dist,
        "init_process_group",
        lambda backend, rank, world_size: seen.update(
            addr=os.environ["MASTER_ADDR"], port=os.environ["MASTER_PORT"]
        ),
    )
    assert init_distributed(RankInfo(1, 2))
    assert seen == {"addr": "cn07", "port": str(20000 + 40001 % 20000)}
