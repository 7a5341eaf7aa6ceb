"""Atomic file writes and one-writer-at-a-time locks.

* ``atomic_write_bytes``/``atomic_write_text``: write to a temporary sibling, then rename over
  the target, so readers see the old or the complete new file.
* ``replace_directory``: rename a fully written folder over a target folder; the old one is
  moved aside first (``.<name>.old-<pid>``) and deleted only after the new one is in place.
* ``exclusive_lock``: a ``filelock`` lock whose file records the holder's pid, failing with a
  one-line :class:`~xas_data.errors.BusyError` naming that pid when another writer holds it.
* ``recover_directory``: run under the lock, it finishes or undoes what a killed writer left
  (restores ``.<name>.old-<pid>`` when the kill came between the two renames, removes the
  temporary ``.<name>.<word>-<pid>`` folders of dead processes).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xas_data.errors import BusyError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (e.g. ``0o022``), read without changing it for other threads."""
    try:  # Linux: no side effect at all
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def umask_mode(executable: bool = False) -> int:
    """The mode ``open()`` (or ``chmod +x`` on it) would give a new file under the umask."""
    return (0o777 if executable else 0o666) & ~current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the complete new one.

    The file gets the mode a plain ``open()`` would give under the umask (``mkstemp``'s
    temporary file is 0600), so a zoo or store written on a shared cluster stays readable to
    the group.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of ``atomic_write_bytes`` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def exchange_paths(a: str | Path, b: str | Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False, changing nothing, where the OS or file system cannot do it.
    """
    import ctypes
    import errno
    import sys

    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_directory(tmp_dir: str | Path, target: str | Path) -> None:
    """Move a fully written directory over ``target``; the old one is removed only afterwards.

    Where the OS can, the two folders are swapped in one atomic step (:func:`exchange_paths`),
    so readers and a kill see the old or the new folder, never none; ``tmp_dir`` then holds
    the old one until it is deleted. Elsewhere the old folder is first renamed aside to
    ``.<name>.old-<pid>``: a kill between the two renames leaves no ``target``, and
    :func:`recover_directory` (run by the next writer under the lock) renames it back.
    """
    tmp_dir, target = Path(tmp_dir), Path(target)
    if target.exists() and exchange_paths(tmp_dir, target):
        shutil.rmtree(tmp_dir, ignore_errors=True)
        return
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, backup)
    try:
        os.replace(tmp_dir, target)
    except BaseException:
        if backup is not None:
            os.replace(backup, target)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one owned by another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(target: Path) -> Iterator[tuple[Path, str, int]]:
    """``(path, word, pid)`` of the ``.<name>.<word>-<pid>`` siblings of ``target``."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.([a-z]+)-(\d+)$")
    if not target.parent.is_dir():
        return
    for path in target.parent.iterdir():
        match = pattern.match(path.name)
        if match:
            yield path, match.group(1), int(match.group(2))


def recover_directory(target: str | Path) -> list[Path]:
    """Clean up after writers of ``target`` that died; returns what was restored or removed.

    Call it while holding ``target``'s :func:`exclusive_lock`. A ``.<name>.old-<pid>`` of a dead
    process is renamed back to ``target`` when ``target`` is missing (the writer was killed
    between the two renames of :func:`replace_directory`) and deleted otherwise; every other
    ``.<name>.<word>-<pid>`` folder (a half-written copy) of a dead process is deleted.
    Folders of live processes are left alone.
    """
    target = Path(target)
    done = []
    for path, word, pid in sorted(_leftovers(target)):
        if pid == os.getpid() or pid_alive(pid):
            continue
        if word == "old" and not target.exists():
            os.replace(path, target)
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        done.append(path)
    return done


def _lock_holder(lock_path: Path) -> str:
    try:
        text = lock_path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return "?"
    return text if text.isdigit() else "?"


def _record_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)


@contextmanager
def exclusive_lock(lock_path: str | Path, what: str, timeout_s: float = 0.0) -> Iterator[None]:
    """Hold the ``filelock`` lock ``lock_path`` (its file records the holder's pid).

    Args:
        lock_path: the lock file (created with its folder when missing; never deleted).
        what: the locked thing for the message, e.g. ``"store /data/x.zarr"``.
        timeout_s: how long to wait for another writer; 0 = one attempt.

    Raises:
        BusyError: ``"<what> is busy (another writer, pid N?) — retry when it finishes"``.
    """
    from filelock import FileLock, Timeout

    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path, timeout=timeout_s, on_acquired=_record_pid, preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout:
        raise BusyError(
            f"{what} is busy (another writer, pid {_lock_holder(lock_path)}?) — retry when it "
            "finishes"
        ) from None
    try:
        yield
    finally:
        lock.release()
