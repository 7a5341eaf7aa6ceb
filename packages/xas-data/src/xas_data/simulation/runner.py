"""Run FEFF10 on many absorbing sites in parallel worker processes, resumably.

Layout of a simulation work folder (``workdir``)::

    structures/<material_id>.json          pymatgen JSON of every planned material
    <preset>/runs/<task_id>/               feff.inp, feff.log and FEFF's own files
    <preset>/results/<task_id>.npz         parsed xmu.dat (energy eV, mu, mu0, chi, xsedge_norm)
    <preset>/results/<task_id>.json        task, preset, seconds: written last = "done" marker
    <preset>/failures/<task_id>.json       error and FEFF log tail of a failed site
    <preset>/progress.log                  one line per finished site with the ETA

A site with a result is never run again; failed sites are retried only with ``retry_failed``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from xas_data.errors import MissingExtraError, SimulationError
from xas_data.io_utils import atomic_write_bytes, atomic_write_text
from xas_data.simulation.feff_inputs import feff_input_text
from xas_data.simulation.presets import FeffPreset, get_preset
from xas_data.simulation.xmu import parse_xmu
from xas_data.structures import MaterialRecord, inequivalent_absorbing_sites


@dataclass(frozen=True)
class SiteTask:
    """One FEFF calculation: absorbing ``element`` at ``site_index`` of material ``material_id``."""

    material_id: str
    element: str
    site_index: int
    multiplicity: int = 1
    source: str = ""

    @property
    def task_id(self) -> str:
        return f"{self.element}_{self.material_id}_{self.site_index:03d}"


@dataclass
class SimulationReport:
    """Counts of one ``run_simulations`` call."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    site_seconds: list[float] = field(default_factory=list)

    def summary(self) -> str:
        mean = float(np.mean(self.site_seconds)) if self.site_seconds else float("nan")
        return (
            f"{self.done} done, {self.skipped} already present, {self.failed} failed "
            f"in {self.seconds:.0f} s ({mean:.1f} s per site of FEFF time)"
        )


def save_structures(records: Iterable[MaterialRecord], workdir: str | Path) -> None:
    """Write each material's structure to ``workdir/structures/<id>.json`` (atomically)."""
    folder = Path(workdir) / "structures"
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        path = folder / f"{record.material_id}.json"
        if not path.exists():
            payload = {"source": record.source, "structure": record.structure.as_dict()}
            atomic_write_text(path, json.dumps(payload))


def plan_tasks(
    records: Sequence[MaterialRecord],
    element: str,
    workdir: str | Path,
    max_sites_per_material: int | None = None,
) -> list[SiteTask]:
    """One task per symmetry-inequivalent ``element`` site of every record; saves structures."""
    save_structures(records, workdir)
    tasks: list[SiteTask] = []
    for record in records:
        sites = inequivalent_absorbing_sites(record.structure, element)
        if max_sites_per_material is not None:
            sites = sites[:max_sites_per_material]
        tasks.extend(
            SiteTask(record.material_id, element, s.index, s.multiplicity, record.source)
            for s in sites
        )
    return tasks


def load_structure(workdir: str | Path, material_id: str):
    """Structure saved by ``save_structures``."""
    from pymatgen.core import Structure

    payload = json.loads((Path(workdir) / "structures" / f"{material_id}.json").read_text())
    return Structure.from_dict(payload["structure"])


def _log_tail(path: Path, n_lines: int = 25) -> str:
    if not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-n_lines:])


def run_site(task: SiteTask, workdir: str, preset: FeffPreset) -> tuple[str, str, float]:
    """Worker: run FEFF for one task. Returns (task_id, "done"|"failed", seconds).

    The result (npz, then the json marker) is written atomically, so a killed worker leaves
    the task not done, never half-done; any executor may run it again.
    """
    base = Path(workdir) / preset.name
    run_dir = base / "runs" / task.task_id
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "feff.log"
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    # FEFF prints to the process's stdout: send it to the site's log, not the terminal
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        try:
            import feff10
        except ImportError as exc:
            raise MissingExtraError("feff10-rs", "feff") from exc
        structure = load_structure(workdir, task.material_id)
        text = feff_input_text(structure, task.site_index, preset, title=task.task_id)
        (run_dir / "feff.inp").write_text(text)
        config = feff10.FeffConfig(
            str(run_dir), feff10.FeffInput.parse(text), stage_timeout=preset.stage_timeout_s
        )
        result = feff10.FeffPipeline(config).run()
        xmu = parse_xmu(run_dir / "xmu.dat")
        seconds = time.perf_counter() - start
        buffer = _npz_bytes(
            energy=xmu.energy,
            mu=xmu.mu,
            mu0=xmu.mu0,
            chi=xmu.chi,
            xsedge_norm=np.float64(xmu.xsedge_norm),
        )
        atomic_write_bytes(base / "results" / f"{task.task_id}.npz", buffer)
        meta = asdict(task) | {
            "task_id": task.task_id,
            "preset": preset.to_dict(),
            "seconds": seconds,
            "cpu_seconds": _cpu_seconds() - cpu_start,
            "feff_seconds": result.total_duration_secs,
        }
        atomic_write_text(base / "results" / f"{task.task_id}.json", json.dumps(meta))
        status = "done"
    except Exception as exc:  # record every failure; never crash the whole run
        seconds = time.perf_counter() - start
        os.fsync(log_fd)
        failure = asdict(task) | {
            "task_id": task.task_id,
            "preset": preset.name,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=3),
            "feff_log_tail": _log_tail(log_path),
            "seconds": seconds,
        }
        atomic_write_text(base / "failures" / f"{task.task_id}.json", json.dumps(failure, indent=1))
        status = "failed"
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(log_fd)
        for fd in saved:
            os.close(fd)
    return task.task_id, status, seconds


def _cpu_seconds() -> float:
    """CPU time (user + system, s) of this process and its finished children (FEFF's stages)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def result_exists(workdir: str | Path, preset: FeffPreset, task: SiteTask) -> bool:
    return (Path(workdir) / preset.name / "results" / f"{task.task_id}.json").exists()


def _todo(tasks, workdir: Path, preset: FeffPreset, retry_failed: bool, report) -> list[SiteTask]:
    """Tasks without a result (and without a recorded failure unless ``retry_failed``)."""
    base = workdir / preset.name
    todo: list[SiteTask] = []
    for task in tasks:
        failed_marker = base / "failures" / f"{task.task_id}.json"
        if result_exists(workdir, preset, task) or (failed_marker.exists() and not retry_failed):
            report.skipped += 1
        else:
            failed_marker.unlink(missing_ok=True)
            todo.append(task)
    return todo


def run_simulations(
    tasks: Sequence[SiteTask],
    workdir: str | Path,
    preset: str | FeffPreset = "fast",
    workers: int = 2,
    retry_failed: bool = False,
    progress: bool = True,
    executor: str = "local",
    address: str | None = None,
) -> SimulationReport:
    """Run FEFF for every task not yet done, ``workers`` sites at a time.

    ``executor`` is ``local`` (a process pool here) or ``dask`` (a Dask distributed cluster:
    ``address`` of a running scheduler, else a ``LocalCluster`` of ``workers`` processes); see
    ``xas_data.simulation.executors``, which also writes Slurm array jobs. Every executor runs
    the same ``run_site`` into the same folder layout, so results are identical and resumable.
    Finished sites are skipped; failures are written to ``<preset>/failures`` and counted.
    A progress bar (tqdm, with ETA) goes to stderr and one line per site to ``progress.log``.
    """
    from xas_data.simulation.executors import site_results

    preset = get_preset(preset) if isinstance(preset, str) else preset
    workdir = Path(workdir)
    base = workdir / preset.name
    for sub in ("runs", "results", "failures"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    report = SimulationReport()
    todo = _todo(tasks, workdir, preset, retry_failed, report)
    if not todo:
        return report

    from tqdm import tqdm

    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"FEFF {preset.name}", unit="site", disable=not progress)
    with open(base / "progress.log", "a") as log:
        for task, status, seconds in site_results(
            executor, todo, workdir, preset, workers, address
        ):
            if status == "done":
                report.done += 1
                report.site_seconds.append(seconds)
            else:
                report.failed += 1
                report.failures.append(task.task_id)
            bar.update(1)
            _log_progress(log, report, len(todo), task.task_id, status, seconds, start)
    bar.close()
    report.seconds = time.perf_counter() - start
    if report.done == 0 and report.failed > 0 and report.failed == len(todo):
        # every site failed: most likely a setup problem rather than bad structures
        first = json.loads((base / "failures" / f"{report.failures[0]}.json").read_text())
        raise SimulationError(
            f"all {report.failed} FEFF runs failed; first error: {first.get('error')}; "
            f"see {base / 'failures'}"
        )
    return report


def _log_progress(log, report, n_todo, task_id, status, seconds, start) -> None:
    """One line per finished site with the ETA (minutes) into ``progress.log``."""
    n_finished = report.done + report.failed
    eta = (time.perf_counter() - start) / n_finished * (n_todo - n_finished)
    log.write(
        f"{time.strftime('%H:%M:%S')} {n_finished}/{n_todo} {task_id} {status} "
        f"{seconds:.1f}s eta {eta / 60:.1f} min\n"
    )
    log.flush()


def record_worker_death(workdir: str | Path, preset: FeffPreset, task: SiteTask, exc) -> None:
    """Failure record of a task whose worker process died (no FEFF log to show)."""
    atomic_write_text(
        Path(workdir) / preset.name / "failures" / f"{task.task_id}.json",
        json.dumps(asdict(task) | {"task_id": task.task_id, "error": f"worker died: {exc}"}),
    )
