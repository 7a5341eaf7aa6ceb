"""Waiting on events and running subprocesses in tests without racing the clock or hanging.

Every test folder can import this module (the pytest settings put ``tests/support`` on
``sys.path``)::

    from xas_testkit import Background, run_logged, wait_for

* ``wait_for(predicate, what)`` polls until ``predicate()`` is truthy and returns its value. It
  fails the test, naming what it awaited, when the deadline passes or when a watched process
  exits first; it never carries on as if the event had happened.
* ``Background(cmd, log)`` starts a process in its own process group with its output going to
  a file (never a pipe that a surviving grandchild could hold open); ``stop()`` ends the whole
  group, SIGTERM first, SIGKILL after a grace period.
* ``run_logged(cmd, log)`` runs a command to completion that way: a hung command fails the
  test with the tail of its log, and stray children are killed with it.

Deadlines are generous (``XAS_TEST_DEADLINE_S``, default 600 s) so that a loaded machine makes
tests slower, not red. The per-test pytest timeout (``timeout`` in the pytest settings) is the
last line of defence against a hang that none of these deadlines covers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

#: Default deadline of every wait, long enough for a 2-core machine at load 30.
DEADLINE_S = float(os.environ.get("XAS_TEST_DEADLINE_S", "600"))


def _tail_text(log: Path | None, n_chars: int = 3000) -> str:
    if log is None or not Path(log).is_file():
        return ""
    with open(log, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4 * n_chars))
        text = f.read().decode("utf-8", errors="replace")
    return text[-n_chars:]


def wait_for(
    predicate: Callable[[], T],
    what: str,
    deadline_s: float | None = None,
    *,
    process: Background | subprocess.Popen | None = None,
    log: Path | None = None,
    interval_s: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that.

    Fails the test with ``what`` in the message when ``deadline_s`` (default ``DEADLINE_S``)
    passes, or when ``process`` exits before the event; ``log`` (or the log of a
    ``Background`` process) is quoted in the failure.
    """
    limit = DEADLINE_S if deadline_s is None else deadline_s
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        exited = process is not None and process.poll() is not None
        if exited or time.monotonic() > deadline:
            value = predicate()  # the event may have come with the exit or at the last moment
            if value:
                return value
            if log is None and isinstance(process, Background):
                log, tail = process.log, process.tail()
            else:
                tail = _tail_text(log)
            tail = f"\n--- last output ({log}) ---\n{tail}" if tail else ""
            if exited:
                pytest.fail(
                    f"the process exited with code {process.returncode} before {what}{tail}",
                    pytrace=False,
                )
            pytest.fail(f"gave up after {limit:g} s waiting for {what}{tail}", pytrace=False)
        time.sleep(interval_s)


def http_ok(url: str, timeout_s: float = 5.0) -> Callable[[], bool]:
    """A predicate: ``GET url`` answers 200 (connection errors and timeouts count as no)."""
    import urllib.request

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                return resp.status == 200
        except OSError:  # refused, reset, timed out, HTTP errors
            return False

    return check


def _live_group_members(pgid: int) -> list[int]:
    """Pids of the not-yet-dead (not zombie) processes of process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():  # no procfs: ask the kernel whether the group still exists
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Background:
    """A command running in its own process group, its stdout and stderr going to ``log``
    (stderr to ``stderr_log`` instead when given)."""

    def __init__(
        self,
        cmd: Sequence[str | os.PathLike],
        log: Path,
        *,
        stderr_log: Path | None = None,
        **popen_kw,
    ) -> None:
        self.cmd = [str(c) for c in cmd]
        self.log = Path(log)
        self.stderr_log = None if stderr_log is None else Path(stderr_log)
        for path in (self.log, self.stderr_log):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as files:  # the child keeps its own copies of the files
            out = files.enter_context(open(self.log, "ab"))
            err = (
                subprocess.STDOUT
                if self.stderr_log is None
                else files.enter_context(open(self.stderr_log, "ab"))
            )
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                **popen_kw,
            )
        self.pgid = self.proc.pid

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def errors(self) -> str:
        """What went to ``stderr_log`` ("" when stderr shares ``log``)."""
        if self.stderr_log is None or not self.stderr_log.is_file():
            return ""
        return self.stderr_log.read_text(errors="replace")

    def tail(self, n_chars: int = 3000) -> str:
        tail = _tail_text(self.log, n_chars)
        if self.stderr_log is not None:
            tail += f"\n--- stderr ({self.stderr_log}) ---\n" + _tail_text(self.stderr_log, n_chars)
        return tail

    def state(self) -> str | None:
        """The leader's scheduler state from ``/proc`` ("R", "S", "T" when stopped, "Z"...),
        ``None`` once it is reaped."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        return stat.rsplit(")", 1)[1].split()[0]

    def live_members(self) -> list[int]:
        """Pids of the group's processes that still run (the leader once reaped excluded)."""
        self.proc.poll()  # reap the leader so that it does not count as a zombie member
        return _live_group_members(self.pgid)

    def wait(self, what: str | None = None, deadline_s: float | None = None) -> int:
        """Wait for the command to exit; fail the test (after killing the group) if it has
        not within the deadline."""
        try:
            wait_for(
                lambda: self.proc.poll() is not None,
                what or f"{' '.join(self.cmd)[:200]} to finish",
                deadline_s,
                process=self,
                interval_s=0.1,
            )
        except BaseException:
            self.stop(grace_s=5)
            raise
        return self.proc.returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process of the group (default: SIGKILL) without waiting."""
        if self.live_members():
            _signal_group(self.pgid, sig)

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM the whole group, SIGKILL whatever still runs after ``grace_s``, reap the
        leader; returns its exit code. Safe to call more than once."""
        if self.live_members():
            _signal_group(self.pgid, signal.SIGTERM)
            _signal_group(self.pgid, signal.SIGCONT)  # a stopped process handles TERM only then
            deadline = time.monotonic() + grace_s
            while self.live_members() and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.live_members():  # never signal a group that is gone (its id may be reused)
            _signal_group(self.pgid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while self.live_members() and time.monotonic() < deadline:  # SIGKILL takes a moment
                time.sleep(0.05)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass  # unkillable (uninterruptible sleep): leave it rather than hang the run
        return self.proc.returncode

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_all(procs: Sequence[Background], what: str, deadline_s: float | None = None) -> list:
    """Wait until every process has exited, or one has failed (its peers may be waiting for
    it: they are stopped); fails the test after the deadline. Returns the exit codes (``None``
    for a peer stopped early) for the caller to check, with ``tail()`` for the message."""
    try:
        wait_for(
            lambda: all(p.poll() == 0 for p in procs) or any(p.poll() for p in procs),
            what,
            deadline_s,
            interval_s=0.1,
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.stop(grace_s=5)
    return [p.returncode for p in procs]


def run_logged(
    cmd: Sequence[str | os.PathLike],
    log: Path,
    deadline_s: float | None = None,
    *,
    check: bool = True,
    what: str | None = None,
    stderr_log: Path | None = None,
    **popen_kw,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` to completion in its own process group, output to ``log``.

    Fails the test when it outlasts the deadline (default ``DEADLINE_S``) or, with ``check``,
    exits non-zero, quoting the log's tail. Processes it left behind are killed. Returns a
    ``CompletedProcess`` whose ``stdout`` is the whole log (stdout and stderr merged unless
    ``stderr_log`` is given: then ``stderr`` is that file's text).
    """
    bg = Background(cmd, log, stderr_log=stderr_log, **popen_kw)
    try:
        returncode = bg.wait(what, deadline_s)
    finally:
        bg.stop(grace_s=5)
    if check and returncode != 0:
        pytest.fail(
            f"{' '.join(bg.cmd)[:300]} exited with code {returncode}\n"
            f"--- last output ({log}) ---\n{bg.tail()}",
            pytrace=False,
        )
    return subprocess.CompletedProcess(bg.cmd, returncode, bg.output(), bg.errors())
