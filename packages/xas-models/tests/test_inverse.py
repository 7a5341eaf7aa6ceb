"""Inverse deep ensemble and predict_descriptors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xas_models import CheckpointMeta, EnergyGrid, FeaturizerInfo, ModelError
from xas_models.checkpoint import load_checkpoint, save_checkpoint
from xas_models.inverse import InverseEnsemble, predict_descriptors
from xas_models.registry import build_model

K = 64
TASKS = [
    {"name": "OS", "kind": "classification", "classes": [2, 3]},
    {"name": "NNRS", "kind": "regression"},
]


def _members(n: int = 3) -> list:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        m = build_model("spt", {"input_dim": K, "tasks": TASKS, "d_model": 16, "n_bands": 2})
        m.set_target_scaling(mean={"NNRS": 0.1}, std={"NNRS": 0.02})
        out.append(m.eval())
    return out


def _meta() -> CheckpointMeta:
    return CheckpointMeta(
        energy_grid=EnergyGrid(start=8980.0, step=0.5, n_points=K),
        elements=["Cu"],
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="spectrum", version="post-edge-normalised", key=""),
        training_data={"normalisation": {"kind": "post-edge level", "tail": 10}},
    )


def test_ensemble_averages_members_and_reports_spread():
    members = _members()
    ens = InverseEnsemble.from_members(members).eval()
    x = torch.rand(5, K) + 0.5
    out = ens(x)
    probs = torch.stack([m.predict(x)["OS"]["probabilities"] for m in members]).mean(0)
    torch.testing.assert_close(out["OS"]["probabilities"], probs)
    vals = torch.stack([m.predict(x)["NNRS"]["value"] for m in members])
    torch.testing.assert_close(out["NNRS"]["value"], vals.mean(0))
    assert bool((out["NNRS"]["std"] > 0).all())
    with pytest.raises(ModelError, match="share one config"):
        other = build_model("spt", {"input_dim": K, "tasks": TASKS, "d_model": 8})
        InverseEnsemble.from_members([members[0], other])


def test_checkpoint_round_trip_and_predict_descriptors(tmp_path):
    ens = InverseEnsemble.from_members(_members())
    save_checkpoint(tmp_path / "inv", ens, _meta())
    module, meta = load_checkpoint(tmp_path / "inv")
    energy = np.linspace(8970.0, 9030.0, 300)
    mu = 1 / (1 + np.exp(-(energy - 8990.0) / 1.5))
    out = predict_descriptors(3.0 * mu, energy, "Cu", model=tmp_path / "inv")
    assert out["OS"].value in (2.0, 3.0) and abs(sum(out["OS"].probabilities.values()) - 1) < 1e-5
    assert out["NNRS"].std is not None and out["NNRS"].std >= 0
    # the post-edge normalisation makes the units of the input irrelevant
    again = predict_descriptors(mu, energy, "Cu", model=(module, meta))
    assert again["NNRS"].value == pytest.approx(out["NNRS"].value, rel=1e-5)
    many = predict_descriptors(np.stack([mu, mu]), energy, "Cu", model=(module, meta))
    assert len(many["OS"]) == 2
    with pytest.raises(ModelError, match="not Ni"):
        predict_descriptors(mu, energy, "Ni", model=(module, meta))
    with pytest.raises(ModelError, match="grid is"):
        predict_descriptors(mu[:50], energy[:50], "Cu", model=(module, meta))


def test_std_scale_multiplies_spread_and_is_checkpointed(tmp_path):
    ens = InverseEnsemble.from_members(_members()).eval()
    x = torch.rand(4, K) + 0.5
    raw = ens(x)["NNRS"]["std"].clone()
    ens.set_std_scale({"NNRS": 2.5})
    torch.testing.assert_close(ens(x)["NNRS"]["std"], raw * 2.5)
    save_checkpoint(tmp_path / "inv", ens, _meta())
    module, _ = load_checkpoint(tmp_path / "inv")
    torch.testing.assert_close(module(x)["NNRS"]["std"], raw * 2.5)
    with pytest.raises(ModelError, match="not a regression task"):
        ens.set_std_scale({"OS": 2.0})
    with pytest.raises(ModelError, match="finite and > 0"):
        ens.set_std_scale({"NNRS": 0.0})


OS_TASKS = [
    {"name": "OS", "kind": "classification", "classes": [1, 2, 3, 4, 5, 6]},
    {"name": "NNRS", "kind": "regression"},
]


def _two_element_checkpoint(tmp_path, training_data):
    """A V + Ni ensemble (OS classes 1-6) saved with ``training_data``; returns its folder."""
    members = []
    for seed in range(2):
        torch.manual_seed(seed)
        m = build_model("spt", {"input_dim": K, "tasks": OS_TASKS, "d_model": 16, "n_bands": 2})
        members.append(m.eval())
    grids = {
        "V": EnergyGrid(start=5460.0, step=0.5, n_points=K),
        "Ni": EnergyGrid(start=8330.0, step=0.5, n_points=K),
    }
    meta = CheckpointMeta(
        energy_grid=grids["Ni"],
        energy_grids=grids,
        elements=["Ni", "V"],
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="spectrum", version="post-edge-normalised", key=""),
        training_data={"normalisation": {"kind": "post-edge level", "tail": 10}, **training_data},
    )
    save_checkpoint(tmp_path / "inv2", InverseEnsemble.from_members(members), meta)
    return tmp_path / "inv2"


def _edges(start, n=3):
    energy = np.linspace(start - 10, start + 50, 300)
    shifts = np.linspace(0, 4, n)[:, None]
    return energy, 1 / (1 + np.exp(-(energy - start - 5 - shifts) / 1.5))


def test_only_classes_allowed_for_the_element_are_predicted(tmp_path):
    folder = _two_element_checkpoint(tmp_path, {"allowed_classes": {"V": {"OS": [3, 4, 5]}}})
    energy, mu = _edges(5460.0)
    out = predict_descriptors(mu, energy, "V", model=folder)
    for p in out["OS"]:
        assert set(p.probabilities) == {3.0, 4.0, 5.0} and p.value in (3.0, 4.0, 5.0)
        assert sum(p.probabilities.values()) == pytest.approx(1.0)
        assert p.allowed == (3.0, 4.0, 5.0) and p.allowed_source == "training data"
        assert p.raw_value in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
        assert p.domain is None and p.in_domain is None  # no domain statistics recorded
    # Ni: not recorded -> the chemical table (ICSD states 1-4), no Ni(V)/Ni(VI)
    energy, mu = _edges(8330.0)
    ni = predict_descriptors(mu, energy, "Ni", model=folder)["OS"]
    assert all(set(p.probabilities) == {1.0, 2.0, 3.0, 4.0} for p in ni)
    assert ni[0].allowed_source == "chemical table"


def test_older_checkpoint_without_the_new_fields_uses_the_chemical_table(tmp_path):
    folder = _two_element_checkpoint(tmp_path, {})
    energy, mu = _edges(5460.0)
    out = predict_descriptors(mu[0], energy, "V", model=folder)
    assert set(out["OS"].probabilities) == {2.0, 3.0, 4.0, 5.0}
    assert out["NNRS"].allowed == () and out["NNRS"].warnings == []


def test_prediction_carries_the_training_domain_check(tmp_path):
    from xas_models.domain import calibrate_domain, fit_domain

    rng = np.random.default_rng(0)
    energy, mu = _edges(5460.0, n=40)
    grid = 5460.0 + 0.5 * np.arange(K)
    x = np.stack([np.interp(grid, energy, r) for r in mu]) + 0.01 * rng.random((40, K))
    x = x / x[:, -10:].mean(axis=1, keepdims=True)
    dom = fit_domain({"V": x}, n_components=3)
    dom = calibrate_domain(dom, {"train": {"V": x}})
    folder = _two_element_checkpoint(tmp_path, {"domain": dom})
    near = predict_descriptors(mu[:2], energy, "V", model=folder)["OS"]
    assert all(p.in_domain for p in near) and not near[0].warnings
    far_mu = np.clip((energy - 5440.0) / 60.0, 0, None)  # a ramp: no edge at all
    far = predict_descriptors(far_mu, energy, "V", model=folder)
    assert far["OS"].in_domain is False and far["OS"].domain.distance > dom["threshold"]
    assert "OUTSIDE the training domain" in far["OS"].warnings[0]
    assert far["NNRS"].domain is far["OS"].domain  # one check per spectrum
    # Ni has no statistics: not checked
    energy_ni, mu_ni = _edges(8330.0)
    assert predict_descriptors(mu_ni[0], energy_ni, "Ni", model=folder)["OS"].domain is None
