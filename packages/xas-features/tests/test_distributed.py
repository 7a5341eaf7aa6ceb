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
