"""One writer at a time per store, and what interrupted or failed writers leave behind.

The race and the kill are forced with events, not the clock: the first writer pauses inside
its write (after copying the store) until the test releases it.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from xas_testkit import Background, wait_for

from xas_data.cli import app
from xas_data.errors import BusyError, XASDataError
from xas_data.experiment_ingest import ingest_measured_spectra
from xas_data.io_utils import exclusive_lock, recover_directory
from xas_data.measured import MeasuredSpectrum
from xas_data.store import XASDataset, lock_path, store_writer

pytest.importorskip("larixite")


def spectra(tag: str, n: int) -> list[MeasuredSpectrum]:
    """``n`` synthetic Cu K-edge spectra named ``cu-<tag><k>`` (no formula: stored unmatched)."""
    import numpy as np

    from xas_data.measured import MeasuredSpectrum

    out = []
    for k in range(n):
        e = np.concatenate([np.arange(8800.0, 8960.0, 4.0), np.arange(8960.0, 9500.0, 0.5)])
        mu = 0.3 + (0.5 + np.arctan((e - 8975.0 - 0.3 * k) / 1.5) / np.pi)
        name = f"cu-{tag}{k}"
        meta = {"source_file": name + ".txt"}
        out.append(MeasuredSpectrum(e, mu, "Cu", name=name, formula="", metadata=meta))
    return out


# argv: store, tag, n spectra, sync folder, pause (1: wait for sync/release inside the write)
_WRITER = (
    "from __future__ import annotations\n"
    + inspect.getsource(spectra)
    + textwrap.dedent(
        """
    import sys, time
    from pathlib import Path
    from xas_data.errors import XASDataError
    from xas_data.experiment_ingest import ingest_measured_spectra
    from xas_data.store import XASDataset

    store, tag, n, sync, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5] == "1"
    add = XASDataset.add_materials

    def paused_add(self, *args, **kwargs):  # runs inside the write, after the store was copied
        (sync / f"writing-{tag}").touch()
        deadline = time.monotonic() + 600
        while pause and not (sync / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return add(self, *args, **kwargs)

    XASDataset.add_materials = paused_add
    try:
        report = ingest_measured_spectra(spectra(tag, n), store, keep_unmatched=True, link_minerals=False)
    except XASDataError as exc:
        print("ERROR", exc, flush=True)
        sys.exit(2)
    print("STORED", sum(report.counts.values()), flush=True)
    """
    )
)


def _ids(store: Path) -> set[str]:
    return {str(m) for m in XASDataset.open(store).material_ids}


def _base_store(path: Path) -> set[str]:
    ingest_measured_spectra(spectra("base", 1), path, keep_unmatched=True)
    return _ids(path)


def _writer(store: Path, tag: str, sync: Path, pause: bool, log: Path) -> Background:
    cmd = [sys.executable, "-c", _WRITER, store, tag, "3", sync, "1" if pause else "0"]
    return Background(cmd, log)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_concurrent_ingests_lose_nothing(tmp_path: Path) -> None:
    """The issue's race: a second ingest while the first one writes. Before the lock both
    returned 0 and the second one's spectra were silently overwritten by the first rename."""
    store, sync = tmp_path / "s.zarr", tmp_path / "sync"
    sync.mkdir()
    before = _base_store(store)
    first = _writer(store, "a", sync, True, tmp_path / "a.log")
    try:
        wait_for(lambda: (sync / "writing-a").exists(), "writer a inside its write", process=first)
        second = _writer(store, "b", sync, False, tmp_path / "b.log")
        rc_second = second.wait("writer b to finish")
        (sync / "release").touch()
        rc_first = first.wait("writer a to finish")
    finally:
        first.stop(grace_s=5)
    assert rc_first == 0, first.tail()
    stored = _ids(store)
    if rc_second == 0:  # it claims success: its spectra must be there
        assert len(stored - before) == 6, f"a writer's spectra were lost: {sorted(stored)}"
    else:
        assert rc_second == 2, second.tail()
        assert len(stored - before) == 3
        out = second.output()
        assert f"store {store} is busy (another writer, pid {first.pid}?)" in out, out
        assert "retry when it finishes" in out
    assert sorted(p.name for p in tmp_path.glob(".s.zarr*")) == [".s.zarr.lock"]


def test_killed_ingest_leaves_the_old_store_and_is_cleaned_up(tmp_path: Path) -> None:
    store, sync = tmp_path / "s.zarr", tmp_path / "sync"
    sync.mkdir()
    before = _base_store(store)
    writer = _writer(store, "a", sync, True, tmp_path / "a.log")
    try:
        wait_for(lambda: (sync / "writing-a").exists(), "writer a inside its write", process=writer)
        writer.kill()
        writer.wait("the killed writer to exit")
    finally:
        writer.stop(grace_s=5)
    assert _ids(store) == before  # the old state, complete
    assert (tmp_path / f".s.zarr.ingest-{writer.pid}").is_dir()  # its half-written copy
    ingest_measured_spectra(spectra("b", 2), store, keep_unmatched=True)
    assert len(_ids(store) - before) == 2
    assert sorted(p.name for p in tmp_path.glob(".s.zarr*")) == [".s.zarr.lock"]


def test_kill_between_the_two_renames_is_undone(tmp_path: Path) -> None:
    """``replace_directory`` moves the store aside, then renames the new one in: a kill in
    between left no store at all; the next writer puts the old one back and extends it."""
    store = tmp_path / "s.zarr"
    before = _base_store(store)
    os.replace(store, tmp_path / f".s.zarr.old-{_dead_pid()}")
    ingest_measured_spectra(spectra("b", 1), store, keep_unmatched=True)
    assert before < _ids(store) and len(_ids(store)) == 2
    assert sorted(p.name for p in tmp_path.glob(".s.zarr*")) == [".s.zarr.lock"]


def test_recover_leaves_live_writers_alone(tmp_path: Path) -> None:
    target = tmp_path / "s.zarr"
    target.mkdir()
    live = tmp_path / f".s.zarr.ingest-{os.getppid()}"
    dead = tmp_path / f".s.zarr.ingest-{_dead_pid()}"
    live.mkdir()
    dead.mkdir()
    assert recover_directory(target) == [dead]
    assert live.is_dir() and not dead.exists()


def test_busy_message_names_the_holder(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    with store_writer(store):
        assert lock_path(store).read_text().strip() == str(os.getpid())
        child = subprocess.run(
            [sys.executable, "-c", "import sys; from xas_data.store import store_writer\n"
             "with store_writer(sys.argv[1]): pass", str(store)],
            capture_output=True, text=True,
        )  # fmt: skip
    assert child.returncode != 0
    assert f"store {store} is busy (another writer, pid {os.getpid()}?)" in child.stderr
    with exclusive_lock(lock_path(store), "store x"):  # released: free again
        pass


def test_lock_wait_times_out_with_busy_error(tmp_path: Path) -> None:
    lock = tmp_path / ".z.lock"
    held = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from xas_data.io_utils import exclusive_lock\n"
         "with exclusive_lock(sys.argv[1], 'zoo z'):\n"
         "    print('held', flush=True); sys.stdin.read()", str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert held.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=rf"zoo z is busy \(another writer, pid {held.pid}\?\)"):
            with exclusive_lock(lock, "zoo z", timeout_s=0.2):
                pass
    finally:
        held.stdin.close()
        held.wait(timeout=60)


# --------------------------------------------------------------------------- failed ingests


def test_failed_ingest_leaves_no_store(tmp_path: Path) -> None:
    with pytest.raises(XASDataError, match="no spectra to ingest"):
        ingest_measured_spectra([], tmp_path / "e.zarr")
    energy = np.linspace(8800.0, 9500.0, 400)
    wrong_edge = MeasuredSpectrum(energy, 0.3 + (energy > 9300), "Cu", name="bad", formula="CuO")
    report = ingest_measured_spectra([wrong_edge], tmp_path / "f.zarr")
    assert [r.status for r in report.rows] == ["failed"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == []


def test_cli_ingest_of_an_empty_list_leaves_no_store(tmp_path: Path) -> None:
    source = tmp_path / "empty.json"
    source.write_text("[]\n")
    store = tmp_path / "e.zarr"
    result = CliRunner().invoke(app, ["ingest-measured", str(source), "--out", str(store)])
    assert result.exit_code == 2, result.output
    assert "no spectra to ingest" in result.output
    assert not store.exists()
