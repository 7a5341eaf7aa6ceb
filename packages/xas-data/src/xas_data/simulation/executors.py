"""Where FEFF tasks run: a local process pool, a Dask distributed cluster, or Slurm job arrays.

Every executor calls the same ``run_site`` on the same work folder, so the stored results are
identical whichever ran them, and every one is resumable: a task counts as done only once its
result marker is written (atomically), so a killed worker or job loses at most its running
task, which the next run (or Dask's own rescheduling) does again. Per-task timeouts are the
preset's ``stage_timeout_s`` (FEFF stops the stage; the site is recorded as failed with its log
tail).

- ``local``: ``concurrent.futures.ProcessPoolExecutor`` on this machine.
- ``dask``: ``distributed.Client`` on a scheduler ``address`` (e.g. one started by
  ``dask-jobqueue`` on a cluster) or on a ``LocalCluster`` of worker processes.
- ``slurm``: ``write_array_job`` writes an ``sbatch --array`` script whose array tasks each
  run one shard of the plan with the local executor (``xas-data simulate-plan --shard``).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from xas_data.errors import MissingExtraError, SimulationError
from xas_data.io_utils import atomic_write_text
from xas_data.simulation.presets import FeffPreset
from xas_data.simulation.runner import SiteTask, record_worker_death, run_site

EXECUTORS = ("local", "dask", "slurm")
Result = tuple[SiteTask, str, float]


def site_results(
    executor: str,
    tasks: Sequence[SiteTask],
    workdir: Path,
    preset: FeffPreset,
    workers: int,
    address: str | None = None,
) -> Iterator[Result]:
    """Run ``tasks`` on ``executor`` and yield (task, "done"|"failed", seconds) as they end."""
    if executor == "local":
        return _local(tasks, workdir, preset, workers)
    if executor == "dask":
        return _dask(tasks, workdir, preset, workers, address)
    if executor == "slurm":
        raise SimulationError(
            "the slurm executor submits array jobs instead of running here: use "
            "`xas-data simulate-plan WORKDIR --executor slurm` to write (and submit) the script"
        )
    raise SimulationError(f"unknown executor {executor!r}; choose one of {list(EXECUTORS)}")


def _local(tasks, workdir: Path, preset: FeffPreset, workers: int) -> Iterator[Result]:
    """A process pool of ``workers`` processes; at most ``workers`` tasks in flight."""
    workers = max(1, workers)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        queue, running = list(tasks), {}
        while queue or running:
            while queue and len(running) < workers:
                task = queue.pop(0)
                running[pool.submit(run_site, task, str(workdir), preset)] = task
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield _outcome(running.pop(future), future, workdir, preset)


def _outcome(task: SiteTask, future, workdir: Path, preset: FeffPreset) -> Result:
    try:
        _, status, seconds = future.result()
    except Exception as exc:  # the worker process itself died
        record_worker_death(workdir, preset, task, exc)
        return task, "failed", 0.0
    return task, status, seconds


def _dask(tasks, workdir: Path, preset: FeffPreset, workers: int, address) -> Iterator[Result]:
    """Dask distributed: a worker that dies mid-task has its task rescheduled by the scheduler
    (up to ``distributed.scheduler.allowed-failures`` times) before it counts as failed."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise MissingExtraError("dask[distributed]", "dask") from exc
    cluster = None
    if address is None:
        cluster = LocalCluster(
            n_workers=max(1, workers), threads_per_worker=1, processes=True, dashboard_address=None
        )
    client = Client(address or cluster)
    try:
        futures = {
            client.submit(
                run_site, task, str(workdir), preset, key=f"feff-{task.task_id}", pure=False
            ): task
            for task in tasks
        }
        for future in as_completed(futures):
            yield _outcome(futures[future], future, workdir, preset)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def shard(tasks: Sequence[SiteTask], n_shards: int, index: int) -> list[SiteTask]:
    """Every ``n_shards``-th task starting at ``index`` (0-based): array task ``index``'s share."""
    if not (n_shards >= 1 and 0 <= index < n_shards):
        raise SimulationError(f"shard {index} of {n_shards} is out of range; use 0..{n_shards - 1}")
    return list(tasks[index::n_shards])


def write_array_job(
    workdir: str | Path,
    preset: str,
    n_shards: int,
    partition: str | None = None,
    time_limit: str = "24:00:00",
    cpus_per_task: int = 1,
    python: str | None = None,
) -> Path:
    """Write ``workdir/<preset>/array.sbatch``: an ``sbatch --array=0-(n_shards-1)`` job whose
    array task ``i`` runs shard ``i`` of the plan in ``workdir`` with the local executor.

    Re-submitting it after a failure re-runs only the sites without a result.
    """
    workdir = Path(workdir).resolve()
    python = python or sys.executable
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=feff-{preset}",
        f"#SBATCH --array=0-{n_shards - 1}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={cpus_per_task}",
        f"#SBATCH --time={time_limit}",
        f"#SBATCH --output={workdir / preset / 'slurm-%A_%a.out'}",
    ]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    command = [
        python, "-m", "xas_data.cli", "simulate-plan", str(workdir), "--preset", preset,
        "--executor", "local", "--workers", str(cpus_per_task), "--n-shards", str(n_shards),
    ]  # fmt: skip
    lines += [
        "set -euo pipefail",
        "export OMP_NUM_THREADS=1",
        " ".join(shlex.quote(c) for c in command) + ' --shard "$SLURM_ARRAY_TASK_ID"',
        "",
    ]
    path = workdir / preset / "array.sbatch"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines))
    return path
