"""Tree baselines on the default store, NaN handling, determinism and plots."""

from __future__ import annotations

import numpy as np
import pytest

from xas_eval.inverse_baselines import TreeBaseline, majority_baseline
from xas_eval.inverse_metrics import interval_coverage, render_table, score_predictions

KINDS = {"OS": "classification", "CN": "classification", "NNRS": "regression"}


@pytest.fixture(scope="module")
def data():
    from xas_eval.inverse_data import load_inverse_data

    return load_inverse_data("default", descriptors=list(KINDS), splits=["train", "test"])


@pytest.mark.parametrize("kind", ["rf", "et"])
def test_baseline_beats_majority_on_default_data(data, kind):
    train, test = data["train"], data["test"]
    model = TreeBaseline(kind, seed=0, n_estimators=60).fit(train.spectra, train.labels, data.kinds)
    preds = model.predict(test.spectra)
    trivial = majority_baseline(train.labels, data.kinds, len(test))
    ours = {
        r["descriptor"]: r
        for r in score_predictions(test.labels, preds, test.element, data.kinds)
        if r["element"] == "all"
    }
    base = {
        r["descriptor"]: r
        for r in score_predictions(test.labels, trivial, test.element, data.kinds)
        if r["element"] == "all"
    }
    print(f"\n{kind} (60 trees) vs majority/mean on the default test split:")
    print(
        render_table(
            [{"model": kind, **ours[n]} for n in KINDS]
            + [{"model": "majority", **base[n]} for n in KINDS]
        )
    )
    assert ours["OS"]["f1_macro"] > base["OS"]["f1_macro"] + 0.2
    assert ours["OS"]["accuracy"] > base["OS"]["accuracy"]
    assert ours["CN"]["f1_weighted"] > base["CN"]["f1_weighted"]
    proba = model.predict_proba(test.spectra)
    assert set(proba) == {"OS", "CN"}
    assert proba["OS"].shape == (len(test), len(model.classes_["OS"]))
    np.testing.assert_allclose(proba["OS"].sum(axis=1), 1.0)
    assert model.classes_["OS"].tolist() == data.classes["OS"]
    std = model.predict_std(test.spectra)
    assert set(std) == {"NNRS"} and np.all(std["NNRS"] >= 0)
    cov = interval_coverage(test.labels["NNRS"], preds["NNRS"], std["NNRS"], k=2)
    print(f"{kind} NNRS coverage of mean +- 2 std: {cov:.2f}")
    assert 0.0 < cov <= 1.0


def test_gradient_boosting_fits_and_predicts(data):
    train, test = data["train"], data["test"]
    model = TreeBaseline("gb", seed=0, n_estimators=10).fit(
        train.spectra, {"OS": train.labels["OS"], "NNRS": train.labels["NNRS"]}, data.kinds
    )
    preds = model.predict(test.spectra)
    assert preds["OS"].shape == (len(test),)
    assert set(np.unique(preds["OS"])) <= set(data.classes["OS"])
    with pytest.raises(ValueError, match="rf"):
        model.predict_std(test.spectra)


def _toy(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(float)
    x = rng.normal(size=(n, 10)) + y[:, None]
    return x, y


def test_nan_labels_are_skipped_and_single_class_predicts_it():
    x, y = _toy()
    y_nan = y.copy()
    y_nan[:40] = np.nan
    labels = {
        "A": y_nan,
        "B": np.where(np.arange(len(y)) % 2, 5.0, np.nan),  # one class among the labelled
        "R": np.where(np.arange(len(y)) < 10, np.nan, y * 0.5),
        "E": np.full(len(y), np.nan),
    }
    kinds = {"A": "classification", "B": "classification", "R": "regression", "E": "regression"}
    model = TreeBaseline("rf", seed=1, n_estimators=20).fit(x, labels, kinds)
    assert model.n_train_ == {"A": 80, "B": 60, "R": 110, "E": 0}
    assert model.models_["A"].n_features_in_ == 10
    assert "B" not in model.models_ and model.skipped == ["E"]
    preds = model.predict(x[:7])
    np.testing.assert_array_equal(preds["B"], 5.0)
    assert np.all(np.isnan(preds["E"]))
    assert np.mean(model.predict(x)["A"][40:] == y[40:]) > 0.9
    np.testing.assert_array_equal(model.predict_proba(x[:3])["B"], np.ones((3, 1)))
    again = TreeBaseline("rf", seed=1, n_estimators=20).fit(x, labels, kinds).predict(x)
    for name in preds:
        np.testing.assert_array_equal(again[name][:7], preds[name])
    with pytest.raises(ValueError, match="points"):
        model.predict(x[:, :5])
    with pytest.raises(ValueError, match="unknown baseline kind"):
        TreeBaseline("svm")


def test_plots_write_non_empty_pngs(tmp_path):
    from xas_eval.inverse_plots import plot_confusion, plot_parity, plot_robustness

    x, y = _toy(60)
    pred = y.copy()
    pred[:5] = (pred[:5] + 1) % 3
    paths = [
        plot_confusion(y, pred, [0.0, 1.0, 2.0], tmp_path / "sub" / "cm.png", "toy OS"),
        plot_parity(y, pred + 0.1, tmp_path / "parity.png", "toy", std=np.full(60, 0.2)),
        plot_parity(np.r_[y, np.nan], np.r_[pred, 1.0], tmp_path / "parity2.png"),
        plot_robustness(
            [
                {"noise": s, "shift_ev": 0.0, "descriptor": d, "kind": k, "score": 1 - s}
                for s in (0.0, 0.1)
                for d, k in (("OS", "classification"), ("NNRS", "regression"))
            ],
            tmp_path / "robust.png",
        ),
    ]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert not list(tmp_path.rglob("*.tmp"))
