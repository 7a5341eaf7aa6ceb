"""MLflow tracking for training runs, through ``MlflowClient`` (no global active run).

Each run logs its params (the flattened resolved config), the config as ``config.yaml``,
per-epoch metrics (buffered and sent in batches so that a 1000-epoch run costs a few requests),
tags (recipe, elements, fidelity, parent run), the final checkpoint folder as an artifact, and
registers the model in the MLflow model registry. Only rank 0 talks to MLflow.

Tracking never stalls training:

* :meth:`Tracker.check` asks a tracking server for the experiment before any heavy set-up
  (the trainer calls it before reading data or starting DeepSpeed), with one try and a short
  deadline (``MLFLOW_HTTP_REQUEST_TIMEOUT``, default :data:`DEFAULT_TIMEOUT_S` here instead of
  MLflow's 120 s); a server that is down, unreachable or silent is a one-line
  :class:`TrainError` naming the URI and the fix.
* Every later request has that timeout and at most ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
  (default :data:`DEFAULT_MAX_RETRIES` instead of MLflow's 7 with exponential back-off). The
  first request that fails ends tracking for the run with a warning: training goes on and
  saves its results locally, and no later epoch waits on the server again.

Both variables are MLflow's own (set them to change the limits); a value already in the
environment wins. Tracking is switched off with ``mlflow.enabled: false`` in the run config
(or the override ``mlflow.enabled=false``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from xas_train.errors import TrainError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds one MLflow HTTP request may take (``MLFLOW_HTTP_REQUEST_TIMEOUT`` overrides).
DEFAULT_TIMEOUT_S = 10
#: Retries of a failed MLflow HTTP request (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` overrides).
DEFAULT_MAX_RETRIES = 1
TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"
RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
FIX = "start the server, fix mlflow.tracking_uri, or set mlflow.enabled: false to train without it"


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names a tracking server (http/https/databricks), not a local store."""
    return urlparse(uri).scheme in ("http", "https", "databricks")


def request_timeout_s() -> float:
    """The per-request MLflow timeout in seconds (``$MLFLOW_HTTP_REQUEST_TIMEOUT``)."""
    try:
        return max(1.0, float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    except ValueError:
        raise TrainError(
            f"{TIMEOUT_ENV}={os.environ[TIMEOUT_ENV]!r} is not a number of seconds; "
            "set it to an integer such as 10"
        ) from None


def _short(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message`` (cut to ``limit`` characters)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def call_with_deadline(fn: Callable[[], T], seconds: float, what: str) -> T:
    """``fn()`` in a daemon thread; ``TimeoutError`` when it has not returned after
    ``seconds`` (the thread is left to finish or die with the process)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"xas-train {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}} -> {"a.b": "1"}`` (values stringified, 500 chars max)."""
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)[:500]
    return out


class Tracker:
    """One MLflow run (or a no-op when ``enabled`` is False, e.g. on ranks other than 0)."""

    def __init__(self, tracking_uri: str, experiment: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_id: str | None = None
        self.failure: str | None = None
        """Why tracking stopped mid-run (the first failed request), else None."""
        self._pending: list[Any] = []
        self._client = None
        if enabled and is_remote(tracking_uri):
            os.environ.setdefault(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
            os.environ.setdefault(RETRIES_ENV, str(DEFAULT_MAX_RETRIES))

    def check(self) -> None:
        """Fail fast when the tracking server cannot serve this run: one request for the
        experiment (no retries) that must answer within the request timeout.

        Raises:
            TrainError: one line naming the URI, what went wrong and the fix.
        """
        if not self.enabled or not is_remote(self.tracking_uri):
            return
        timeout = request_timeout_s()
        client = self.client  # importing mlflow takes seconds; it is not the server's time
        saved = os.environ.get(RETRIES_ENV)
        os.environ[RETRIES_ENV] = "0"  # one try: a refused connection fails at once
        try:
            call_with_deadline(
                lambda: client.get_experiment_by_name(self.experiment),
                timeout + 5.0,  # requests' own timeout fires first; this bounds DNS and TLS
                "MLflow check",
            )
        except Exception as exc:
            raise TrainError(
                f"MLflow tracking server {self.tracking_uri!r} is not answering (timeout "
                f"{timeout:g} s; {_short(exc)}); {FIX}"
            ) from None
        finally:
            if saved is None:
                os.environ.pop(RETRIES_ENV, None)
            else:
                os.environ[RETRIES_ENV] = saved

    def _send(self, what: str, fn: Callable[[], T]) -> T | None:
        """Run one request of a started run; the first failure ends tracking with a warning
        (the run goes on untracked) instead of failing or stalling training."""
        if not self.enabled or self.run_id is None or self.failure is not None:
            return None
        try:
            return fn()
        except Exception as exc:
            self.failure = f"{what}: {_short(exc)}"
            self._pending = []
            log.warning(
                "MLflow at %s failed (%s); training continues without tracking, results are "
                "saved in the run folder",
                self.tracking_uri,
                self.failure,
            )
            return None

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            if self.tracking_uri.startswith("sqlite:///"):
                Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                    parents=True, exist_ok=True
                )
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(self.experiment)
        except Exception:  # created concurrently by another process
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return exp.experiment_id

    def start(
        self,
        run_name: str,
        tags: dict[str, str],
        parent_run_id: str | None = None,
        resume_run_id: str | None = None,
    ) -> str | None:
        """Create (or re-open after a resume) the run; returns its id."""
        if not self.enabled:
            return None
        try:
            if resume_run_id:
                self.client.update_run(resume_run_id, status="RUNNING")
                self.run_id = resume_run_id
                return self.run_id
            all_tags = dict(tags)
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
                all_tags["parent_run"] = parent_run_id
            run = self.client.create_run(self._experiment_id(), run_name=run_name, tags=all_tags)
        except Exception as exc:
            raise TrainError(
                f"cannot reach MLflow at {self.tracking_uri!r} ({_short(exc)}); {FIX}"
            ) from None
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.enabled or self.run_id is None:
            return
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten(params).items()]
        for i in range(0, len(items), 90):
            chunk = items[i : i + 90]
            self._send("log params", lambda c=chunk: self.client.log_batch(self.run_id, params=c))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._send("log text", lambda: self.client.log_text(self.run_id, text, artifact_file))

    def log_metrics(self, metrics: dict[str, float], step: int, flush: bool = False) -> None:
        """Queue metrics for ``step``; sent when 900 are queued or on ``flush``."""
        if not self.enabled or self.run_id is None or self.failure is not None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if flush or len(self._pending) >= 900:
            self.flush()

    def flush(self) -> None:
        while self._pending and self.failure is None:
            chunk, self._pending = self._pending[:900], self._pending[900:]
            self._send("log metrics", lambda c=chunk: self.client.log_batch(self.run_id, metrics=c))

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self._send("set tag", lambda k=k, v=v: self.client.set_tag(self.run_id, k, v))

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        self._send(
            "log artifacts",
            lambda: self.client.log_artifacts(self.run_id, str(local_dir), artifact_path),
        )

    def register(self, name: str, artifact_path: str) -> str | None:
        """Register ``runs:/<run>/<artifact_path>`` as a new version of model ``name``."""
        return self._send("register model", lambda: self._register(name, artifact_path))

    def _register(self, name: str, artifact_path: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException:
            pass  # already registered
        run = self.client.get_run(self.run_id)
        source = f"{run.info.artifact_uri}/{artifact_path}"
        version = self.client.create_model_version(name, source=source, run_id=self.run_id)
        return str(version.version)

    def end(self, status: str = "FINISHED") -> None:
        self.flush()
        self._send("end run", lambda: self.client.set_terminated(self.run_id, status=status))


def log_report_run(
    cfg: Any, run_dir: Path, tags: dict[str, str], metrics: dict[str, float], artifact_path: str
) -> str | None:
    """One finished MLflow run for a report-style recipe (calibrate, inverse, rankaae).

    ``cfg`` has ``name``, ``experiment``, ``tracking_uri`` (None: ``sqlite:///<output_dir>/
    mlflow.db``), ``output_dir`` and ``model_dump()`` (logged as params); ``run_dir``'s files
    are logged under ``artifact_path``. Returns the run id.
    """
    uri = cfg.tracking_uri or f"sqlite:///{Path(cfg.output_dir).resolve() / 'mlflow.db'}"
    tracker = Tracker(uri, cfg.experiment)
    tracker.check()
    tracker.start(cfg.name, tags)
    tracker.log_params(cfg.model_dump(mode="json"))
    tracker.log_metrics(metrics, step=0, flush=True)
    tracker.log_artifacts(run_dir, artifact_path)
    tracker.end("FINISHED")
    return tracker.run_id
