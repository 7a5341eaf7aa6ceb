"""The calibrate recipe on real measured Cr spectra (XAS Data Library) with a zoo model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from xas_train.calibration import (
    finetune_head,
    head_groups,
    load_calibration_config,
    load_measured_set,
    make_splits,
    predict_measured,
    run_calibration,
)
from xas_train.errors import ConfigError, TrainError

ZOO = Path(__file__).resolve().parents[4] / "model-zoo"
MODEL = "xasblock-chgnet-default-feff-fast-universal"


@pytest.fixture(scope="module")
def exp_store(shared_data, tmp_path_factory) -> Path:
    from xas_data.experiment_ingest import ingest_measured_spectra, read_measured_sources

    spectra = read_measured_sources([shared_data / "experiment/xaslib/xaslib_K_edge.json"], "Cr")
    out = tmp_path_factory.mktemp("exp") / "exp.zarr"
    report = ingest_measured_spectra(spectra, out)
    assert report.counts["Cr"] >= 10
    return out


@pytest.fixture(scope="module")
def model():
    from xas_models import load_pretrained

    return load_pretrained(MODEL, zoo=ZOO)


def test_make_splits_ratios_and_compound_holdout():
    splits = make_splits(16, (6, 1, 1), 5, seed=0)
    for train, val, test in splits:
        assert (len(train), len(val), len(test)) == (12, 2, 2)
        assert len(set(train) | set(val) | set(test)) == 16
    groups = ["A"] * 10 + ["B"] * 6
    for train, val, test in make_splits(16, (6, 1, 1), 2, seed=0, groups=groups):
        held = {groups[i] for i in test}
        assert len(held) == 1 and not held & {groups[i] for i in np.concatenate([train, val])}
    with pytest.raises(TrainError, match="2\\+ compounds"):
        make_splits(4, (6, 1, 1), 1, 0, groups=["A"] * 4)


def test_head_groups_and_finetuning_lower_the_validation_error(exp_store, model):
    module, meta = model
    groups = head_groups(module)
    assert len(groups) == 3  # 64 -> 400 -> 400 -> 141
    data = load_measured_set(exp_store, "Cr", meta)
    assert len(data) >= 10 and data.y.shape[1] == 141 and set(data.compounds) >= {"Cr2O3"}
    rows = np.arange(len(data))
    before = predict_measured(module, data, rows)
    frozen = {k: v.clone() for k, v in module.state_dict().items() if "net.0." in k}
    fit = finetune_head(module, data, rows[:-3], rows[-3:], epochs_per_stage=5, max_stages=1)
    assert fit.best_val < fit.history[0]["val"]  # better than the pretrained model
    # stage 1 trains only the last layer: the first layer is untouched
    for k, v in module.state_dict().items():
        if k in frozen:
            assert np.array_equal(v.numpy(), frozen[k].numpy())
    assert not np.allclose(predict_measured(module, data, rows), before)


def test_calibrate_recipe_writes_report_and_exp_checkpoint(exp_store, tmp_path):
    cfg_path = tmp_path / "cal.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "name": "cr",
                "model": MODEL,
                "zoo": str(ZOO),
                "measured": str(exp_store),
                "element": "Cr",
                "n_splits": 2,
                "epochs_per_stage": 4,
                "output_dir": str(tmp_path / "runs"),
            }
        )
    )
    report = run_calibration(load_calibration_config(cfg_path), progress=None)
    s = report["summary"]
    assert set(s) == {"simulation", "shift+broadening", "calibrated"}
    assert s["calibrated"]["rse_mean"] < s["simulation"]["rse_mean"]
    run = tmp_path / "runs" / "cr"
    assert (run / "report.md").read_text().startswith("| Cr (")
    assert (run / "spectra-split0.png").stat().st_size > 0
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["fidelity"] == "EXP" and meta["elements"] == ["Cr"]
    assert meta["training_data"]["recipe"] == "calibrate"
    assert "Cr2O3" in meta["training_data"]["measured"]["compounds"]
    from xas_models import load_checkpoint

    load_checkpoint(run / "model")  # loads back


def test_bad_calibration_inputs_name_the_fix(exp_store, model, tmp_path):
    _, meta = model
    with pytest.raises(TrainError, match="not Zn"):
        load_measured_set(exp_store, "Zn", meta)
    with pytest.raises(TrainError, match="ingest-measured"):
        load_measured_set(tmp_path / "missing.zarr", "Cr", meta)
    with pytest.raises(TrainError, match="no EXP spectra of Ti"):
        load_measured_set(exp_store, "Ti", meta)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x\nmeasured: y\nelement: Cr\nsplits: 3\n")
    with pytest.raises(ConfigError, match="splits"):
        load_calibration_config(bad)


def test_head_groups_of_the_graph_models_end_with_the_output_layer():
    from xas_models import build_model

    cgxas = build_model(
        "cgxas", {"node_dim": 41, "output_dim": 20, "mlp_hidden": [16, 16], "elements": ["Cu"]}
    )
    groups = head_groups(cgxas)
    assert len(groups) == 3 and groups[-1][0] is cgxas.head[-2].weight
    xane3 = build_model(
        "xane3",
        {"n_layers": 1, "irreps_hidden": "4x0e+2x1o", "output_dim": 20, "n_gaussians_out": 10,
         "readout_hidden": 8, "embed_dim": 4, "radial_hidden": 4},
    )  # fmt: skip
    groups = head_groups(xane3)
    assert len(groups) == 3  # two readout layers, then amplitudes + centres + background
    assert any(p is xane3.centres for p in groups[-1])
    with pytest.raises(TrainError, match="no calibration head"):
        head_groups(torch.nn.Linear(2, 2))
