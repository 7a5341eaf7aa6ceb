"""Inverse-problem scores, perturbations, robustness curves and interval coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xas_eval.inverse_metrics import (
    add_noise,
    classification_scores,
    interval_coverage,
    regression_scores,
    render_table,
    robustness_curve,
    score_predictions,
    shift_energy,
)


def test_classification_scores_by_hand_and_nan_labels_ignored():
    # class 1: tp=2 fp=1 fn=0 -> F1 0.8; class 2: tp=1 fp=0 fn=1 -> 2/3; class 3: tp=1 -> 1
    y_true = [1, 1, 2, 2, 3, np.nan, np.nan]
    y_pred = [1, 1, 2, 1, 3, 2, 3]
    s = classification_scores(y_true, y_pred)
    assert s["n"] == 5
    assert s["accuracy"] == pytest.approx(4 / 5)
    assert s["f1_macro"] == pytest.approx((0.8 + 2 / 3 + 1.0) / 3)
    assert s["f1_weighted"] == pytest.approx((2 * 0.8 + 2 * 2 / 3 + 1 * 1.0) / 5)
    empty = classification_scores([np.nan], [1.0])
    assert empty["n"] == 0 and math.isnan(empty["f1_macro"])
    # a missing prediction counts as wrong
    assert classification_scores([1, 2], [1, np.nan])["accuracy"] == 0.5


def test_regression_scores_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    p = np.array([1.5, 2.0, 2.5, 4.0, 100.0])
    s = regression_scores(y, p)
    assert s["n"] == 4
    assert s["mae"] == pytest.approx(1.0 / 4)
    assert s["r2"] == pytest.approx(1 - 0.5 / 5.0)  # SS_res 0.5, SS_tot 5
    assert math.isnan(regression_scores([2.0, 2.0], [2.0, 1.0])["r2"])  # constant labels


def test_score_predictions_rows_per_descriptor_and_element():
    labels = {"OS": np.array([2, 2, 3, 3, np.nan]), "NNRS": np.array([0.1, 0.2, 0.3, 0.4, 0.5])}
    preds = {"OS": np.array([2, 3, 3, 3, 2]), "NNRS": np.array([0.1, 0.2, 0.3, 0.4, 0.5])}
    element = np.array(["Fe", "Fe", "Ni", "Ni", "Ni"])
    kinds = {"OS": "classification", "NNRS": "regression"}
    rows = score_predictions(labels, preds, element, kinds)
    keys = [(r["descriptor"], r["element"]) for r in rows]
    assert keys == [
        ("OS", "Fe"),
        ("OS", "Ni"),
        ("OS", "all"),
        ("NNRS", "Fe"),
        ("NNRS", "Ni"),
        ("NNRS", "all"),
    ]
    by = {k: r for k, r in zip(keys, rows, strict=True)}
    assert by[("OS", "Ni")]["accuracy"] == 1.0 and by[("OS", "Ni")]["n"] == 2
    assert by[("OS", "all")]["accuracy"] == 0.75
    assert by[("NNRS", "all")]["r2"] == pytest.approx(1.0) and by[("NNRS", "all")]["score"] == 1.0
    table = render_table(rows)
    assert table.startswith("| descriptor | kind | element |") and "n/a" not in table.split("\n")[2]
    assert "| OS | classification | all |" in table


def test_shift_by_one_grid_step_moves_a_feature_by_one_step():
    step = 0.25
    x = np.zeros((3, 50), dtype=np.float32)
    x[:, 20] = 1.0
    out = shift_energy(x, step, shifts=[step, -step, 0.0])
    assert out.dtype == np.float32
    assert int(np.argmax(out[0])) == 21 and out[0, 21] == pytest.approx(1.0)
    assert int(np.argmax(out[1])) == 19
    np.testing.assert_array_equal(out[2], x[2])
    half = shift_energy(x[:1], step, shifts=[step / 2])[0]
    assert half[20] == pytest.approx(0.5) and half[21] == pytest.approx(0.5)
    rand = shift_energy(np.tile(np.arange(50.0), (200, 1)), step, max_shift_ev=1.0, rng=0)
    moved = np.arange(50.0)[25] - rand[:, 25]  # a ramp of slope 1/step: offset = s / step
    assert np.abs(moved).max() <= 1.0 / step + 1e-9 and moved.std() > 1.0


def test_noise_amplitude_is_relative_to_the_post_edge_level():
    rng = np.random.default_rng(0)
    x = np.ones((400, 141)) * np.array([[1.0]] * 200 + [[5.0]] * 200)
    noisy = add_noise(x, 0.02, rng)
    assert noisy.shape == x.shape
    assert np.std(noisy[:200] - x[:200]) == pytest.approx(0.02, rel=0.02)
    assert np.std(noisy[200:] - x[200:]) == pytest.approx(0.10, rel=0.02)
    np.testing.assert_array_equal(add_noise(x, 0.0, rng), x)
    a = add_noise(x[:2], 0.1, np.random.default_rng(3))
    b = add_noise(x[:2], 0.1, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


def test_robustness_curve_degrades_a_threshold_predictor():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(float)
    x = np.ones((300, 30))
    x[:, 5] += 0.2 * y  # the class is a small bump at one point

    def predict(s):
        return {"C": (s[:, 5] > 1.1).astype(float), "R": s[:, 5] - 1.0}

    labels = {"C": y, "R": 0.2 * y}
    kinds = {"C": "classification", "R": "regression"}
    rows = robustness_curve(predict, x, labels, kinds, [0.0, 0.05, 0.3], rng=1)
    assert [(r["noise"], r["descriptor"], r["metric"]) for r in rows][:2] == [
        (0.0, "C", "f1_macro"),
        (0.0, "R", "r2"),
    ]
    scores = {(r["noise"], r["descriptor"]): r["score"] for r in rows}
    assert scores[(0.0, "C")] == 1.0 and scores[(0.0, "R")] == pytest.approx(1.0)
    assert scores[(0.3, "C")] < scores[(0.05, "C")] < 1.0
    assert scores[(0.3, "R")] < scores[(0.05, "R")]
    shifted = robustness_curve(
        predict, x, labels, kinds, [0.0], rng=1, shift_ev=1.0, energy_step=0.25
    )
    assert shifted[0]["shift_ev"] == 1.0 and shifted[0]["score"] < 1.0
    with pytest.raises(ValueError, match="energy_step"):
        robustness_curve(predict, x, labels, kinds, [0.0], shift_ev=1.0)


def test_interval_coverage_of_a_calibrated_gaussian():
    rng = np.random.default_rng(0)
    n = 100_000
    mean = rng.normal(size=n)
    std = rng.uniform(0.5, 2.0, n)
    y = mean + std * rng.standard_normal(n)
    assert interval_coverage(y, mean, std, k=1) == pytest.approx(0.6827, abs=0.005)
    assert interval_coverage(y, mean, std, k=2) == pytest.approx(0.9545, abs=0.005)
    y[: n // 2] = np.nan  # NaN-safe: only the finite half counts
    assert interval_coverage(y, mean, std) == pytest.approx(0.6827, abs=0.007)
    assert math.isnan(interval_coverage([np.nan], [0.0], [1.0]))
    assert interval_coverage([0.0, 3.0], [0.0, 0.0], [1.0, 1.0]) == 0.5


def test_coverage_scale_recalibrates_an_overconfident_spread():
    from xas_eval.inverse_metrics import coverage_scale

    rng = np.random.default_rng(3)
    true_sd = rng.uniform(0.5, 2.0, 20000)
    mean = np.zeros_like(true_sd)
    y = rng.normal(mean, true_sd)
    s = coverage_scale(y, mean, true_sd / 4.0)  # 4x over-confident
    assert s == pytest.approx(4.0, rel=0.05)
    assert interval_coverage(y, mean, s * true_sd / 4.0) == pytest.approx(0.6827, abs=0.01)
    assert np.isnan(coverage_scale([np.nan], [0.0], [1.0]))
    with pytest.raises(ValueError, match="target coverage"):
        coverage_scale(y, mean, true_sd, target=1.5)


def test_robustness_rows_per_element_and_table():
    from xas_eval.inverse_metrics import robustness_table

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 16)) + 5.0
    y = (x[:, 3] > 5.0).astype(float)
    elements = np.array(["Cu"] * 20 + ["Ni"] * 20)

    def predict(s):
        return {"OS": (s[:, 3] > 5.0).astype(float)}

    rows = robustness_curve(predict, x, {"OS": y}, {"OS": "classification"}, [0.0, 0.5], 1,
                            elements=elements)  # fmt: skip
    assert {r["element"] for r in rows} == {"all", "Cu", "Ni"}
    clean = {r["element"]: r for r in rows if r["noise"] == 0.0}
    assert clean["Cu"]["n"] == 20 and clean["all"]["n"] == 40 and clean["all"]["score"] == 1.0
    table = robustness_table([{**r, "model": "thr"} for r in rows], element="Ni")
    assert "| thr | OS | f1_macro | 1.000 |" in table and "noise 0.5" in table
    assert robustness_table(rows, shift_ev=3.0) == ""


def test_add_noise_takes_one_amplitude_per_spectrum():
    from xas_eval.inverse_metrics import add_noise

    x = np.ones((3, 400))
    noisy = add_noise(x, np.array([[0.0], [0.1], [0.5]]), rng=0)
    np.testing.assert_array_equal(noisy[0], x[0])
    sd = (noisy - x).std(axis=1)
    assert sd[1] == pytest.approx(0.1, rel=0.15) and sd[2] == pytest.approx(0.5, rel=0.15)
    np.testing.assert_array_equal(add_noise(x, np.zeros((3, 1))), x)
    with pytest.raises(ValueError, match=">= 0"):
        add_noise(x, np.array([[0.1], [-0.1], [0.0]]))
