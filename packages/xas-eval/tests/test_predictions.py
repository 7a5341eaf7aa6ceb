"""Predictions file format: round trip, validation, atomic writes, discovery, metrics."""

import json
import os
import zipfile

import numpy as np
import pytest

from xas_eval.predictions import Predictions, find_predictions

N, K = 12, 40


@pytest.fixture
def preds() -> Predictions:
    rng = np.random.default_rng(7)
    energy = np.linspace(8979.0, 9039.0, K)
    edge = 1.0 / (1.0 + np.exp(-(energy - 8995.0) / 2.0))
    y_true = edge * (1.0 + 0.1 * rng.random((N, 1)) * np.sin(energy / 4.0))
    return Predictions(
        y_true=y_true,
        y_pred=y_true + rng.normal(0.0, 0.05, (N, K)),
        y_train_mean=edge,
        energy=energy,
        site_ids=np.array([f"mp-{i}_00{i % 3}" for i in range(N)]),
        model="expert",
        element="Cu",
        fidelity="FEFF",
        features="acsf-soap",
        run_id="abc123",
        extra={"epochs": 3, "note": "tiny", "lr": [0.001, 0.0001]},
    )


def test_round_trip(preds, tmp_path):
    path = preds.save(tmp_path / "run" / "predictions.npz")
    assert path == tmp_path / "run" / "predictions.npz"
    back = Predictions.load(path)
    for name in ("y_true", "y_pred", "y_train_mean", "energy"):
        np.testing.assert_array_equal(getattr(back, name), getattr(preds, name))
    assert back.site_ids.dtype.kind == "U"
    assert back.site_ids.tolist() == preds.site_ids.tolist()
    assert (back.model, back.element, back.fidelity, back.split) == ("expert", "Cu", "FEFF", "test")
    assert (back.features, back.run_id) == ("acsf-soap", "abc123")
    assert back.extra == {"epochs": 3, "note": "tiny", "lr": [0.001, 0.0001]}
    assert back.metrics() == preds.metrics()


def test_file_has_no_pickles_and_json_metadata(preds, tmp_path):
    path = preds.save(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as data:
        assert {"y_true", "y_pred", "y_train_mean", "energy", "site_ids", "metadata"} <= set(
            data.files
        )
        for key in data.files:
            assert data[key].dtype != object
        meta = json.loads(str(data["metadata"]))
    assert meta["model"] == "expert" and meta["format_version"] == 1


def test_save_to_directory(preds, tmp_path):
    path = preds.save(tmp_path)
    assert path == tmp_path / "predictions.npz" and path.is_file()


def test_metrics_match_independent_computation(preds):
    m = preds.metrics()
    err = ((preds.y_true - preds.y_pred) ** 2).mean(axis=1)
    err_base = ((preds.y_true - preds.y_train_mean[None, :]) ** 2).mean(axis=1)
    assert m["n"] == N
    assert m["xi"] == pytest.approx(np.median(err))
    assert m["xi_baseline"] == pytest.approx(np.median(err_base))
    assert m["eta"] == pytest.approx(np.median(err_base) / np.median(err))
    rse = ((preds.y_true - preds.y_pred) ** 2).sum(1) / (preds.y_true**2).sum(1)
    assert m["mean_rse"] == pytest.approx(rse.mean())
    r = [np.corrcoef(a, b)[0, 1] for a, b in zip(preds.y_true, preds.y_pred, strict=True)]
    assert m["median_pearson"] == pytest.approx(np.median(r))
    assert m["mean_edge_error_ev"] >= 0.0
    perfect = Predictions(**{**preds.__dict__, "y_pred": preds.y_true.copy()}).metrics()
    assert perfect["eta"] == np.inf and perfect["mean_edge_error_ev"] == 0.0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"y_pred": np.zeros((N, K - 1))}, "y_pred has shape"),
        ({"y_true": np.zeros(K)}, "y_true has shape"),
        ({"y_train_mean": np.zeros((5, K))}, r"y_train_mean .*mean\(axis=0\)"),
        ({"energy": np.linspace(0, 1, K + 1)}, "energy has shape"),
        ({"energy": np.linspace(1, 0, K)}, "strictly increasing"),
        ({"site_ids": np.array(["a"] * (N - 1))}, "site_ids has shape"),
        ({"site_ids": np.array(["dup"] * N)}, "not unique"),
        ({"element": ""}, "element is empty"),
        ({"extra": {"bad": object()}}, "not JSON-serialisable"),
    ],
)
def test_save_validates(preds, tmp_path, change, match):
    bad = Predictions(**{**preds.__dict__, **change})
    with pytest.raises(ValueError, match=match):
        bad.save(tmp_path / "predictions.npz")
    assert list(tmp_path.iterdir()) == []


def test_nan_predictions_rejected(preds, tmp_path):
    preds.y_pred[0, 0] = np.nan
    with pytest.raises(ValueError, match="y_pred holds NaN"):
        preds.save(tmp_path / "predictions.npz")


def test_load_validates(preds, tmp_path):
    path = tmp_path / "predictions.npz"
    np.savez(path, y_true=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="not a predictions file.*missing"):
        Predictions.load(path)
    # shapes are checked on load too
    data = dict(np.load(preds.save(path), allow_pickle=False))
    data["y_pred"] = data["y_pred"][:, :-1]
    np.savez(path, **data)
    with pytest.raises(ValueError, match="y_pred has shape"):
        Predictions.load(path)
    with pytest.raises(FileNotFoundError):
        Predictions.load(tmp_path / "nope.npz")


def test_atomic_save_leaves_no_tmp_files(preds, tmp_path, monkeypatch):
    path = preds.save(tmp_path / "predictions.npz")
    preds.save(path)  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.npz"]
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    changed = Predictions(**{**preds.__dict__, "model": "tuned"})
    with pytest.raises(OSError, match="disk full"):
        changed.save(path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.npz"]
    assert path.read_bytes() == before
    assert zipfile.is_zipfile(path) and Predictions.load(path).model == "expert"


def test_find_predictions(preds, tmp_path):
    preds.save(tmp_path / "a" / "predictions.npz")
    Predictions(**{**preds.__dict__, "model": "tuned"}).save(
        tmp_path / "b" / "deep" / "predictions.npz"
    )
    Predictions(**{**preds.__dict__, "model": "other"}).save(tmp_path / "other.npz")
    (tmp_path / "a" / "notes.txt").write_text("not predictions")
    found = find_predictions([tmp_path])
    assert sorted(p.model for p in found) == ["expert", "tuned"]  # folders: predictions.npz only
    found = find_predictions([tmp_path / "a", tmp_path / "other.npz", tmp_path / "a"])
    assert [p.model for p in found] == ["expert", "other"]  # explicit file, no duplicates
    assert [p.model for p in find_predictions(str(tmp_path / "b"))] == ["tuned"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no predictions.npz files found"):
        find_predictions([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_predictions([tmp_path / "missing"])


def test_ensemble_averages_members_matched_by_site():
    from xas_eval.predictions import Predictions, ensemble

    rng = np.random.default_rng(1)
    energy = 9000 + 0.25 * np.arange(30)
    y = np.cumsum(rng.random((12, 30)), axis=1)
    ids = np.array([f"mp-{i}_000" for i in range(12)])
    members = []
    for k in range(3):
        order = rng.permutation(12)
        pred = y + rng.normal(scale=0.3, size=y.shape)
        members.append(
            Predictions(y[order], pred[order], y.mean(0), energy, ids[order], f"m{k}", "Cu", "FEFF")
        )
    combined = ensemble(members)
    o = np.argsort(ids)
    expected = np.mean([m.y_pred[np.argsort(m.site_ids)] for m in members], axis=0)
    np.testing.assert_allclose(combined.y_pred, expected)
    np.testing.assert_allclose(combined.y_true, y[o])
    # averaging independent noise lowers the median error
    assert combined.metrics()["xi"] < min(m.metrics()["xi"] for m in members)
    bad = Predictions(y[:11], y[:11], y.mean(0), energy, ids[:11], "x", "Cu", "FEFF")
    with pytest.raises(ValueError, match="different site sets"):
        ensemble([members[0], bad])
    with pytest.raises(ValueError, match="at least 2"):
        ensemble(members[:1])


def test_zoo_model_card_matches_a_re_evaluation():
    """The shipped zoo's tuned Cu model re-evaluated on the default dataset's test split gives
    the metrics written in its model card."""
    from pathlib import Path

    from xas_eval.evaluate import evaluate_checkpoint

    zoo = Path(__file__).resolve().parents[3] / "model-zoo"
    preds, checks = evaluate_checkpoint(
        "xasblock-chgnet-default-feff-fast-tuned-cu", "default", "test", zoo=str(zoo)
    )
    assert [p.element for p in preds] == ["Cu"] and preds[0].n == 9
    eta = [c for c in checks if c.metric == "eta"]
    assert len(eta) == 1 and eta[0].card is not None and eta[0].matches, eta
    on_card = [c for c in checks if c.card is not None]
    assert all(c.matches for c in on_card), [c for c in on_card if not c.matches]
    with pytest.raises(ValueError, match="no .* spectra in the 'test' split"):
        evaluate_checkpoint(
            "xasblock-chgnet-default-feff-fast-tuned-cr", "default", "test", zoo=str(zoo)
        )
