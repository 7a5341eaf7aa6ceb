"""A real single-node Slurm for tests: start it (or find it running), submit jobs, wait on them.

The cluster comes from ``../shared/tools/slurm-single-node.sh`` (beside the checkout, or beside
``$XAS_SHARED_DATA``): Debian's slurm-wlm + munge on this machine, one node with its CPUs and
no GPUs. Starting it needs root (and Debian's package repository the first time, ~1 min);
without root or the script the tests that need it are skipped, except under ``CI=true``
where they fail. The ``slurm_cluster`` fixture (root ``conftest.py``) starts it once per
session and stops it at the end only if it started it (``.ci/run`` also stops it after a run
that was killed before the fixture could: see :data:`STARTED_MARKER`).

Job helpers wait on events (job states from ``scontrol show job``, log lines, files) with the
testkit's generous deadlines and fail naming what they awaited, with the job's log.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from xas_testkit import DEADLINE_S, run_logged, wait_for

REPO = Path(__file__).resolve().parents[2]
SCRIPT_NAME = "slurm-single-node.sh"
SLURM_DIR = Path(os.environ.get("SLURM_CI_DIR", "/tmp/slurm-ci"))
#: Written when the tests started the cluster, removed when they stopped it: ``.ci/run`` stops
#: a cluster whose marker is still there after pytest (a run killed before its teardown).
STARTED_MARKER = SLURM_DIR / "started-by-tests"

#: Final job states (``scontrol show job``): the job will not run again by itself.
FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}

#: Variables a job must not inherit from the test process (launchers set them per rank).
_DIST_VARS = {
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "GROUP_RANK",
    "ROLE_RANK",
    "TORCHELASTIC_RUN_ID",
    "VIRTUAL_ENV",
    "PYTEST_CURRENT_TEST",
}


def cluster_script() -> Path | None:
    """``slurm-single-node.sh`` in ``../shared/tools`` (beside ``$XAS_SHARED_DATA`` or the
    checkout), or None."""
    candidates = []
    if os.environ.get("XAS_SHARED_DATA"):
        candidates.append(Path(os.environ["XAS_SHARED_DATA"]).resolve().parent / "tools")
    candidates.append(REPO.parent / "shared" / "tools")
    for folder in candidates:
        if (folder / SCRIPT_NAME).is_file():
            return folder / SCRIPT_NAME
    return None


def cluster_up() -> bool:
    """A controller answers and a partition is up."""
    if shutil.which("sinfo") is None:
        return False
    try:
        done = subprocess.run(
            ["sinfo", "--noheader", "--format=%a"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "up" in done.stdout.split()


class SlurmCluster:
    """The cluster of one test session; ``started`` says whether this session started it."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started = False
        self.script = cluster_script()

    def _skip_or_fail(self, message: str) -> None:
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)

    def ensure_started(self) -> SlurmCluster:
        if cluster_up():
            return self
        if self.script is None:
            self._skip_or_fail(
                f"no Slurm here and no {SCRIPT_NAME} in ../shared/tools to start one"
            )
        if os.geteuid() != 0:
            self._skip_or_fail(f"starting Slurm ({self.script} start) needs root")
        SLURM_DIR.mkdir(parents=True, exist_ok=True)
        STARTED_MARKER.write_text(f"{os.getpid()}\n")
        self.started = True
        # installs slurm-wlm + munge the first time (~1 min), then waits until the node is idle
        run_logged(
            ["bash", self.script, "start"],
            self.logs / "slurm-start.log",
            what=f"{self.script} start (Slurm install and start)",
        )
        wait_for(cluster_up, "the Slurm partition to be up", interval_s=0.5)
        return self

    def stop(self) -> None:
        if not self.started:
            return
        run_logged(
            ["bash", self.script, "stop"],
            self.logs / "slurm-stop.log",
            check=False,
            what=f"{self.script} stop",
        )
        STARTED_MARKER.unlink(missing_ok=True)
        self.started = False


# --------------------------------------------------------------------------- jobs


def job_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to submit with: this one without process-group variables and without
    this Python environment on PATH (the generated scripts activate it themselves)."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items() if k not in _DIST_VARS}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != venv_bin
    )
    env.update({"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    env.update(extra or {})
    return env


def sbatch(
    args: Sequence[str | os.PathLike], cwd: Path, env: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """``sbatch ARGS`` in ``cwd``; returns ``(job id, sbatch's output)``."""
    done = subprocess.run(
        ["sbatch", *map(str, args)],
        cwd=cwd,
        env=dict(env) if env is not None else job_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    match = re.search(r"Submitted batch job (\d+)", done.stdout)
    if done.returncode != 0 or match is None:
        pytest.fail(
            f"sbatch {shlex.join(map(str, args))} failed ({done.returncode}): "
            f"{done.stdout}{done.stderr}",
            pytrace=False,
        )
    return match.group(1), done.stdout.strip()


def show_job(job_id: str) -> list[dict[str, str]]:
    """``scontrol show job -o JOBID`` as one dict per job (array tasks: one each); [] when
    Slurm has forgotten the job (MinJobAge after its end)."""
    done = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        return []
    jobs = []
    for line in done.stdout.splitlines():
        fields = {}
        for token in line.split():
            key, sep, value = token.partition("=")
            if sep:
                fields[key] = value
        if fields:
            jobs.append(fields)
    return jobs


def job_summary(job_id: str) -> str:
    jobs = show_job(job_id)
    if not jobs:
        return f"job {job_id}: unknown to scontrol"
    return "; ".join(
        f"job {j.get('JobId')}: {j.get('JobState')} reason={j.get('Reason')} "
        f"exit={j.get('ExitCode')} restarts={j.get('Restarts')}"
        for j in jobs
    )


def _tails(logs: Sequence[Path]) -> str:
    out = []
    for log in logs:
        if Path(log).is_file():
            out.append(f"--- {log} ---\n{Path(log).read_text(errors='replace')[-3000:]}")
    return "\n".join(out)


def wait_job_states(
    job_id: str,
    predicate,
    what: str,
    logs: Sequence[Path] = (),
    deadline_s: float | None = None,
) -> list[dict[str, str]]:
    """Poll ``scontrol show job`` until ``predicate(jobs)`` holds; fail naming ``what`` with the
    job's state and logs after the deadline."""
    limit = DEADLINE_S if deadline_s is None else deadline_s
    end = time.monotonic() + limit
    while True:
        jobs = show_job(job_id)
        if jobs and predicate(jobs):
            return jobs
        if time.monotonic() > end:
            pytest.fail(
                f"gave up after {limit:g} s waiting for {what} ({job_summary(job_id)})\n"
                + _tails(logs),
                pytrace=False,
            )
        time.sleep(0.5)


def wait_job_final(job_id: str, logs: Sequence[Path] = (), what: str | None = None) -> list[dict]:
    """Wait until every task of the job is in a final state; returns the job records."""
    return wait_job_states(
        job_id,
        lambda jobs: all(j.get("JobState") in FINAL_STATES for j in jobs),
        what or f"job {job_id} to end",
        logs,
    )


def assert_completed(jobs: list[dict[str, str]], logs: Sequence[Path] = ()) -> None:
    bad = [j for j in jobs if j.get("JobState") != "COMPLETED" or j.get("ExitCode") != "0:0"]
    if bad:
        states = "; ".join(
            f"{j.get('JobId')}: {j.get('JobState')} exit {j.get('ExitCode')} "
            f"reason {j.get('Reason')}"
            for j in bad
        )
        pytest.fail(f"job(s) did not complete: {states}\n{_tails(logs)}", pytrace=False)


def wait_log_line(log: Path, text: str, job_id: str, deadline_s: float | None = None) -> None:
    """Wait until ``log`` contains ``text``; fails early if the job ends without it."""

    def seen() -> bool:
        return log.is_file() and text in log.read_text(errors="replace")

    def check() -> bool:
        if seen():
            return True
        jobs = show_job(job_id)
        if jobs and all(j.get("JobState") in FINAL_STATES for j in jobs) and not seen():
            pytest.fail(
                f"job {job_id} ended ({job_summary(job_id)}) before its log showed {text!r}\n"
                + _tails([log]),
                pytrace=False,
            )
        return False

    wait_for(check, f"{text!r} in {log} (job {job_id})", deadline_s, log=log, interval_s=0.2)


def cancel(job_id: str) -> None:
    """Cancel the job if it still exists (test clean-up; errors ignored)."""
    subprocess.run(["scancel", job_id], capture_output=True, timeout=60, check=False)
