"""Sharded featurization under a real Slurm: ``srun`` starts 2 tasks of ``xas-features
featurize`` (rank and world size from SLURM_PROCID / SLURM_NTASKS) and the features equal those
of one process bit for bit. See ``tests/support/xas_slurm.py``."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

import numpy as np
import pytest
from xas_slurm import assert_completed, cancel, job_env, sbatch, wait_job_final
from xas_testkit import run_logged

from xas_data.store import XASDataset

pytestmark = [pytest.mark.usefixtures("slurm_cluster"), pytest.mark.slow]

ARGS = ["featurize", "--featurizer", "descriptors", "--no-progress"]


def test_srun_two_tasks_equal_single_process(tmp_path, store_factory):
    single, sharded = tmp_path / "single.zarr", tmp_path / "sharded.zarr"
    store_factory(single, chunk_rows=2)
    shutil.copytree(single, sharded)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    run_logged(
        [sys.executable, "-m", "xas_features.cli", *ARGS, "--dataset", single],
        tmp_path / "single.log",
        env=env | {"OMP_NUM_THREADS": "1"},
    )
    command = shlex.join(
        [sys.executable, "-m", "xas_features.cli", *ARGS, "--dataset", str(sharded)]
    )
    script = tmp_path / "featurize.sbatch"
    script.write_text(
        "\n".join(
            [
                "#!/bin/bash",
                "#SBATCH --job-name=featurize",
                "#SBATCH --ntasks=2",
                "#SBATCH --cpus-per-task=1",
                "#SBATCH --time=00:20:00",
                "#SBATCH --output=%x-%j.out",
                "set -euo pipefail",
                "# no MASTER_ADDR/MASTER_PORT: xas_features.distributed derives them (the",
                "# first node of the step, a port from the job id)",
                f"srun {command}",
                "",
            ]
        )
    )
    job, _ = sbatch([script], cwd=tmp_path, env=job_env())
    log = tmp_path / f"featurize-{job}.out"
    try:
        jobs = wait_job_final(job, [log], f"featurization job {job} (2 srun tasks) to end")
    finally:
        cancel(job)
    assert_completed(jobs, [log])
    a, b = XASDataset.open(single), XASDataset.open(sharded)
    (key,) = a.feature_names()
    assert b.feature_names() == [key]
    va, vb = a.read_features(key), b.read_features(key)
    assert va.shape[0] >= 4  # more than one chunk per rank
    np.testing.assert_array_equal(va, vb)  # NaN == NaN for missing descriptors
    assert b.feature_attrs(key)["complete"] and b.feature_attrs(key)["world_size"] == 2
