"""xas-train rankaae: config errors, a run on a synthetic store whose OS and CN set the
spectra (latent alignment, scores, measured standards raw vs SDM, outputs, checkpoint), bad
inputs, and a short run on the shipped default data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from xas_data.store import XASDataset
from xas_train.errors import ConfigError, TrainError
from xas_train.rankaae_training import (
    MODEL_LABEL,
    load_rankaae_config,
    parse_rankaae_config,
    run_rankaae,
    spearman,
)

K = 60
START = 8980.0
STEP = 0.5
OS_EDGE = {1: 8990.0, 2: 8993.0, 3: 8996.0}  # edge position (eV) set by the OS
CN_PEAK = {4: 0.4, 6: 1.2}  # white-line height set by the CN


def synthetic_spectra(os_: np.ndarray, cn: np.ndarray, rng, broaden: float = 1.0) -> np.ndarray:
    """K-edge-like spectra ``[N, K]`` on ``START + STEP * k`` eV: the edge position follows
    the OS, the white-line height the CN (plus small noise); ``broaden`` widens the edge."""
    e = START + STEP * np.arange(K)
    e0 = np.array([OS_EDGE[int(o)] for o in os_]) + rng.normal(0.0, 0.3, len(os_))
    peak = np.array([CN_PEAK[int(c)] for c in cn]) * rng.uniform(0.9, 1.1, len(cn))
    edge = 1.0 / (1.0 + np.exp(-(e[None] - e0[:, None]) / (0.8 * broaden)))
    white = peak[:, None] * np.exp(-(((e[None] - e0[:, None] - 2.0) / (1.5 * broaden)) ** 2))
    return (edge + white + 0.01 * rng.standard_normal((len(os_), K))).astype(np.float32)


def _structure() -> Structure:
    """Rock-salt CuO (Cu-O 2.1 Angstrom, CN 6); site 0 is Cu."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.2), ["Cu", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def make_sim_store(path: Path, n: int = 150, seed: int = 0) -> Path:
    """Cu FEFF spectra of ``n`` one-site materials with OS / CN descriptor features, split
    70/15/15 by material."""
    rng = np.random.default_rng(seed)
    ds = XASDataset.create(path, "synthetic-rankaae", chunk_rows=64)
    ids = [f"syn-{i:04d}" for i in range(n)]
    ds.add_materials(ids, [_structure()] * n, ["synthetic"] * n)
    os_ = rng.choice([1, 2, 3], n)
    cn = rng.choice([4, 6], n)
    splits = np.array(["train"] * n, dtype=object)
    splits[int(0.7 * n) : int(0.85 * n)] = "val"
    splits[int(0.85 * n) :] = "test"
    energy = START + STEP * np.arange(K)
    ds.append_spectra("Cu", "FEFF", energy, ids, [0] * n, synthetic_spectra(os_, cn, rng),
                      splits=list(splits))  # fmt: skip
    values = ds.create_features(
        "descriptors-v1-test", 2,
        attrs={"featurizer": "descriptors", "complete": True, "config": {"names": ["OS", "CN"]}},
    )  # fmt: skip
    values[:] = np.stack([os_, cn], axis=1).astype(np.float32)
    return path


def make_measured_store(path: Path, seed: int = 1) -> Path:
    """EXP Cu spectra (broadened, on a finer grid): Cu2O, CuO (linked to a rock-salt CuO
    structure, CN 6) and an unlinked sample without formula."""
    rng = np.random.default_rng(seed)
    ds = XASDataset.create(path, "synthetic-measured", chunk_rows=16)
    samples = [("Cu2O", "Cu2O", 1, 4, ""), ("CuO", "CuO", 2, 6, _structure()),
               ("unknown", "", 3, 4, "")]  # fmt: skip
    ids = [f"exp-{i}" for i in range(len(samples))]
    sources = [json.dumps({"sample": s, "formula": f, "kind": "EXP"}) for s, f, *_ in samples]
    ds.add_materials(ids, [s[4] for s in samples], sources)
    fine = START - 5.0 + 0.25 * np.arange(4 * K + 40)
    coarse = synthetic_spectra(
        np.array([s[2] for s in samples]), np.array([s[3] for s in samples]), rng, broaden=1.3
    )
    grid = START + STEP * np.arange(K)
    spectra = np.stack([np.interp(fine, grid, row) for row in coarse]) * 2.5  # other units
    ds.append_spectra("Cu", "EXP", fine, ids, [0] * len(ids), spectra)
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rankaae-stores")
    return make_sim_store(tmp / "sim.zarr"), make_measured_store(tmp / "exp.zarr")


def base_config(stores, out: Path, **over) -> dict:
    sim, exp = stores
    cfg = {
        "name": "syn",
        "dataset": str(sim),
        "fidelity": "FEFF",
        "element": "Cu",
        "descriptors": ["OS", "CN"],
        "aligned": {"OS": 0, "CN": 1},
        "model": {"n_latent": 3, "encoder_hidden": [32], "decoder_hidden": [32],
                  "disc_hidden": [16]},
        "lr": 3e-3,
        "batch_size": 32,
        "max_epochs": 60,
        "patience": 60,
        "regressor": {"n_members": 3, "hidden": [16], "steps": 150},
        "rf_estimators": 20,
        "measured": str(exp),
        "sdm": {"n_clusters": 3, "n_restarts": 2},
        "output_dir": str(out),
        "mlflow": False,
    }  # fmt: skip
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def synthetic_run(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("rankaae-runs")
    cfg = parse_rankaae_config(
        base_config(stores, out, mlflow=True, tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    )
    return run_rankaae(cfg, progress=None), cfg.run_dir


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"n_epochs": 3}, "n_epochs"),
        ({"model": {"input_dim": 10}}, "model.input_dim"),
        ({"model": {"n_latent": 2}, "aligned": {"OS": 3}}, "aligned"),
        ({"aligned": {}}, "aligned is empty"),
        ({"weights": {"kl": 1.0}}, "'kl'"),
        ({"descriptors": ["OS", "OS"]}, "twice"),
        ({"regressor": {"n_members": 1}}, "regressor.n_members"),
    ],
)
def test_config_errors_name_the_key(over, needle, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(over))
    with pytest.raises(ConfigError, match="invalid rankaae config") as info:
        load_rankaae_config(path)
    assert needle in str(info.value)


def test_config_file_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_rankaae_config(tmp_path / "missing.yaml")
    path = tmp_path / "ok.yaml"
    path.write_text("element: V\n")
    cfg = load_rankaae_config(path, ["max_epochs=7", "regressor.n_members=3"])
    assert (cfg.element, cfg.max_epochs, cfg.regressor.n_members) == ("V", 7, 3)
    assert cfg.label_names == ["OS", "CN"]


# ----------------------------------------------------------------------------- synthetic run


def test_trained_latent_aligns_better_than_untrained(synthetic_run):
    report, _ = synthetic_run
    rho, rho0 = report["spearman"], report["spearman_untrained"]
    assert rho["OS"] > 0.8 and rho["CN"] > 0.6, rho
    assert rho["OS"] > abs(rho0["OS"]) + 0.15 and rho["CN"] > abs(rho0["CN"]) + 0.15, (rho, rho0)
    rec = report["reconstruction_mse"]
    assert rec["test"] < 0.5 * rec["test_mean_spectrum"]


def test_scores_against_baselines(synthetic_run):
    report, _ = synthetic_run
    rows = {(r["model"], r["descriptor"]): r for r in report["scores"]}
    assert {m for m, _ in rows} == {MODEL_LABEL, "RF (classifier)", "RF (regressor)",
                                    "majority / mean"}  # fmt: skip
    ours_os = rows[(MODEL_LABEL, "OS")]
    assert ours_os["accuracy"] > 0.8 and ours_os["mae"] < 0.4
    assert ours_os["accuracy"] > rows[("majority / mean", "OS")]["accuracy"] + 0.3
    assert 0.0 <= ours_os["coverage_1sigma"] <= 1.0
    assert np.isfinite(rows[("RF (regressor)", "CN")]["coverage_1sigma"])
    assert np.isnan(rows[("RF (classifier)", "CN")]["coverage_1sigma"])


def test_measured_standards_raw_and_sdm(synthetic_run):
    report, _ = synthetic_run
    m = report["measured"]
    assert m["n"] == 3
    known = [r["known_OS"] for r in m["rows"]]
    assert known == [
        1.0,
        2.0,
        None,
    ]  # from the formula; the third has neither formula nor structure
    assert [r["known_CN"] for r in m["rows"]] == [None, 6.0, None]  # only CuO is linked
    s = m["summary"]["OS"]
    assert (s["n_known"], s["n_scorable"]) == (2, 2)
    for key in ("accuracy_raw", "accuracy_sdm", "mean_raw", "mean_sdm", "mae_raw", "mae_sdm"):
        assert np.isfinite(s[key])
    for row in m["rows"]:
        assert row["OS_raw_std"] >= 0 and row["OS_sdm_class"] in (1.0, 2.0, 3.0)
    assert np.asarray(m["latent"]["sdm"]).shape == (3, 3)


def test_outputs_are_written(synthetic_run):
    report, run_dir = synthetic_run
    for name in ("report.json", "report.md", "latent-alignment.png", "latent-measured.png",
                 "parity-OS.png", "parity-CN.png", "losses.png"):  # fmt: skip
        assert (run_dir / name).stat().st_size > 0, name
    on_disk = json.loads((run_dir / "report.json").read_text())
    assert on_disk["spearman"] == pytest.approx(report["spearman"])
    assert on_disk["mlflow_run_id"] == report["mlflow_run_id"] and report["mlflow_run_id"]
    md = (run_dir / "report.md").read_text()
    assert "Spearman" in md and "accuracy SDM" in md and MODEL_LABEL in md
    training = report["training"]
    assert 1 <= training["best_epoch"] <= training["epochs"] <= 60
    assert len(report["history"]) == training["epochs"]


def test_checkpoint_loads_and_predicts_with_std(synthetic_run, stores):
    from xas_models.checkpoint import load_checkpoint
    from xas_models.inverse import predict_descriptors
    from xas_models.rankaae import RankAAEDescriber

    report, run_dir = synthetic_run
    module, meta = load_checkpoint(run_dir / "model", expected_featurizer="spectrum")
    assert isinstance(module, RankAAEDescriber)
    assert meta.training_data["task"] == "inverse" and meta.elements == ["Cu"]
    assert meta.energy_grid.n_points == K and meta.metrics["OS_accuracy"] > 0.8
    ds = XASDataset.open(stores[0])
    sel = ds.select("Cu", "FEFF", "test")
    spectra = sel.intensities()
    x = torch.from_numpy((spectra / spectra[:, -20:].mean(1, keepdims=True)).astype(np.float32))
    out = module.predict(x)
    assert set(out) == {"OS", "CN"}
    assert out["OS"]["value"].shape == (len(x),) and bool((out["OS"]["std"] > 0).all())
    # the zoo-style entry point: raw spectra on their own grid, normalised inside
    pred = predict_descriptors(spectra * 3.0, sel.energy, "Cu", model=str(run_dir / "model"))
    assert np.allclose([p.value for p in pred["OS"]], out["OS"]["value"].numpy(), atol=1e-4)
    assert all(p.std is not None and p.std > 0 for p in pred["CN"])
    assert set(meta_config := module.config.std_scale) <= {"OS", "CN"} and all(
        v > 0 for v in meta_config.values()
    )  # spread rescaled on the val split
    assert set(report["coverage_1sigma_raw"]) == {"OS", "CN"}


# ----------------------------------------------------------------------------- bad input


def test_unknown_descriptor_names_the_fix(stores, tmp_path):
    cfg = parse_rankaae_config(base_config(stores, tmp_path, descriptors=["OS", "XYZ"]))
    with pytest.raises(TrainError, match="unknown descriptor") as info:
        run_rankaae(cfg, progress=None)
    assert "['OS', 'CN']" in str(info.value)


def test_absent_element_names_the_fix(stores, tmp_path):
    cfg = parse_rankaae_config(base_config(stores, tmp_path, element="Zn", measured=None))
    with pytest.raises(TrainError, match="Zn") as info:
        run_rankaae(cfg, progress=None)
    assert "['Cu']" in str(info.value) and "element" in str(info.value)


def test_measured_store_without_element_fails_before_training(stores, tmp_path):
    sim, _ = stores
    cfg = parse_rankaae_config(base_config(stores, tmp_path, measured=str(sim)))
    with pytest.raises(TrainError, match="no EXP spectra of Cu") as info:
        run_rankaae(cfg, progress=None)
    assert "measured: null" in str(info.value)
    assert not (tmp_path / "syn").exists()


def test_constant_aligned_descriptor_is_refused(stores, tmp_path):
    from xas_train import rankaae_training as rt

    cfg = parse_rankaae_config(base_config(stores, tmp_path, measured=None))
    data, train, _, _ = rt._load_splits(cfg)
    train.labels["OS"][:] = 2.0
    with pytest.raises(TrainError, match="nothing to rank"):
        rt._check_labels(cfg, train)


def test_cli_reports_errors(tmp_path):
    from xas_train.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("n_epochs: 3\n")
    res = CliRunner().invoke(app, ["rankaae", str(bad)])
    assert res.exit_code == 2 and "n_epochs" in res.output
    assert "rankaae" in CliRunner().invoke(app, ["--help"]).output


def test_spearman_handles_ties_and_missing():
    a = np.array([1.0, 2.0, 2.0, 3.0, np.nan])
    assert spearman(a, 10 * a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.ones(5), a))


# ----------------------------------------------------------------------------- real data


def test_short_run_on_default_data(tmp_path):
    cfg = parse_rankaae_config(
        {
            "name": "default-v",
            "element": "V",
            "model": {"n_latent": 3, "encoder_hidden": [32], "decoder_hidden": [32]},
            "batch_size": 16,
            "max_epochs": 8,
            "regressor": {"n_members": 2, "steps": 50},
            "rf_estimators": 10,
            "output_dir": str(tmp_path),
            "mlflow": False,
        }
    )
    report = run_rankaae(cfg, progress=None)
    assert report["n"]["train"] > 20 and report["n"]["test"] > 0
    assert report["kinds"] == {"OS": "classification", "CN": "classification"}
    assert set(report["spearman"]) == {"OS", "CN"}
    assert all(np.isfinite(r["mae"]) for r in report["scores"] if r["model"] == MODEL_LABEL)
    assert (tmp_path / "default-v" / "model" / "model.json").is_file()


def test_shipped_configs_parse():
    root = Path(__file__).resolve().parents[3] / "configs" / "rankaae"
    paths = sorted(root.glob("*.yaml"))
    assert len(paths) >= 2
    for path in paths:
        cfg = load_rankaae_config(path)
        assert cfg.aligned and cfg.measured and cfg.run_dir.parts[0] == "runs"
