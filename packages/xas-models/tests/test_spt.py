"""SPT spectral pattern translator: shapes, config/checkpoint round trips, switches, masked
loss, a short overfit and config errors. Tiny synthetic spectra; seconds on one CPU thread."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xas_models import CheckpointMeta, EnergyGrid, FeaturizerInfo, ModelError
from xas_models.checkpoint import load_checkpoint, save_checkpoint
from xas_models.registry import build_model, get_model_class
from xas_models.spt import SPT, dominant_periods, spt_loss

K = 48
TASKS = [
    {"name": "OS", "kind": "classification", "classes": [2, 3, 4]},
    {"name": "CN", "kind": "classification", "classes": [6, 4]},  # stored sorted
    {"name": "NNRS", "kind": "regression"},
    {"name": "MOOD", "kind": "regression"},
]
SWITCHES = ["use_global", "use_bands", "use_query_fusion", "use_graph"]


def small_config(**over) -> dict:
    cfg = {
        "input_dim": K,
        "tasks": TASKS,
        "d_model": 16,
        "global_hidden": [32],
        "n_bands": 2,
        "band_channels": [4, 8],
        "n_queries": 2,
        "graph_dim": 8,
        "graph_window": 2,
        "graph_layers": 1,
        "graph_heads": 2,
        "shared_hidden": [32],
        "dropout": 0.0,
    }
    cfg.update(over)
    return cfg


def make_model(seed: int = 0, **over) -> SPT:
    torch.manual_seed(seed)
    return SPT.from_config(small_config(**over))


def synthetic(n: int, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Edge-step spectra; OS is set by the edge position, CN by the white-line width."""
    rng = np.random.default_rng(seed)
    os_ = rng.choice([2, 3, 4], size=n)
    cn = rng.choice([4, 6], size=n)
    e0 = 12.0 + 7.0 * (os_ - 2) + rng.uniform(-1.5, 1.5, size=n)
    width = np.where(cn == 4, 1.5, 3.5)
    e = np.arange(K)[None, :]
    x = 1.0 / (1.0 + np.exp(-(e - e0[:, None]) / 1.5))
    x = x + 0.8 * np.exp(-(((e - e0[:, None] - 3.0) / width[:, None]) ** 2))
    x = x + 0.01 * rng.standard_normal(x.shape)
    labels = {
        "OS": torch.tensor(os_, dtype=torch.float32),
        "CN": torch.tensor(cn, dtype=torch.float32),
        "NNRS": torch.tensor(0.05 * e0, dtype=torch.float32),
        "MOOD": torch.tensor(2.5 + 0.1 * width, dtype=torch.float32),
    }
    return torch.tensor(x, dtype=torch.float32), labels


def meta() -> CheckpointMeta:
    return CheckpointMeta(
        energy_grid=EnergyGrid(start=8970.0, step=0.5, n_points=K),
        elements=["Cu"],
        edge="K",
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="spectrum", version="1"),
    )


def test_shapes_registry_and_predict():
    model = make_model().eval()
    x, _ = synthetic(5)
    out = model(x)
    assert list(out) == ["OS", "CN", "NNRS", "MOOD"]
    assert out["OS"].shape == (5, 3) and out["CN"].shape == (5, 2)
    assert out["NNRS"].shape == (5,) and out["MOOD"].shape == (5,)
    assert model.tasks["CN"].classes == [4, 6]
    model.set_target_scaling(mean={"NNRS": 1.0}, std={"NNRS": 2.0})
    pred = model.predict(x)
    assert torch.allclose(pred["NNRS"]["value"], out["NNRS"] * 2.0 + 1.0, atol=1e-6)
    proba = pred["OS"]["probabilities"]
    assert proba.shape == (5, 3) and torch.allclose(proba.sum(-1), torch.ones(5))
    assert set(pred["OS"]["value"].tolist()) <= {2.0, 3.0, 4.0}
    assert get_model_class("spt") is SPT  # built-in name (no need to import available_models)
    assert isinstance(build_model("spt", small_config()), SPT)
    # batch independence (per-sample norms only)
    assert torch.allclose(model(x[:2])["OS"], out["OS"][:2], atol=1e-5)


def test_default_config_size():
    model = SPT.from_config({})
    n = sum(p.numel() for p in model.parameters())
    assert 100_000 <= n <= 300_000
    out = model(torch.rand(2, 141))
    assert len(out) == 8 and out["PSGO"].shape == (2, 10) and out["NNOSM"].shape == (2,)


def test_periods_fixed_and_from_data():
    rng = np.random.default_rng(0)
    t = np.arange(K)
    spectra = np.stack(
        [
            np.sin(2 * math.pi * t / 8 + p) + 0.5 * np.sin(2 * math.pi * t / 16)
            for p in rng.uniform(0, 6, 20)
        ]
    )
    assert dominant_periods(torch.tensor(spectra), 2) == [8, 16]
    model = make_model()
    assert model.set_periods(spectra) == [8, 16]
    assert model.periods.tolist() == [8, 16]
    fixed = make_model(periods=[5, 12])
    assert fixed.periods.tolist() == [5, 12]
    with pytest.raises(ModelError, match="periods"):
        fixed.set_periods(spectra)
    x, _ = synthetic(3)
    a = model.eval()(x)["OS"]
    model.set_periods(spectra * 0 + np.sin(2 * math.pi * t / 6))  # other periods, other output
    assert model.periods.tolist()[0] == 6
    assert not torch.allclose(a, model(x)["OS"])


def test_config_and_checkpoint_round_trip(tmp_path):
    model = make_model(periods=None)
    x, y = synthetic(16)
    model.set_periods(x)
    model.set_target_scaling({"NNRS": y["NNRS"], "MOOD": y["MOOD"]})
    again = SPT.from_config(model.config_dict())
    assert again.config == model.config
    model.eval()
    save_checkpoint(tmp_path / "spt", model, meta())
    loaded, m = load_checkpoint(tmp_path / "spt")
    assert m.architecture == "spt" and isinstance(loaded, SPT)
    assert loaded.periods.tolist() == model.periods.tolist()
    assert torch.equal(loaded.target_std, model.target_std)
    for name, v in model(x).items():
        assert torch.allclose(loaded(x)[name], v, atol=1e-6)


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_changes_model_and_runs(switch):
    full = make_model()
    off = make_model(**{switch: False})
    shapes = {k: tuple(v.shape) for k, v in off.state_dict().items()}
    assert shapes != {k: tuple(v.shape) for k, v in full.state_dict().items()}
    x, y = synthetic(4)
    off.set_periods(x)  # a no-op without bands
    out = off(x)
    assert out["OS"].shape == (4, 3)
    total, _ = spt_loss(out, y, model=off)
    total.backward()
    assert all(p.grad is not None for p in off.parameters() if p.requires_grad)


def test_masked_loss_ignores_nan_exactly():
    model = make_model().eval()
    x, y = synthetic(8)
    model.set_target_scaling({"NNRS": y["NNRS"], "MOOD": y["MOOD"]})
    out = model(x)
    keep = torch.arange(8) != 3
    for name in ["OS", "NNRS"]:
        y_nan = {k: v.clone() for k, v in y.items()}
        y_nan[name][3] = float("nan")
        _, parts = spt_loss(out, y_nan, model=model)
        sub = {k: v[keep] for k, v in y.items()}
        _, parts_sub = spt_loss({k: v[keep] for k, v in out.items()}, sub, model=model)
        assert torch.allclose(parts[name], parts_sub[name], rtol=1e-6, atol=1e-7)
        assert torch.isfinite(parts[name])
    # an explicit mask acts like NaN
    _, parts_mask = spt_loss(out, y, {"OS": keep}, model=model)
    _, parts_sub = spt_loss(
        {k: v[keep] for k, v in out.items()}, {"OS": y["OS"][keep]}, model=model
    )
    assert torch.allclose(parts_mask["OS"], parts_sub["OS"], rtol=1e-6)
    # a task without labels contributes exactly 0 and NaN never reaches the gradient
    y_empty = dict(y, CN=torch.full((8,), float("nan")))
    total, parts = spt_loss(model(x), y_empty, model=model)
    assert float(parts["CN"].detach()) == 0.0
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # weights and partial targets
    w_total, w_parts = spt_loss(out, {"OS": y["OS"]}, weights={"OS": 2.0}, model=model)
    assert torch.allclose(w_total, 2.0 * w_parts["OS"]) and float(w_parts["NNRS"].detach()) == 0.0


def test_loss_errors():
    model = make_model()
    x, y = synthetic(4)
    out = model(x)
    with pytest.raises(ModelError, match="not among its classes"):
        spt_loss(out, dict(y, OS=torch.tensor([2.0, 3.0, 5.0, 2.0])), model=model)
    with pytest.raises(ModelError, match="'PSGO' is not a task"):
        spt_loss(out, dict(y, PSGO=y["OS"]), model=model)
    with pytest.raises(ModelError, match="shape"):
        model(torch.rand(2, K + 1))
    with pytest.raises(ModelError, match="CN"):
        model.set_target_scaling({"CN": y["CN"]})


def test_short_overfit():
    torch.manual_seed(0)
    model = make_model(seed=1)
    x, y = synthetic(32, seed=2)
    model.set_periods(x)
    model.set_target_scaling({"NNRS": y["NNRS"], "MOOD": y["MOOD"]})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        total, _ = spt_loss(model(x), y, model=model)
        first = float(total.detach()) if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    with torch.no_grad():
        final, parts = spt_loss(model.eval()(x), y, model=model)
    assert float(final) < 0.05 * first
    pred = model.predict(x)
    assert float((pred["OS"]["value"] == y["OS"]).float().mean()) >= 0.95
    assert float((pred["CN"]["value"] == y["CN"]).float().mean()) >= 0.9
    assert float(parts["NNRS"]) < 0.1


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"n_layers": 2}, "n_layers"),
        ({"d_model": 0}, "d_model"),
        ({"graph_heads": 3}, "'graph_heads'"),
        ({"periods": [4]}, "'periods'"),
        ({"periods": [1, 4]}, "periods"),
        ({"band_channels": []}, "band_channels"),
        ({"use_global": False, "use_bands": False, "use_graph": False}, "'use_graph'"),
        ({"tasks": []}, "tasks"),
        ({"tasks": [{"name": "OS", "kind": "classification"}]}, "tasks"),
        ({"tasks": [{"name": "NNRS", "kind": "regression", "classes": [1, 2]}]}, "tasks"),
        ({"tasks": [{"name": "OS", "kind": "ordinal"}]}, "tasks.0.kind"),
        ({"tasks": [TASKS[2], TASKS[2]]}, "duplicate task names"),
        ({"tasks": [{"name": "a.b", "kind": "regression"}]}, "tasks"),
    ],
)
def test_bad_config_names_key(over, key):
    with pytest.raises(ModelError, match="invalid spt config") as info:
        SPT.from_config(small_config(**over))
    assert key in str(info.value)


def test_non_dict_config():
    with pytest.raises(ModelError, match="must be a dict"):
        SPT.from_config([1, 2])


def test_input_standardisation_round_trips_and_is_off_by_default(tmp_path):
    x, _ = synthetic(32)
    plain = make_model()
    assert not hasattr(plain, "input_mean")
    with pytest.raises(ModelError, match="standardise_input"):
        plain.set_input_scaling(x)
    model = make_model(standardise_input=True).eval()
    before = model(x)["NNRS"].clone()
    model.set_input_scaling(x)
    assert torch.allclose(model.input_mean, x.mean(0), atol=1e-6)
    assert torch.allclose(model.input_std, x.std(0, unbiased=False), atol=1e-5)
    assert not torch.allclose(model(x)["NNRS"], before)  # the scaling is applied
    # standardised inputs are what the branches see: shifting input_mean by the data shift
    # makes a shifted batch give the same outputs
    shifted = make_model(standardise_input=True).eval()
    shifted.load_state_dict(model.state_dict())
    shifted.input_mean += 0.3
    torch.testing.assert_close(shifted(x + 0.3)["NNRS"], model(x)["NNRS"])
    save_checkpoint(tmp_path / "spt", model, meta())
    loaded, _ = load_checkpoint(tmp_path / "spt")
    torch.testing.assert_close(loaded(x)["NNRS"], model(x)["NNRS"])


def test_class_weights_in_loss():
    model = make_model()
    x, y = synthetic(24)
    out = model(x)
    _, plain = spt_loss(out, y, model=model)
    _, ones = spt_loss(out, y, model=model, class_weights={"OS": torch.ones(3)})
    torch.testing.assert_close(plain["OS"], ones["OS"])
    _, only2 = spt_loss(out, y, model=model, class_weights={"OS": torch.tensor([1.0, 0, 0])})
    keep = y["OS"] == 2
    idx, _ = model.class_indices("OS", y["OS"][keep])
    ref = torch.nn.functional.cross_entropy(out["OS"][keep], idx)
    torch.testing.assert_close(only2["OS"], ref)
    with pytest.raises(ModelError, match="one weight per class"):
        spt_loss(out, y, model=model, class_weights={"OS": torch.ones(2)})
    with pytest.raises(ModelError, match="not a task"):
        spt_loss(out, y, model=model, class_weights={"XX": torch.ones(2)})
