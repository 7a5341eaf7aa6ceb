"""FEFF10 through a real Slurm: ``xas-data simulate-plan WORKDIR --executor slurm --n-shards 2
--submit`` writes and submits a 2-task array job (``write_array_job``) that runs as written and
gives the results of a local run, bit for bit. See ``tests/support/xas_slurm.py``."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict

import numpy as np
import pytest
from xas_feff_testdata import RESULT_KEYS, nio_records, stored_results
from xas_slurm import assert_completed, cancel, job_env, wait_job_final
from xas_testkit import run_logged

from xas_data.simulation import plan_tasks, run_simulations

pytest.importorskip("feff10")
# ~100 s (FEFF twice): not in the default run (pytest -m slurm)
pytestmark = [pytest.mark.usefixtures("slurm_cluster"), pytest.mark.slow, pytest.mark.slurm]


def test_array_job_of_two_shards_equals_a_local_run(tmp_path):
    records = nio_records(2)
    workdir = tmp_path / "campaign"
    tasks = plan_tasks(records, "Ni", workdir)
    assert len(tasks) == 2
    # the campaign plan format read by xas_data.campaign.read_plan
    plan = {"fast": [asdict(t) for t in tasks], "accurate": []}
    (workdir / "campaign-plan.json").write_text(json.dumps(plan, indent=1))
    submitted = run_logged(
        [
            sys.executable,
            "-m",
            "xas_data.cli",
            "simulate-plan",
            str(workdir),
            "--executor",
            "slurm",
            "--n-shards",
            "2",
            "--submit",
        ],
        tmp_path / "submit.log",
        cwd=tmp_path,
        env=job_env(),
    )
    match = re.search(r"Submitted batch job (\d+)", submitted.stdout)
    assert match, submitted.stdout
    job = match.group(1)
    logs = [workdir / "fast" / f"slurm-{job}_{i}.out" for i in (0, 1)]
    try:
        jobs = wait_job_final(job, logs, f"both tasks of FEFF array job {job} to end")
    finally:
        cancel(job)
    assert len(jobs) == 2 and {j["ArrayTaskId"] for j in jobs} == {"0", "1"}
    assert_completed(jobs, logs)

    local = tmp_path / "local"
    plan_tasks(records, "Ni", local)
    report = run_simulations(tasks, local, "fast", workers=2, progress=False)
    assert report.done == 2, report.summary()
    a, b = stored_results(workdir), stored_results(local)
    assert sorted(a) == sorted(b) == sorted(t.task_id for t in tasks)
    for task_id in a:
        for key in RESULT_KEYS:
            np.testing.assert_array_equal(a[task_id][key], b[task_id][key], err_msg=task_id)
