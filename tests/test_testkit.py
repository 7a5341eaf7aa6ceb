"""The test helpers of tests/support/xas_testkit.py: waits that fail clearly instead of hanging
or carrying on, and process groups that stop as a whole."""

from __future__ import annotations

import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import xas_testkit
from xas_testkit import Background, http_ok, run_logged, wait_all, wait_for

from xas_train.distributed import free_port

# the parent prints and sleeps; its child ignores SIGTERM, shares the log and sleeps too
_PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], sys.argv[1]])
    print("parent up", flush=True)
    time.sleep(3600)
    """
)
_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("child up", flush=True)
    tmp = Path(sys.argv[1] + ".tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, sys.argv[1])
    time.sleep(3600)
    """
)


def _dead(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_wait_for_returns_the_value_once_the_event_happens(tmp_path):
    flag = tmp_path / "flag"
    timer = threading.Timer(0.2, flag.write_text, args=("ready",))
    timer.start()
    try:
        assert wait_for(lambda: flag.is_file() and flag.read_text(), "the flag") == "ready"
    finally:
        timer.cancel()


def test_wait_for_fails_naming_the_event_when_it_never_happens(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("starting\nstill creating tables\n")
    began = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as failure:
        wait_for(lambda: (tmp_path / "never").exists(), "the file 'never'", 0.3, log=log)
    assert time.monotonic() - began >= 0.3  # it did wait for the deadline
    message = str(failure.value)
    assert "gave up after 0.3 s waiting for the file 'never'" in message
    assert "still creating tables" in message  # the log's tail says why


@pytest.mark.timeout(300)
def test_wait_for_fails_at_once_when_the_watched_process_dies(tmp_path):
    proc = Background(
        [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"], tmp_path / "log"
    )
    with pytest.raises(
        pytest.fail.Exception, match=r"(?s)exited with code 3 before the port.*bad config"
    ):
        wait_for(lambda: False, "the port", process=proc)  # the 600 s deadline never matters


@pytest.mark.timeout(300)
def test_stop_ends_the_whole_group_even_children_that_ignore_sigterm(tmp_path):
    pid_file = tmp_path / "child.pid"
    server = Background(
        [sys.executable, "-c", _PARENT, str(pid_file), _CHILD], tmp_path / "out.log"
    )
    child_pid = int(
        wait_for(lambda: pid_file.is_file() and pid_file.read_text(), "the child's pid")
    )
    wait_for(lambda: "parent up" in server.output(), "the parent's line in the log")
    assert not _dead(child_pid)
    server.stop(grace_s=1)
    assert server.returncode is not None
    assert _dead(child_pid), "the child that ignores SIGTERM survived stop()"
    assert server.live_members() == []
    assert "child up" in server.output()  # both wrote to the file; nobody blocks on a pipe


class _ClockAfter:
    """``time`` for xas_testkit whose clock stands still until ``event()`` and then jumps a
    day ahead: a deadline passes exactly when the event happened, however slow the machine."""

    def __init__(self, event):
        self.event, self.jumped = event, False

    def monotonic(self) -> float:
        self.jumped = self.jumped or bool(self.event())
        return time.monotonic() + 86400.0 if self.jumped else 0.0

    sleep = staticmethod(time.sleep)


@pytest.mark.timeout(300)
def test_run_logged_fails_a_hung_command_and_kills_what_it_started(tmp_path, monkeypatch):
    pid_file, log = tmp_path / "child.pid", tmp_path / "hung.log"
    up = lambda: pid_file.is_file() and "parent up" in log.read_text()  # noqa: E731
    monkeypatch.setattr(xas_testkit, "time", _ClockAfter(up))
    with pytest.raises(
        pytest.fail.Exception, match=r"(?s)gave up after 3 s waiting for the hung.*parent up"
    ):
        run_logged(
            [sys.executable, "-c", _PARENT, str(pid_file), _CHILD],
            log,
            3,
            what="the hung command to finish",
        )
    # the child ignored SIGTERM and shared the output: a pipe would have blocked the read
    assert _dead(int(pid_file.read_text())), "run_logged left the child running"


def test_run_logged_returns_the_output_and_reports_failures(tmp_path):
    done = run_logged(
        [sys.executable, "-c", "print('hello'); import sys; print('err', file=sys.stderr)"],
        tmp_path / "ok.log",
    )
    assert done.returncode == 0 and "hello" in done.stdout and "err" in done.stdout
    with pytest.raises(pytest.fail.Exception, match=r"(?s)exited with code 2.*traceback here"):
        run_logged(
            [sys.executable, "-c", "print('traceback here'); raise SystemExit(2)"],
            tmp_path / "bad.log",
        )
    unchecked = run_logged(
        [sys.executable, "-c", "raise SystemExit(2)"], tmp_path / "b2.log", check=False
    )
    assert unchecked.returncode == 2
    split = run_logged(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
        tmp_path / "split.out",
        stderr_log=tmp_path / "split.err",
    )
    assert (split.stdout, split.stderr) == ("out\n", "err\n")


def test_http_ok_is_false_while_nothing_listens():
    assert http_ok(f"http://127.0.0.1:{free_port()}/health", timeout_s=2)() is False


@pytest.mark.timeout(300)
def test_wait_all_stops_the_peers_of_a_failed_process(tmp_path):
    waiter = Background([sys.executable, "-c", "import time; time.sleep(3600)"], tmp_path / "a")
    failing = Background([sys.executable, "-c", "raise SystemExit(5)"], tmp_path / "b")
    codes = wait_all([waiter, failing], "both to finish")  # the 600 s deadline never matters
    assert codes[1] == 5 and codes[0] is not None  # the peer was stopped, not waited for
    assert waiter.live_members() == []
    ok = [Background([sys.executable, "-c", "pass"], tmp_path / f"ok{i}") for i in range(2)]
    assert wait_all(ok, "both to finish") == [0, 0]


@pytest.mark.timeout(300)
def test_stop_ends_a_stopped_process_without_waiting_out_the_grace(tmp_path):
    proc = Background([sys.executable, "-c", "import time; time.sleep(3600)"], tmp_path / "log")
    proc.kill(signal.SIGSTOP)
    wait_for(lambda: proc.state() == "T", "the process to be stopped")
    assert proc.stop(grace_s=3600) == -signal.SIGTERM  # SIGCONT lets the SIGTERM act
    assert proc.state() is None
