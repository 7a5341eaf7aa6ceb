"""Training against a real ``mlflow server`` on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from xas_train.config import load_config
from xas_train.distributed import free_port
from xas_train.trainer import train


@pytest.fixture
def mlflow_server(tmp_path, subprocess_env):
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        env=subprocess_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start: {proc.stderr.read()[-2000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


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
