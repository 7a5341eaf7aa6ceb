"""Model comparison and ablation tables pooled over elements."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from xas_eval.cli import app
from xas_eval.compare import ablation_rows, comparison_rows, pooled_metrics
from xas_eval.metrics import derivative_mse
from xas_eval.predictions import Predictions

K = 30


def _preds(element: str, noise: float, seed: int, n: int = 8, model: str = "m") -> Predictions:
    rng = np.random.default_rng(seed)
    energy = np.linspace(0.0, 14.5, K) + (8979.0 if element == "Cu" else 8333.0)
    edge = 1.0 / (1.0 + np.exp(-(energy - energy[10]) / 1.0))
    y_true = edge * (1.0 + 0.2 * rng.random((n, 1)))
    return Predictions(
        y_true=y_true,
        y_pred=y_true + rng.normal(0.0, noise, (n, K)),
        y_train_mean=edge * 1.1,
        energy=energy,
        site_ids=np.array([f"mp-{i}_000" for i in range(n)]),
        model=model,
        element=element,
        fidelity="FEFF",
        split="test",
    )


def test_derivative_mse_is_the_mse_of_differences():
    t = np.zeros((2, 5))
    p = np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 0]], float)
    np.testing.assert_allclose(derivative_mse(t, p, 1), [1.0, 0.0])
    np.testing.assert_allclose(derivative_mse(t, p, 2), [4.0, 0.0])
    # a constant offset has no derivative or curvature error
    assert derivative_mse(t[:1], p[1:] + 3.0, 1)[0] == 0.0
    with pytest.raises(ValueError, match="order"):
        derivative_mse(t, p, 5)


def test_pooled_metrics_keep_each_elements_baseline():
    cu, ni = _preds("Cu", 0.01, 0), _preds("Ni", 0.02, 1)
    m = pooled_metrics([cu, ni])
    assert m["n"] == 16
    j = np.concatenate([cu.errors(), ni.errors()])
    jb = np.concatenate([cu.baseline_errors(), ni.baseline_errors()])
    assert m["eta"] == pytest.approx(np.median(jb) / np.median(j))
    assert m["eta_mean_elements"] == pytest.approx((cu.metrics()["eta"] + ni.metrics()["eta"]) / 2)
    assert m["mse"] == pytest.approx(np.mean(j))
    assert m["derivative_mse"] > 0 and m["curvature_mse"] > m["derivative_mse"]


def test_better_model_ranks_higher_and_ablation_changes_are_relative():
    models = {
        "full": [_preds("Cu", 0.01, 0), _preds("Ni", 0.01, 1)],
        "worse": [_preds("Cu", 0.03, 0), _preds("Ni", 0.03, 1)],
    }
    rows = comparison_rows(models)
    assert [r["model"] for r in rows] == ["full", "worse"]
    assert rows[0]["eta"] > rows[1]["eta"]
    ab = ablation_rows(models, "full")
    assert ab[0]["spectrum MSE change %"] == pytest.approx(0.0)
    expected = 100 * (ab[1]["spectrum MSE"] / ab[0]["spectrum MSE"] - 1)
    assert ab[1]["spectrum MSE change %"] == pytest.approx(expected)
    assert ab[1]["total change %"] > 500  # 3x the noise -> ~9x the squared errors
    with pytest.raises(ValueError, match="full model"):
        ablation_rows(models, "nope")


def test_models_on_other_sites_are_refused():
    models = {"a": [_preds("Cu", 0.01, 0)], "b": [_preds("Cu", 0.01, 0, n=6)]}
    with pytest.raises(ValueError, match="other sites"):
        comparison_rows(models)


def test_compare_cli(tmp_path):
    for label, noise in (("full", 0.01), ("worse", 0.03)):
        _preds("Cu", noise, 0).save(tmp_path / label / "Cu_FEFF" / "predictions.npz")
    runner = CliRunner()
    res = runner.invoke(
        app, ["compare", f"full={tmp_path / 'full'}", f"worse={tmp_path / 'worse'}"]
    )
    assert res.exit_code == 0, res.output
    assert "| full |" in res.output and "derivative MSE" in res.output
    res = runner.invoke(
        app,
        ["compare", f"full={tmp_path / 'full'}", f"w={tmp_path / 'worse'}", "--ablation", "full"],
    )
    assert res.exit_code == 0 and "total change %" in res.output
    res = runner.invoke(app, ["compare", "nolabel"])
    assert res.exit_code == 2 and "LABEL=PATH" in res.output
