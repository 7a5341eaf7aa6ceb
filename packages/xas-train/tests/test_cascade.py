"""The cascade on the toy store: experts, universal, tuned, cross-fidelity, report, MLflow."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from xas_train.cascade import run_cascade
from xas_train.config import load_config


def test_cascade_trains_every_recipe_and_reuses_finished_runs(write_config, tmp_path):
    cfg = load_config(
        write_config(
            "toy",
            recipe="universal",
            data={"elements": None},
            training={"max_epochs": 6},
            mlflow={"enabled": True},
        )
    )
    result = run_cascade(cfg, progress=None)
    kinds = sorted((r.recipe, r.fidelity, ",".join(r.elements)) for r in result.runs)
    assert kinds == [
        ("cross-fidelity", "VASP", "Cu"),
        ("expert", "FEFF", "Cu"),
        ("expert", "FEFF", "Ni"),
        ("expert", "VASP", "Cu"),
        ("tuned", "FEFF", "Cu"),
        ("tuned", "FEFF", "Ni"),
        ("universal", "FEFF", "Cu,Ni"),
    ]
    assert all(r.status == "trained" for r in result.runs)
    cross = next(r for r in result.runs if r.recipe == "cross-fidelity")
    universal = next(r for r in result.runs if r.recipe == "universal")
    assert cross.result["name"].endswith("VASP-Cu-cross-fidelity")
    meta = json.loads((Path(result.models[cross.name]) / "model.json").read_text())
    assert meta["training_data"]["init_from"] == universal.result["model_dir"]
    assert meta["fidelity"] == "VASP"

    summary = json.loads(Path(result.summary_path).read_text())
    assert len(summary) == 7
    report = Path(result.report_path).read_text()
    assert "| Cu | FEFF |" in report and "| Cu | VASP |" in report
    assert "eta tuned" in result.table_markdown

    client = MlflowClient(tracking_uri=cfg.tracking_uri())
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    children = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    )
    assert len(children) == 7
    tags = {(r.data.tags["recipe"], r.data.tags["fidelity"]) for r in children}
    assert ("cross-fidelity", "VASP") in tags and ("universal", "FEFF") in tags
    tuned = next(r for r in children if r.data.tags["recipe"] == "tuned")
    history = client.get_metric_history(tuned.info.run_id, "val_loss")
    assert len(history) == int(tuned.data.metrics["epochs_run"])
    versions = client.search_model_versions(f"name = '{universal.name}'")
    assert len(versions) == 1

    again = run_cascade(cfg, progress=None)
    assert [r.status for r in again.runs] == ["reused"] * 7
