"""MLflow outages cannot stall training (issue 16, item 6).

A closed port and a server that accepts connections but never answers (a socket thread in
the test) must fail the run before any data is read, within the short request timeout, with a
one-line error naming the URI and the fix; a server that goes silent mid-run must not hold up
training: the first request that times out ends tracking with a warning and the run finishes.
The time bounds below are generous (the old client retried for 8 to 16 minutes).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from xas_train.config import load_config
from xas_train.errors import TrainError
from xas_train.tracking import Tracker
from xas_train.trainer import train

GENEROUS_S = 120.0  # far above the 2-10 s timeouts, far below the old 8+ minutes


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte back."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)
            self.accepted += 1
            self.connected.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for conn in self._held:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


@pytest.fixture
def no_heavy_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting the process group / DeepSpeed or reading the training data fails the test:
    the tracking check must come first."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("heavy set-up ran before the tracking server was checked")

    monkeypatch.setattr("xas_train.trainer.setup_distributed", refuse)
    monkeypatch.setattr("xas_train.trainer.load_training_data", refuse)


def _tracked_config(write_config, name: str, uri: str, **training):
    return load_config(
        write_config(
            name,
            training={"max_epochs": 3, **training},
            mlflow={"enabled": True, "tracking_uri": uri, "experiment": "outage"},
        )
    )


def test_closed_port_fails_before_set_up_naming_uri_and_fix(
    write_config, closed_port_url, no_heavy_setup, monkeypatch
) -> None:
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    cfg = _tracked_config(write_config, "closed", closed_port_url)
    t0 = time.monotonic()
    with pytest.raises(TrainError) as info:
        train(cfg, progress=None)
    elapsed = time.monotonic() - t0
    message = str(info.value)
    assert closed_port_url in message and "mlflow.enabled: false" in message
    assert "\n" not in message
    assert elapsed < GENEROUS_S, f"a refused connection took {elapsed:.0f} s to report"


def test_silent_server_fails_before_set_up_within_the_timeout(
    write_config, silent_server, no_heavy_setup, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    cfg = _tracked_config(write_config, "silent", silent_server.url)
    t0 = time.monotonic()
    with pytest.raises(TrainError, match="is not answering \\(timeout 2 s") as info:
        train(cfg, progress=None)
    elapsed = time.monotonic() - t0
    assert silent_server.connected.is_set()  # it did try the server
    assert silent_server.url in str(info.value)
    assert elapsed < GENEROUS_S, f"a silent server held the set-up for {elapsed:.0f} s"


def test_requests_to_a_silent_server_end_tracking_after_one_timeout(
    silent_server, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker = Tracker(silent_server.url, "outage")
    tracker.run_id = "0123456789abcdef"  # as if the server had answered start() and then hung
    with caplog.at_level(logging.WARNING, logger="xas_train.tracking"):
        t0 = time.monotonic()
        tracker.log_metrics({"val_loss": 1.0}, step=1, flush=True)
        elapsed = time.monotonic() - t0
    assert elapsed < GENEROUS_S
    assert tracker.failure is not None and "log metrics" in tracker.failure
    assert "training continues without tracking" in caplog.text
    tried = silent_server.accepted
    # once failed, nothing else goes to the server and nothing waits on it
    tracker.log_metrics({"val_loss": 0.5}, step=2, flush=True)
    tracker.log_artifacts(Path("."), "model")
    assert tracker.register("m", "model") is None
    tracker.end("FINISHED")
    assert silent_server.accepted == tried


def test_training_finishes_when_the_server_goes_silent_mid_run(
    write_config, silent_server, monkeypatch, caplog
) -> None:
    """The server answered the check and the run's creation, then hangs: every epoch and the
    end of the run go on; the results are saved locally and the warning says why."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setattr(Tracker, "check", lambda self: None)

    def start(self, run_name, tags, parent_run_id=None, resume_run_id=None):
        self.run_id = "0123456789abcdef"
        return self.run_id

    monkeypatch.setattr(Tracker, "start", start)
    epochs: list[int] = []
    cfg = _tracked_config(write_config, "goes-silent", silent_server.url, max_epochs=4)
    with caplog.at_level(logging.WARNING, logger="xas_train.tracking"):
        t0 = time.monotonic()
        result = train(cfg, progress=None, epoch_callback=lambda e, _v: epochs.append(e))
        elapsed = time.monotonic() - t0
    assert epochs == [1, 2, 3, 4] and result.epochs_run == 4
    assert (Path(result.run_dir) / "result.json").is_file()
    assert (Path(result.model_dir) / "model.safetensors").is_file()
    assert silent_server.connected.is_set()
    assert "training continues without tracking" in caplog.text
    assert elapsed < 2 * GENEROUS_S, f"a silent server held training for {elapsed:.0f} s"
