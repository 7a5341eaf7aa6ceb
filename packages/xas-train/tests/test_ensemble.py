"""``xas-train ensemble``: N members through the trainer, one calibrated checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xas_models import load_checkpoint
from xas_models.forward_ensemble import ForwardEnsemble, coverage, spread
from xas_train.cli import app
from xas_train.config import load_config
from xas_train.data import SplitArrays, load_training_data
from xas_train.ensemble import bootstrap_rows, member_predictions, train_ensemble

SMALL = {"max_epochs": 15, "seed": 3}


@pytest.fixture(scope="module")
def trained(module_write_config):
    cfg = load_config(module_write_config("ens", training=SMALL))
    return cfg, train_ensemble(cfg, 3, progress=None)


def test_one_checkpoint_with_calibrated_members(trained):
    cfg, result = trained
    model, meta = load_checkpoint(result.model_dir)
    assert isinstance(model, ForwardEnsemble) and len(model.members) == 3
    assert meta.architecture == "forward_ensemble"
    assert result.seeds == [3, 4, 5]
    # members are the trainer's runs, each with its own seed, and differ from each other
    for run, seed in zip(result.member_runs, result.seeds, strict=True):
        assert f"seed: {seed}" in (Path(run) / "config.yaml").read_text()
    data = load_training_data(cfg.data, seed=cfg.training.seed)
    outs = member_predictions(list(model.members), data.val)
    assert outs.shape == (3, len(data.val), 40)
    assert np.abs(outs[0] - outs[1]).max() > 1e-4
    # the stored factor makes 1 sigma cover 68 % of the val points (the calibration split)
    mean, raw = spread(outs)
    assert (
        meta.config["sigma_scale"] == pytest.approx(result.sigma_scale) and result.sigma_scale > 0
    )
    assert coverage(data.val.y, mean, raw * result.sigma_scale) == pytest.approx(0.68, abs=0.01)
    assert result.splits["val"]["coverage_1sigma"] == pytest.approx(0.68, abs=0.01)
    assert result.splits["val"]["coverage_2sigma"] >= result.splits["val"]["coverage_1sigma"]
    # the test split is reported (eta of the mean, coverage), and the card carries it all
    test = result.splits["test"]
    assert test["n_spectra"] == len(data.test) and np.isfinite(test["Cu/eta"])
    assert meta.metrics["test/coverage_1sigma"] == test["coverage_1sigma"]
    assert meta.metrics["Cu/eta"] == pytest.approx(test["Cu/eta"], rel=1e-3)
    assert len(meta.metrics["Cu/member_test_etas"]) == 3
    assert meta.training_data["ensemble"]["seeds"] == [3, 4, 5]
    card = (Path(result.model_dir) / "README.md").read_text()
    assert "sigma_scale" in card and "test/coverage_2sigma" in card
    assert json.loads((Path(result.run_dir) / "ensemble.json").read_text())["n_members"] == 3


def test_finished_members_are_reused(trained):
    cfg, result = trained
    stamps = [
        (Path(r) / "model" / "model.safetensors").stat().st_mtime_ns for r in result.member_runs
    ]
    lines: list[str] = []
    again = train_ensemble(cfg, 3, progress=lines.append)
    assert sum("reusing finished run" in line for line in lines) == 3
    after = [
        (Path(r) / "model" / "model.safetensors").stat().st_mtime_ns for r in again.member_runs
    ]
    assert after == stamps and again.sigma_scale == pytest.approx(result.sigma_scale)


def test_bootstrap_rows_resample_with_replacement():
    split = SplitArrays(
        np.arange(20, dtype=np.float32)[:, None],
        np.zeros((20, 3), np.float32),
        np.array(["Cu"] * 20),
        np.array([f"mp-{i}_0" for i in range(20)]),
    )
    a, b = bootstrap_rows(split, 0), bootstrap_rows(split, 1)
    assert len(a) == 20 and len(set(a.site_ids)) < 20  # repeats
    assert not np.array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.x, bootstrap_rows(split, 0).x)  # seeded
    assert all(f"mp-{int(x)}_0" == s for x, s in zip(a.x[:, 0], a.site_ids, strict=True))


def test_cli_bootstrap_prints_coverage(write_config):
    path = write_config("ens-cli", training={"max_epochs": 5})
    result = CliRunner().invoke(app, ["ensemble", str(path), "--members", "2", "--bootstrap"])
    assert result.exit_code == 0, result.output
    assert "sigma_scale" in result.output
    assert "val:" in result.output and "test:" in result.output
    assert "coverage 1 sigma" in result.output and "Cu eta" in result.output
    model, meta = load_checkpoint(result.output.split("model: ")[1].split()[0])
    assert meta.training_data["ensemble"]["bootstrap"] is True and len(model.members) == 2


def test_zero_members_is_refused(write_config):
    path = write_config("ens-bad")
    result = CliRunner().invoke(app, ["ensemble", str(path), "--members", "0"])
    assert result.exit_code == 2 and "--members must be >= 1" in result.output
