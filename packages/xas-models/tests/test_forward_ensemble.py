"""ForwardEnsemble: one checkpoint of N members, calibrated spread, predict() mean/sigma,
writers and the ``xas predict`` output of an ensemble."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from scipy.stats import norm
from typer.testing import CliRunner

from xas_models import (
    CheckpointMeta,
    EnergyGrid,
    FeaturizerInfo,
    ModelError,
    XASBlock,
    load_checkpoint,
    predict,
    save_checkpoint,
    write_csv,
    write_json,
)
from xas_models.cli import app
from xas_models.forward_ensemble import (
    ForwardEnsemble,
    calibrate_sigma_scale,
    coverage,
    spread,
)

GRID = {"start": 8975.0, "step": 0.5, "n_points": 40}


def _member(seed: int, dim: int = 64) -> XASBlock:
    torch.manual_seed(seed)
    model = XASBlock.from_config(
        {"input_dim": dim, "output_dim": 40, "hidden_widths": [16], "dropout": 0.1}
    )
    model.set_input_scaling(torch.randn(dim) * 0.1, torch.rand(dim) + 0.5)
    return model.eval()


def _meta(key: str = "k", version: str = "1") -> CheckpointMeta:
    return CheckpointMeta(
        energy_grid=EnergyGrid(**GRID),
        elements=["Cu"],
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="chgnet", version=version, key=key),
    )


@pytest.fixture(scope="module")
def ensemble() -> ForwardEnsemble:
    return ForwardEnsemble.from_members([_member(s) for s in range(3)], sigma_scale=1.7)


def test_round_trip_is_one_checkpoint_with_all_members(ensemble, tmp_path):
    folder = tmp_path / "ens"
    save_checkpoint(folder, ensemble, _meta())
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "model.json",
        "model.safetensors",
    ]
    loaded, meta = load_checkpoint(folder)
    assert isinstance(loaded, ForwardEnsemble) and meta.architecture == "forward_ensemble"
    assert meta.config["n_members"] == 3 and meta.config["sigma_scale"] == 1.7
    assert "sigma_scale | 1.7" in (folder / "README.md").read_text()
    x = torch.randn(5, 64)
    with torch.no_grad():
        outs = loaded.member_outputs(x)
        mean, sigma = loaded.mean_and_sigma(x)
        assert outs.shape == (3, 5, 40)
        for i in range(3):  # member i is the i-th trained model, not a copy of one
            torch.testing.assert_close(outs[i], _member(i)(x))
        torch.testing.assert_close(loaded(x), outs.mean(0))
        torch.testing.assert_close(mean, ensemble(x))
        torch.testing.assert_close(sigma, outs.std(0, unbiased=False) * 1.7)
    assert float(sigma.min()) > 0


def test_members_must_share_one_config():
    other = XASBlock.from_config({"input_dim": 64, "output_dim": 40, "hidden_widths": [8]})
    with pytest.raises(ModelError, match="share one config"):
        ForwardEnsemble.from_members([_member(0), other])
    with pytest.raises(ModelError, match="sigma_scale"):
        ForwardEnsemble.from_members([_member(0)]).set_sigma_scale(0.0)


def test_calibration_recovers_the_true_noise_factor():
    """Errors are Gaussian with sd = 2.5 x the raw spread: the factor that makes 1 sigma cover
    68 % is 2.5 x z(0.84); 2 sigma then covers P(|Z| <= 2 z(0.84))."""
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.2, 2.0, size=(2000, 50))
    mean = rng.normal(size=raw.shape)
    y = mean + 2.5 * raw * rng.normal(size=raw.shape)
    s = calibrate_sigma_scale(y, mean, raw)
    truth = 2.5 * norm.ppf(0.5 + 0.68 / 2)
    assert s == pytest.approx(truth, rel=0.02)
    # a fresh draw from the same distribution is covered as calibrated
    y2 = mean + 2.5 * raw * rng.normal(size=raw.shape)
    assert coverage(y2, mean, raw * s, 1.0) == pytest.approx(0.68, abs=0.01)
    two = 2 * norm.cdf(2 * norm.ppf(0.84)) - 1
    assert coverage(y2, mean, raw * s, 2.0) == pytest.approx(two, abs=0.01)
    with pytest.raises(ModelError, match="one non-empty shape"):
        calibrate_sigma_scale(y, mean, raw[:10])


def test_spread_is_mean_and_population_std():
    outs = np.array([[1.0, 2.0], [3.0, 6.0]])
    mean, raw = spread(outs)
    np.testing.assert_allclose(mean, [2.0, 4.0])
    np.testing.assert_allclose(raw, [1.0, 2.0])


@pytest.fixture(scope="module")
def ensemble_folder(ensemble, chgnet_featurizer, tmp_path_factory):
    from xas_features import feature_key

    folder = tmp_path_factory.mktemp("ens") / "cu-ensemble"
    save_checkpoint(
        folder, ensemble, _meta(feature_key(chgnet_featurizer), chgnet_featurizer.version)
    )
    return folder


def test_predict_gives_mean_and_sigma_per_energy_point(
    ensemble_folder, ensemble, structures, chgnet_featurizer, monkeypatch
):
    calls = []
    original = chgnet_featurizer.featurize

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(chgnet_featurizer, "featurize", counting)
    [p] = predict(structures["cuo"], model=str(ensemble_folder), featurizer=chgnet_featurizer)
    assert len(calls) == 1  # featurized once for all members
    assert p.average_mu.shape == p.average_sigma.shape == (40,)
    for s in p.sites:
        assert s.mu.shape == s.sigma.shape == (40,)
        assert np.all(s.sigma > 0)
    single = ensemble.members[0]
    [q] = predict(structures["cuo"], model=(single, _meta(*_key(chgnet_featurizer))))
    assert q.average_sigma is None and all(s.sigma is None for s in q.sites)
    assert not np.allclose(q.average_mu, p.average_mu)  # the mean, not member 0


def _key(featurizer) -> tuple[str, str]:
    from xas_features import feature_key

    return feature_key(featurizer), featurizer.version


def test_average_sigma_is_the_spread_of_the_members_averages(
    ensemble, structures, chgnet_featurizer
):
    """Ni3O4 has Ni orbits of multiplicity 2 and 4: the average's sigma is the spread of the
    members' weighted averages (not the weighted average of the site sigmas)."""
    from xas_models.predict import model_inputs

    key, version = _key(chgnet_featurizer)
    meta = _meta(key, version).model_copy(update={"elements": ["Ni"]})
    [p] = predict(structures["spinel"], model=(ensemble, meta), featurizer=chgnet_featurizer)
    sites = [s.site_index for s in p.sites]
    x = model_inputs(meta, [structures["spinel"]] * 2, sites, chgnet_featurizer)
    with torch.no_grad():
        outs = ensemble.member_outputs(torch.from_numpy(x)).double().numpy()
    w = np.array([2.0, 4.0])[None, :, None] / 6.0
    expected = (w * outs).sum(1).std(0) * 1.7
    np.testing.assert_allclose(p.average_sigma, expected, rtol=1e-5)
    np.testing.assert_allclose(p.sites[1].sigma, outs[:, 1].std(0) * 1.7, rtol=1e-5)
    weighted_site_sigma = (2 * p.sites[0].sigma + 4 * p.sites[1].sigma) / 6
    assert np.all(p.average_sigma <= weighted_site_sigma + 1e-12)


def test_writers_and_cli_carry_sigma(ensemble_folder, structures, chgnet_featurizer, tmp_path):
    [p] = predict(structures["cuo"], model=str(ensemble_folder), featurizer=chgnet_featurizer)
    rows = list(csv.DictReader(write_csv([p], tmp_path / "p.csv").open()))
    assert list(rows[0])[-2:] == ["mu", "sigma"]
    avg = [r for r in rows if r["site"] == "average"]
    np.testing.assert_allclose([float(r["sigma"]) for r in avg], p.average_sigma, rtol=1e-6)
    doc = json.loads(write_json([p], tmp_path / "p.json").read_text())["predictions"][0]
    assert len(doc["average_sigma"]) == 40 and len(doc["sites"][0]["sigma"]) == 40

    cif = tmp_path / "cuo.cif"
    structures["cuo"].to(filename=str(cif))
    out, png = tmp_path / "cli.csv", tmp_path / "band.png"
    result = CliRunner().invoke(
        app,
        ["predict", str(cif), "-m", str(ensemble_folder), "--out", str(out), "--plot", str(png)],
    )
    assert result.exit_code == 0, result.output
    assert "mean sigma" in result.stdout and "max sigma" in result.stdout
    assert next(csv.reader(out.open()))[-1] == "sigma"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_single_model_csv_has_no_sigma_column(structures, chgnet_featurizer, tmp_path):
    [q] = predict(
        structures["cuo"],
        model=(_member(0), _meta(*_key(chgnet_featurizer))),
    )
    header = next(csv.reader(write_csv([q], tmp_path / "q.csv").open()))
    assert header[-1] == "mu"
    assert (
        "average_sigma"
        not in json.loads(write_json([q], tmp_path / "q.json").read_text())["predictions"][0]
    )
