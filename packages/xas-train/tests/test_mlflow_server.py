"""Training against a real ``mlflow server`` on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from xas_testkit import Background, http_ok, wait_for

from xas_train.config import load_config
from xas_train.distributed import free_port
from xas_train.trainer import train


@pytest.fixture
def mlflow_server(tmp_path, subprocess_env):
    """``mlflow server`` in its own process group, its output in a file; on a loaded machine
    it may take minutes to create its tables, so the test waits for /health (up to the
    testkit deadline) and fails, saying so, if it never answers. The whole group (the CLI,
    uvicorn and whatever they start) is stopped afterwards."""
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    server = Background(
        [
            mlflow,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            tmp_path / "server-artifacts",
            "--workers",
            "1",
        ],
        tmp_path / "mlflow-server.log",
        # no huey job runner (7 consumer processes, GenAI jobs only): tracking, artifacts
        # and the model registry, which the trainer uses, are served without it
        env={**subprocess_env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(http_ok(f"{url}/health"), f"mlflow server to answer {url}/health", process=server)
        yield url
    finally:
        server.stop()
    assert server.live_members() == [], "processes of the mlflow server outlived stop()"


@pytest.mark.slow
def test_training_is_tracked_on_a_real_mlflow_server(write_config, mlflow_server, tmp_path):
    cfg = load_config(
        write_config(
            "served",
            training={"max_epochs": 7},
            mlflow={
                "enabled": True,
                "tracking_uri": mlflow_server,
                "experiment": "served-test",
                "registered_name": "toy-served",
            },
        )
    )
    result = train(cfg, progress=None)
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["training.lr"] == "0.003"
    assert run.data.params["resolved.global_batch"] == "16"
    assert run.data.tags["recipe"] == "expert" and run.data.tags["element"] == "Cu"
    assert len(client.get_metric_history(result.run_id, "train_loss")) == 7
    assert run.data.metrics["test_eta_Cu"] == pytest.approx(result.metrics["Cu"]["eta"])
    files = {f.path for f in client.list_artifacts(result.run_id, "model")}
    assert {"model/model.json", "model/model.safetensors", "model/README.md"} <= files
    assert "config.yaml" in {f.path for f in client.list_artifacts(result.run_id)}
    [version] = client.search_model_versions("name = 'toy-served'")
    assert version.run_id == result.run_id
    local = client.download_artifacts(result.run_id, "model/model.json", str(tmp_path / "dl"))
    assert Path(local).read_text() == (Path(result.model_dir) / "model.json").read_text()
