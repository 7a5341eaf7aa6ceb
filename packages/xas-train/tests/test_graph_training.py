"""Graph models (CGXAS, XANE(3)) through the same trainer, recipes and checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xas_train.config import load_config
from xas_train.errors import ConfigError
from xas_train.trainer import train

GRAPH = {"cutoff": 5.0, "max_neighbors": 12, "max_z": 30, "include_ties": True}


def test_cgxas_universal_then_tuned(write_config):
    cfg = load_config(
        write_config(
            "cgxas-uni",
            recipe="universal",
            data={"elements": None, "features": ["graph"], "graph": GRAPH},
            model={
                "architecture": "cgxas",
                "hidden_dim": 16,
                "n_conv": 3,
                "mlp_hidden": [32],
                "edge_features": "both",
            },
            replace=("model",),
            training={"max_epochs": 4, "loss": "rse", "lr": 3e-3},
        )
    )
    result = train(cfg, progress=None)
    history = json.loads((Path(result.run_dir) / "history.json").read_text())
    assert len(history) == 4 and history[-1]["train_loss"] < history[0]["train_loss"]
    meta = json.loads((Path(result.model_dir) / "model.json").read_text())
    assert meta["architecture"] == "cgxas"
    assert meta["config"]["elements"] == ["Cu", "Ni"] and meta["config"]["node_dim"] == 41
    assert meta["featurizer"]["name"] == "crystal-graph"
    assert set(result.metrics) == {"Cu", "Ni"}
    tuned = load_config(
        write_config(
            "cgxas-tuned",
            recipe="tuned",
            init_from=result.model_dir,
            data={"elements": ["Cu"], "features": ["graph"], "graph": GRAPH},
            model={},
            replace=("model",),
            training={"max_epochs": 2, "loss": "rse"},
        )
    )
    assert train(tuned, progress=None).metrics["Cu"]["n"] == 9


@pytest.mark.parametrize("loss", ["derivative", "xane3"])
def test_xane3_expert_with_derivative_loss(write_config, loss):
    cfg = load_config(
        write_config(
            f"xane3-{loss}",
            data={"features": ["graph"], "graph": GRAPH},
            replace=("model",),
            model={
                "architecture": "xane3",
                "n_layers": 2,
                "irreps_hidden": "4x0e+2x1o+2x2e",
                "n_gaussians_out": 20,
                "embed_dim": 8,
                "radial_hidden": 8,
                "readout_hidden": 16,
                "max_z": 30,
            },
            training={"max_epochs": 3, "loss": loss, "lr": 3e-3},
        )
    )
    result = train(cfg, progress=None)
    history = json.loads((Path(result.run_dir) / "history.json").read_text())
    assert history[-1]["val_mse"] < history[0]["val_mse"]
    meta = json.loads((Path(result.model_dir) / "model.json").read_text())
    assert meta["architecture"] == "xane3"
    assert meta["config"]["energy_max"] == pytest.approx(0.5 * 39)
    assert result.metrics["Cu"]["n"] == 9


def test_xasblock_on_graphs_is_refused(write_config):
    cfg = load_config(
        write_config(
            "bad-graph",
            data={"features": ["graph"]},
            model={"architecture": "xasblock"},
            replace=("model",),
        )
    )
    with pytest.raises(ConfigError, match="use a graph model"):
        train(cfg, progress=None)


def test_predict_with_a_trained_graph_checkpoint_matches_the_trainer(write_config, toy_store):
    import numpy as np

    from xas_data.store import XASDataset
    from xas_eval.predictions import Predictions
    from xas_models import predict

    cfg = load_config(
        write_config(
            "cgxas-pred",
            data={"features": ["graph"], "graph": GRAPH},
            model={"architecture": "cgxas", "hidden_dim": 8, "n_conv": 2, "mlp_hidden": [16]},
            replace=("model",),
            training={"max_epochs": 2, "loss": "rse"},
        )
    )
    result = train(cfg, progress=None)
    meta = json.loads((Path(result.model_dir) / "model.json").read_text())
    assert meta["training_data"]["graph_config"]["cutoff"] == 5.0
    preds = Predictions.load(result.predictions[0])
    ds = XASDataset.open(toy_store)
    material, site = preds.site_ids[0].rsplit("_", 1)
    [out] = predict(ds.structure(material), "Cu", model=result.model_dir)
    assert out.sites[0].site_index == int(site)
    np.testing.assert_allclose(out.sites[0].mu, preds.y_pred[0], atol=1e-5)
