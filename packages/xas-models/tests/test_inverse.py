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
