"""MLflow tracking for training runs, through ``MlflowClient`` (no global active run).

Each run logs its params (the flattened resolved config), the config as ``config.yaml``,
per-epoch metrics (buffered and sent in batches so that a 1000-epoch run costs a few requests),
tags (recipe, elements, fidelity, parent run), the final checkpoint folder as an artifact, and
registers the model in the MLflow model registry. Only rank 0 talks to MLflow.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from xas_train.errors import TrainError


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
        self._pending: list[Any] = []
        self._client = None

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
                f"cannot reach MLflow at {self.tracking_uri!r} ({type(exc).__name__}: {exc}); "
                "start the server, fix mlflow.tracking_uri, or set mlflow.enabled: false"
            ) from None
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.enabled or self.run_id is None:
            return
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten(params).items()]
        for i in range(0, len(items), 90):
            self.client.log_batch(self.run_id, params=items[i : i + 90])

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.enabled and self.run_id:
            self.client.log_text(self.run_id, text, artifact_file)

    def log_metrics(self, metrics: dict[str, float], step: int, flush: bool = False) -> None:
        """Queue metrics for ``step``; sent when 900 are queued or on ``flush``."""
        if not self.enabled or self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if flush or len(self._pending) >= 900:
            self.flush()

    def flush(self) -> None:
        if not self.enabled or self.run_id is None:
            return
        while self._pending:
            chunk, self._pending = self._pending[:900], self._pending[900:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.enabled and self.run_id:
            for k, v in tags.items():
                self.client.set_tag(self.run_id, k, v)

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        if self.enabled and self.run_id:
            self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def register(self, name: str, artifact_path: str) -> str | None:
        """Register ``runs:/<run>/<artifact_path>`` as a new version of model ``name``."""
        if not self.enabled or self.run_id is None:
            return None
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
        if not self.enabled or self.run_id is None:
            return
        self.flush()
        self.client.set_terminated(self.run_id, status=status)


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
    tracker.start(cfg.name, tags)
    tracker.log_params(cfg.model_dump(mode="json"))
    tracker.log_metrics(metrics, step=0, flush=True)
    tracker.log_artifacts(run_dir, artifact_path)
    tracker.end("FINISHED")
    return tracker.run_id
