"""RankAAE: losses, training with two optimizers, rank alignment of a latent dimension,
latent regressor ensemble, config errors and checkpoint round trip. Tiny synthetic spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xas_models import CheckpointMeta, EnergyGrid, FeaturizerInfo, ModelError
from xas_models.checkpoint import load_checkpoint, save_checkpoint
from xas_models.rankaae import (
    LatentRegressorEnsemble,
    RankAAE,
    pairwise_rank_loss,
    rankaae_losses,
    train_step,
)
from xas_models.registry import get_model_class

K = 48


def make_model(seed: int = 0, **over) -> RankAAE:
    cfg = {
        "input_dim": K,
        "n_latent": 3,
        "encoder_hidden": [64, 32],
        "decoder_hidden": [32, 64],
        "disc_hidden": [32],
        "aligned": {"E0": 0},
    }
    cfg.update(over)
    torch.manual_seed(seed)
    return RankAAE.from_config(cfg)


def synthetic(n: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Edge-step spectra whose edge position e0 (returned) is the generating scalar."""
    rng = np.random.default_rng(seed)
    e0 = rng.uniform(12.0, 36.0, n)
    width = rng.uniform(1.5, 3.5, n)
    e = np.arange(K)[None, :]
    x = 1.0 / (1.0 + np.exp(-(e - e0[:, None]) / 1.5))
    x = x + 0.8 * np.exp(-(((e - e0[:, None] - 3.0) / width[:, None]) ** 2))
    x = x + 0.01 * rng.standard_normal(x.shape)
    return torch.tensor(x, dtype=torch.float32), e0


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def optimizers(model: RankAAE):
    return (
        torch.optim.Adam(model.autoencoder_parameters(), lr=3e-3),
        torch.optim.Adam(model.discriminator_parameters(), lr=1e-3),
    )


@pytest.fixture(scope="module")
def trained():
    """A RankAAE trained 200 steps on 64 spectra with E0 aligned to latent dim 0."""
    model = make_model()
    x, e0 = synthetic(64)
    opt_ae, opt_disc = optimizers(model)
    gen = torch.Generator().manual_seed(0)
    labels = {"E0": torch.tensor(e0, dtype=torch.float32)}
    history = [train_step(model, opt_ae, opt_disc, x, labels, generator=gen) for _ in range(200)]
    return model.eval(), x, e0, history


def test_shapes_and_loss_terms():
    model = make_model()
    x, e0 = synthetic(8)
    x_hat, z = model(x)
    assert x_hat.shape == (8, K) and z.shape == (8, 3)
    assert model.decode(z).shape == (8, K) and model.discriminate(z).shape == (8,)
    losses = rankaae_losses(model, x, {"E0": torch.tensor(e0), "other": torch.zeros(8)})
    for key in ("reconstruction", "rank", "rank/E0", "adversarial", "discriminator"):
        assert losses[key].ndim == 0 and torch.isfinite(losses[key])
    assert float(losses["rank"].detach()) > 0
    no_labels = rankaae_losses(model, x)
    assert float(no_labels["rank"].detach()) == 0.0
    assert get_model_class("rankaae") is RankAAE
    with pytest.raises(ModelError, match="shape"):
        model(torch.rand(2, K - 1))


def test_pairwise_rank_loss_masks_missing():
    z = torch.tensor([0.0, 1.0, 2.0, -5.0])
    d = torch.tensor([1.0, 2.0, 3.0, float("nan")])
    good = pairwise_rank_loss(z, d)
    assert torch.allclose(good, pairwise_rank_loss(z[:3], d[:3]))
    assert float(good) < float(pairwise_rank_loss(-z[:3], d[:3]))
    assert float(pairwise_rank_loss(z, torch.full((4,), 2.0))) == 0.0  # no pair with d_i != d_j
    assert float(pairwise_rank_loss(z, torch.full((4,), float("nan")))) == 0.0


def test_training_reduces_reconstruction_and_aligns_latent(trained):
    model, x, e0, history = trained
    assert history[-1]["reconstruction"] < 0.1 * history[0]["reconstruction"]
    for key in ("rank", "adversarial", "discriminator", "total"):
        assert np.isfinite(history[-1][key])
    with torch.no_grad():
        z = model.encode(x).numpy()
    assert spearman(z[:, 0], e0) > 0.8


def test_train_step_checks_optimizers_and_weights():
    model = make_model()
    x, _ = synthetic(4)
    opt_all = torch.optim.Adam(model.parameters())
    _, opt_disc = optimizers(model)
    with pytest.raises(ModelError, match="opt_ae"):
        train_step(model, opt_all, opt_disc, x)
    opt_ae, opt_disc = optimizers(model)
    with pytest.raises(ModelError, match="'kl'"):
        train_step(model, opt_ae, opt_disc, x, weights={"kl": 1.0})
    before = [p.detach().clone() for p in model.discriminator_parameters()]
    train_step(model, opt_ae, opt_disc, x, weights={"adversarial": 0.0})
    assert any(
        not torch.equal(a, b) for a, b in zip(before, model.discriminator_parameters(), strict=True)
    )


def test_latent_ensemble(trained):
    model, x, e0, _ = trained
    with torch.no_grad():
        z = model.encode(x)
    ens = LatentRegressorEnsemble(n_members=4, n_latent=3, n_outputs=2)
    y = np.stack([e0, np.where(e0 > 24.0, 3.0, 2.0)], axis=1)  # e.g. a "CN" and an "OS" column
    y[5, 1] = np.nan  # a missing label
    history = ens.fit(z, y, steps=300, seed=0)
    assert history[-1] < 0.2 * history[0]
    mean, std = ens.predict(z)
    assert mean.shape == (64, 2) and std.shape == (64, 2)
    assert bool((std > 0).all())
    assert float(np.corrcoef(mean[:, 0].numpy(), e0)[0, 1]) > 0.95
    # a simple target on random latents is fitted closely
    rng = np.random.default_rng(1)
    zr = rng.standard_normal((80, 3)).astype(np.float32)
    target = 2.0 * zr[:, 0] - zr[:, 1] + 1.0
    simple = LatentRegressorEnsemble(n_members=3, n_latent=3)
    simple.fit(zr, target, steps=300, seed=1)
    mu, sd = simple.predict(zr)
    r2 = 1.0 - float(((mu[:, 0].numpy() - target) ** 2).mean()) / float(target.var())
    assert r2 > 0.95 and float(sd.mean()) > 0
    with pytest.raises(ModelError, match="n_members"):
        LatentRegressorEnsemble(n_members=1, n_latent=3)
    with pytest.raises(ModelError, match="shape"):
        simple.predict(zr[:, :2])


def test_checkpoint_round_trip(trained, tmp_path):
    model, x, _, _ = trained
    meta = CheckpointMeta(
        energy_grid=EnergyGrid(start=8970.0, step=0.5, n_points=K),
        elements=["Cu"],
        edge="K",
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="spectrum", version="1"),
    )
    assert RankAAE.from_config(model.config_dict()).config == model.config
    save_checkpoint(tmp_path / "aae", model, meta)
    loaded, m = load_checkpoint(tmp_path / "aae")
    assert m.architecture == "rankaae" and m.config["aligned"] == {"E0": 0}
    with torch.no_grad():
        for a, b in zip(loaded(x), model(x), strict=True):
            assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"n_latnt": 2}, "n_latnt"),
        ({"n_latent": 0}, "n_latent"),
        ({"aligned": {"OS": 3}}, "'aligned'"),
        ({"aligned": {"OS": 0, "CN": 0}}, "'aligned'"),
        ({"encoder_hidden": [0]}, "encoder_hidden"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_config_names_key(over, key):
    with pytest.raises(ModelError, match="invalid rankaae config") as info:
        make_model(**over)
    assert key in str(info.value)


# ----------------------------------------------------------------------------- describer


@pytest.fixture(scope="module")
def describer(trained):
    """A RankAAEDescriber of the trained autoencoder and a 3-member ensemble on E0 / a class."""
    from xas_models.rankaae import RankAAEDescriber

    model, x, e0, _ = trained
    with torch.no_grad():
        z = model.encode(x)
    ens = LatentRegressorEnsemble(n_members=3, n_latent=3, n_outputs=2, hidden=(16,))
    ens.fit(z, np.stack([e0, np.where(e0 > 24.0, 3.0, 2.0)], axis=1), steps=200, seed=0)
    return RankAAEDescriber.from_parts(model, ens, ["E0", "OS"], {"OS": [2.0, 3.0]}), x, e0


def test_describer_predicts_mean_and_std_like_the_parts(describer, trained):
    model = trained[0]
    desc, x, e0 = describer
    out = desc.predict(x)
    assert set(out) == {"E0", "OS"} and set(out["E0"]) == {"value", "std"}
    assert out["E0"]["value"].shape == (64,) and bool((out["E0"]["std"] > 0).all())
    with torch.no_grad():
        z = model.encode(x)
    assert torch.allclose(desc.encode(x), z, atol=1e-6)
    # forward == predict, and equals the parts it was built from
    fwd = desc(x)
    assert torch.allclose(fwd["OS"]["value"], out["OS"]["value"])
    assert float(np.corrcoef(out["E0"]["value"].numpy(), e0)[0, 1]) > 0.9
    assert [t.name for t in desc.tasks] == ["E0", "OS"]
    assert all(t.kind == "regression" for t in desc.tasks) and desc.tasks[1].classes == (2.0, 3.0)
    rounded = desc.nearest_class("OS", out["OS"]["value"])
    assert set(np.unique(rounded)) <= {2.0, 3.0}
    with pytest.raises(ModelError, match="no classes"):
        desc.nearest_class("E0", out["E0"]["value"])


def test_nearest_class():
    from xas_models.rankaae import nearest_class

    got = nearest_class(np.array([0.2, 2.5, 2.6, 7.0, np.nan]), [4.0, 2.0, 3.0])
    assert np.array_equal(got[:4], [2.0, 2.0, 3.0, 4.0]) and np.isnan(got[4])
    with pytest.raises(ModelError, match="classes"):
        nearest_class(np.array([1.0]), [])


def test_describer_checkpoint_round_trip_and_predict_descriptors(describer, tmp_path):
    from xas_models.inverse import predict_descriptors

    desc, x, _ = describer
    meta = CheckpointMeta(
        energy_grid=EnergyGrid(start=8970.0, step=0.5, n_points=K),
        elements=["Cu"],
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="spectrum", version="post-edge-normalised"),
        training_data={"task": "inverse", "normalisation": {"kind": "post-edge level", "tail": 20}},
    )
    save_checkpoint(tmp_path / "desc", desc, meta)
    loaded, m = load_checkpoint(tmp_path / "desc")
    assert m.architecture == "rankaae-describer" and get_model_class(m.architecture)
    assert loaded.config == desc.config
    a, b = loaded.predict(x), desc.predict(x)
    for name in ("E0", "OS"):
        assert torch.allclose(a[name]["value"], b[name]["value"], atol=1e-5)
        assert torch.allclose(a[name]["std"], b[name]["std"], atol=1e-5)
    # predict_descriptors normalises by the post-edge level: feed pre-normalised spectra * 2
    xn = x.numpy() / x.numpy()[:, -20:].mean(1, keepdims=True)
    energy = 8970.0 + 0.5 * np.arange(K)
    pred = predict_descriptors(2.0 * xn[:4], energy, "Cu", model=(loaded, m))
    ref = loaded.predict(torch.from_numpy(xn[:4].astype(np.float32)))
    assert np.allclose([p.value for p in pred["E0"]], ref["E0"]["value"].numpy(), atol=1e-4)
    assert all(p.kind == "regression" and p.std > 0 for p in pred["OS"])


def test_describer_values_are_clipped_into_the_allowed_class_range(describer, tmp_path):
    from xas_models.inverse import predict_descriptors

    desc, x, _ = describer
    meta = CheckpointMeta(
        energy_grid=EnergyGrid(start=8970.0, step=0.5, n_points=K),
        elements=["Cu"],
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="spectrum", version="post-edge-normalised"),
        training_data={"task": "inverse", "normalisation": {"kind": "post-edge level", "tail": 20}},
    )
    save_checkpoint(tmp_path / "desc", desc, meta)
    loaded, m = load_checkpoint(tmp_path / "desc")
    with torch.no_grad():  # push every OS far below its classes (as on a raw measured spectrum)
        loaded.regressor.y_mean[1] -= 20.0
    energy = 8970.0 + 0.5 * np.arange(K)
    pred = predict_descriptors(x.numpy()[:3], energy, "Cu", model=(loaded, m))
    for p in pred["OS"]:
        assert p.value == 2.0 and p.raw_value < -10 and p.allowed == (2.0, 3.0)
        assert any("outside 2..3" in w and "clipped to 2" in w for w in p.warnings)
    assert all(p.allowed == () and p.raw_value == p.value for p in pred["E0"])  # no classes


def test_describer_config_errors(trained):
    from xas_models.rankaae import RankAAEDescriber

    model = trained[0]
    good = {"autoencoder": model.config_dict(), "descriptors": ["OS"]}
    assert RankAAEDescriber.from_config(good).regressor.n_outputs == 1
    for over, key in [
        ({"n_members": 1}, "n_members"),
        ({"descriptors": []}, "descriptors"),
        ({"descriptors": ["OS", "OS"]}, "descriptors"),
        ({"classes": {"CN": [4.0]}}, "classes"),
        ({"hiden": [8]}, "hiden"),
    ]:
        with pytest.raises(ModelError, match="invalid rankaae-describer config") as info:
            RankAAEDescriber.from_config({**good, **over})
        assert key in str(info.value)
    with pytest.raises(ModelError, match="n_latnt"):
        RankAAEDescriber.from_config({**good, "autoencoder": {"n_latnt": 2}})
    ens = LatentRegressorEnsemble(n_members=2, n_latent=3, n_outputs=2)
    with pytest.raises(ModelError, match="one name per output"):
        RankAAEDescriber.from_parts(model, ens, ["OS"])
    with pytest.raises(ModelError, match="latent dims"):
        RankAAEDescriber.from_parts(model, LatentRegressorEnsemble(2, 4), ["OS"])


def test_describer_std_scale_and_load_in_a_fresh_process(describer, tmp_path):
    import subprocess
    import sys

    desc, x, _ = describer
    raw = desc.predict(x)["OS"]["std"].clone()
    desc.set_std_scale({"OS": 3.0})
    try:
        torch.testing.assert_close(desc.predict(x)["OS"]["std"], raw * 3.0)
        with pytest.raises(ModelError, match="not an output"):
            desc.set_std_scale({"XX": 2.0})
        with pytest.raises(ModelError, match="finite and > 0"):
            desc.set_std_scale({"OS": -1.0})
        meta = CheckpointMeta(
            energy_grid=EnergyGrid(start=8970.0, step=0.5, n_points=K),
            elements=["Cu"],
            fidelity="FEFF",
            featurizer=FeaturizerInfo(name="spectrum", version="post-edge-normalised"),
        )
        save_checkpoint(tmp_path / "desc", desc, meta)
    finally:
        desc.set_std_scale({"OS": 1.0})
    # the architecture is found without importing xas_models.rankaae first
    code = (
        "import sys; from xas_models import load_checkpoint; "
        "m, meta = load_checkpoint(sys.argv[1]); print(type(m).__name__, m.config.std_scale)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "desc")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "RankAAEDescriber {'OS': 3.0}" in out.stdout
