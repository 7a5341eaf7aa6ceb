"""``xas-train slurm`` scripts submitted as generated to a real Slurm (single node, 2 CPUs, no
GPUs): a 2-rank CPU training job equals one process with ``grad_accum: 2``, and a job sent
SIGUSR1 mid-training checkpoints, requeues itself and ends with the weights of an
uninterrupted run. See ``tests/support/xas_slurm.py`` for the cluster and the job helpers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from xas_slurm import (
    assert_completed,
    cancel,
    sbatch,
    show_job,
    wait_job_final,
    wait_job_states,
    wait_log_line,
)
from xas_testkit import run_logged

from xas_train.config import load_config
from xas_train.trainer import train

pytestmark = pytest.mark.usefixtures("slurm_cluster")

XAS_TRAIN = [sys.executable, "-m", "xas_train.cli"]


def weights(run_dir: Path) -> dict[str, np.ndarray]:
    return {
        k: v.numpy() for k, v in load_file(str(run_dir / "model" / "model.safetensors")).items()
    }


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    """As in test_trainer.py: every parameter within ``atol``, and not trivially zero."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    params = [k for k in wa if "running" not in k and "num_batches" not in k]
    for k in params:
        np.testing.assert_allclose(wa[k], wb[k], atol=atol, rtol=0, err_msg=k)
    assert max(float(np.abs(wa[k]).max()) for k in params) > 0.01


def generate(config: Path, script: Path, *args: str) -> str:
    """``xas-train slurm CONFIG ARGS -o SCRIPT`` (checked against the running cluster)."""
    out = run_logged(
        [*XAS_TRAIN, "slurm", str(config), *args, "--out", str(script)],
        script.with_suffix(".generate.log"),
    )
    assert script.is_file(), out.stdout
    return out.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    ["torchrun", pytest.param("deepspeed", marks=pytest.mark.slurm)],  # the latter: -m slurm
)
def test_two_rank_cpu_job_equals_single_process(write_config, tmp_path, launcher):
    settings = {"max_epochs": 8, "batch_size": 16}
    single = train(
        load_config(write_config("single-accum", training={**settings, "grad_accum": 2})),
        progress=None,
    )
    cfg = write_config("slurm2", training=settings)
    script = tmp_path / "train.sbatch"
    # defaults otherwise: the time limit, CPUs per task (fitted to the node), the environment
    generate(
        cfg,
        script,
        "--gpus-per-node",
        "0",
        "--nproc-per-node",
        "2",
        "--launcher",
        launcher,
        "--time",
        "00:20:00",
    )
    text = script.read_text()
    assert "--gpus-per-node" not in text.split("set -euo pipefail")[0]
    assert 'source "$PYTHON_ENV/bin/activate"' in text and sys.prefix in text
    job, _ = sbatch([script], cwd=tmp_path)
    log = tmp_path / f"xas-train-{job}.out"
    try:
        jobs = wait_job_final(job, [log], f"the 2-rank training job {job} to end")
    finally:
        cancel(job)
    assert_completed(jobs, [log])
    result = json.loads((tmp_path / "runs" / "slurm2" / "result.json").read_text())
    assert result["world_size"] == 2 and result["global_batch"] == 16
    assert "2 process(es) per node" in log.read_text()
    assert_same_weights(Path(single.run_dir), tmp_path / "runs" / "slurm2", 1e-5)


# The first run of the job blocks as it begins checkpoint epoch000010 until the batch shell has
# written the stop request, so that SIGUSR1 always comes mid-training, however fast or slow
# the machine; the requeued run (SLURM_RESTART_COUNT 1) runs unhindered. Nothing of the
# trainer is patched: an audit hook sees the checkpoint folder being created.
_BLOCK_UNTIL_STOP_REQUEST = textwrap.dedent(
    """
    import os, runpy, sys, time

    TAG = "epoch000010"
    first_run = os.environ.get("SLURM_RESTART_COUNT", "0") == "0"
    stop_file = os.environ["XAS_TRAIN_STOP_FILE"]


    def block_at_checkpoint(event, args):
        if first_run and event == "os.mkdir" and args and TAG in str(args[0]):
            print(f"test hook: waiting for the stop request {stop_file}", flush=True)
            deadline = time.monotonic() + 900
            while not os.path.exists(stop_file):
                if time.monotonic() > deadline:
                    raise SystemExit("test hook: no stop request came")
                time.sleep(0.05)


    sys.addaudithook(block_at_checkpoint)
    sys.argv = ["xas-train", *sys.argv[1:]]
    runpy.run_module("xas_train.cli", run_name="__main__")
    """
)


@pytest.mark.slow
@pytest.mark.slurm  # ~4 min (2 of them Slurm's requeue delay): pytest -m slurm
def test_sigusr1_checkpoints_requeues_and_resumes_to_the_uninterrupted_weights(
    write_config, tmp_path
):
    settings = {"max_epochs": 30, "checkpoint_every": 5, "patience": 1000}
    ref = train(load_config(write_config("ref", training=settings)), progress=None)
    cfg = write_config("preempted", training=settings)
    hook = tmp_path / "block_until_stop.py"
    hook.write_text(_BLOCK_UNTIL_STOP_REQUEST)
    script = tmp_path / "preempt.sbatch"
    generate(
        cfg,
        script,
        "--gpus-per-node",
        "0",
        "--cpus-per-task",  # one thread, as the reference run in this process (same sums)
        "1",
        "--time",
        "00:20:00",
        "--train-command",
        f"{hook} train",
    )
    text = script.read_text()
    assert "#SBATCH --signal=B:USR1@120" in text and "#SBATCH --requeue" in text
    job, _ = sbatch([script], cwd=tmp_path)
    log = tmp_path / f"xas-train-{job}.out"
    try:
        wait_log_line(log, "test hook: waiting for the stop request", job)
        signal = subprocess.run(
            ["scancel", "--signal=USR1", "--batch", job], capture_output=True, text=True
        )
        assert signal.returncode == 0, signal.stderr
        # the trainer checkpoints, the script requeues: the job is pending again, restarted once
        wait_job_states(
            job,
            lambda jobs: jobs[0].get("Restarts") == "1",
            f"job {job} to be requeued after SIGUSR1",
            [log],
        )
        # Slurm makes a requeued job eligible 2 minutes later and nothing here shortens that:
        # started at once, slurmd may still hold the revoked credential of the first run and
        # kill the new one ("Job credential revoked")
        jobs = wait_job_final(job, [log], f"requeued job {job} to run again and end")
    finally:
        cancel(job)
    assert_completed(jobs, [log])
    out = log.read_text()
    assert "SIGUSR1 received" in out and "requeueing the job" in out
    assert "restart 1" in out
    run_dir = tmp_path / "runs" / "preempted"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["resumed_from_epoch"] == 10, out[-3000:]
    assert result["epochs_run"] == 30
    assert not (tmp_path / f"xas-train-{job}.stop").exists()
    assert_same_weights(Path(ref.run_dir), run_dir, atol=1e-6)
    assert show_job(job)[0]["Restarts"] == "1"


def test_generation_refuses_requests_the_cluster_can_never_run(write_config, tmp_path):
    cfg = write_config("never")
    cases = [
        (["--gpus-per-node", "4"], "has no GPUs; use --gpus-per-node 0"),
        (["--gpus-per-node", "0", "--cpus-per-task", "64"], "exceeds the CPUs per node"),
        (["--gpus-per-node", "0", "--nodes", "5"], "--nodes 5 exceeds the 1 node(s)"),
        (["--gpus-per-node", "0", "--partition", "nosuch"], "partition 'nosuch' does not exist"),
    ]
    for args, fragment in cases:
        done = subprocess.run(
            [*XAS_TRAIN, "slurm", str(cfg), *args, "--out", str(tmp_path / "x.sbatch")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and fragment in errors[0], done.stderr
    assert not (tmp_path / "x.sbatch").exists()
