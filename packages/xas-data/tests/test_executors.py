"""FEFF executors: the local pool and a real Dask LocalCluster give identical results, a killed
Dask worker loses nothing, Slurm array scripts and shards."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from xas_feff_testdata import nio_records, stored_results

from xas_data.errors import SimulationError
from xas_data.simulation import plan_tasks, run_simulations
from xas_data.simulation.executors import shard, site_results, write_array_job

pytest.importorskip("feff10")

WAIT_S = 600  # generous: a loaded CI machine may be slow, and we wait on events, not time


def assert_identical(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b) and len(a) == 6
    for task_id in a:
        for key in a[task_id]:
            np.testing.assert_array_equal(a[task_id][key], b[task_id][key], err_msg=task_id)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("local")
    tasks = plan_tasks(nio_records(), "Ni", workdir)
    report = run_simulations(tasks, workdir, "fast", workers=2, progress=False)
    assert report.done == 6, report.summary()
    return tasks, stored_results(workdir)


@pytest.mark.slow
def test_dask_local_cluster_gives_bit_identical_results(local_run, tmp_path):
    tasks, expected = local_run
    plan_tasks(nio_records(), "Ni", tmp_path)  # the structures, in this work folder
    report = run_simulations(tasks, tmp_path, "fast", workers=2, progress=False, executor="dask")
    assert report.done == 6 and report.failed == 0
    assert_identical(stored_results(tmp_path), expected)
    log = (tmp_path / "fast" / "progress.log").read_text().splitlines()
    assert len(log) == 6 and all("eta" in line for line in log)
    # resumable: a second run finds everything done
    again = run_simulations(tasks, tmp_path, "fast", workers=2, progress=False, executor="dask")
    assert again.skipped == 6 and again.done == 0


def _wait_for(predicate, what: str, deadline_s: float = WAIT_S) -> None:
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"gave up after {deadline_s} s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_a_dask_worker_killed_mid_run_loses_nothing(local_run, tmp_path):
    from distributed import Client, LocalCluster

    tasks, expected = local_run
    plan_tasks(nio_records(), "Ni", tmp_path)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        client = Client(cluster)
        pids = client.run(os.getpid)
        outcome: dict = {}

        def run() -> None:
            outcome["report"] = run_simulations(
                tasks,
                tmp_path,
                "fast",
                progress=False,
                executor="dask",
                address=cluster.scheduler_address,
            )

        thread = threading.Thread(target=run)
        thread.start()
        runs = tmp_path / "fast" / "runs"
        _wait_for(lambda: runs.is_dir() and any(runs.iterdir()), "a FEFF run to start on a worker")
        victim = next(iter(pids.values()))
        os.kill(victim, signal.SIGKILL)
        thread.join(WAIT_S)
        assert not thread.is_alive(), f"the run did not finish within {WAIT_S} s after the kill"
        client.close()
    assert outcome["report"].done + outcome["report"].skipped == 6
    assert outcome["report"].failed == 0
    assert_identical(stored_results(tmp_path), expected)


def test_shards_partition_the_plan():
    tasks = list(range(10))
    shards = [shard(tasks, 3, i) for i in range(3)]
    assert sorted(t for s in shards for t in s) == tasks
    with pytest.raises(SimulationError, match="out of range"):
        shard(tasks, 3, 3)


def test_unknown_and_slurm_executors_are_explained(tmp_path):
    with pytest.raises(SimulationError, match="choose one of"):
        list(site_results("ray", [], tmp_path, None, 1))
    with pytest.raises(SimulationError, match="simulate-plan"):
        list(site_results("slurm", [], tmp_path, None, 1))


def test_slurm_array_script(tmp_path):
    script = write_array_job(tmp_path, "accurate", 8, partition="cpu", cpus_per_task=2)
    text = script.read_text()
    assert "#SBATCH --array=0-7" in text and "#SBATCH --partition=cpu" in text
    assert "--cpus-per-task=2" in text and "--n-shards 8" in text
    assert '--shard "$SLURM_ARRAY_TASK_ID"' in text and "--executor local" in text
    assert "simulate-plan" in text and str(tmp_path.resolve()) in text
