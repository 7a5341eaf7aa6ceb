"""Compare models (or ablation variants) evaluated on the same sites.

Each model is given as a label and its predictions (one :class:`Predictions` per element, all
on the same split). Metrics are pooled over elements: each spectrum keeps its own element's
eta baseline (the mean training spectrum of that element), so the pooled ``eta`` is
``median_i J_i(baseline) / median_i J_i(model)`` over all spectra of all elements. The
spectrum, derivative and curvature errors are those of :meth:`Predictions.metrics` (per grid
step, spectrum units).

``ablation_rows`` lays the same numbers out as the XANE(3) paper's ablation table: every
variant against the full model, with the total loss (spectrum + weighted derivative terms) and
the change of each term in per cent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xas_eval import metrics as _m
from xas_eval.predictions import Predictions


def _check_same_sites(models: Mapping[str, Sequence[Predictions]]) -> None:
    reference_label, reference = next(iter(models.items()))
    want = {(p.element, p.fidelity, p.split): set(p.site_ids.tolist()) for p in reference}
    for label, preds in models.items():
        got = {(p.element, p.fidelity, p.split): set(p.site_ids.tolist()) for p in preds}
        if got != want:
            raise ValueError(
                f"model {label!r} was evaluated on other sites than {reference_label!r} "
                f"({sorted(got)} vs {sorted(want)}); compare predictions of the same dataset, "
                "split and elements"
            )


def pooled_metrics(preds: Sequence[Predictions]) -> dict[str, float]:
    """Metrics of one model pooled over its per-element predictions.

    Returns ``n``, ``eta`` (pooled, see the module doc), ``eta_mean_elements`` (mean of the
    per-element etas), ``mse``, ``derivative_mse``, ``curvature_mse``, ``mean_rse``,
    ``median_pearson`` and ``mean_edge_error_ev``.
    """
    if not preds:
        raise ValueError("no predictions given")
    j_model = np.concatenate([p.errors() for p in preds])
    j_base = np.concatenate([p.baseline_errors() for p in preds])
    y_true = [p.y_true for p in preds]
    y_pred = [p.y_pred for p in preds]

    def cat(fn) -> np.ndarray:
        return np.concatenate([fn(t, q) for t, q in zip(y_true, y_pred, strict=True)])

    edge = np.concatenate([_m.edge_energy_error(p.energy, p.y_true, p.y_pred) for p in preds])
    return {
        "n": int(j_model.size),
        "eta": float(np.median(j_base) / np.median(j_model)),
        "eta_mean_elements": float(np.mean([p.metrics()["eta"] for p in preds])),
        "mse": float(np.mean(j_model)),
        "derivative_mse": float(np.mean(cat(lambda t, q: _m.derivative_mse(t, q, 1)))),
        "curvature_mse": float(np.mean(cat(lambda t, q: _m.derivative_mse(t, q, 2)))),
        "mean_rse": float(np.mean(cat(_m.rse))),
        "median_pearson": float(np.nanmedian(cat(_m.pearson))),
        "mean_edge_error_ev": float(np.mean(edge)),
    }


def comparison_rows(models: Mapping[str, Sequence[Predictions]]) -> list[dict[str, Any]]:
    """One row per model (in the given order) of :func:`pooled_metrics`, labelled ``model``.

    Raises:
        ValueError: when the models were not evaluated on the same sites.
    """
    _check_same_sites(models)
    rows = []
    for label, preds in models.items():
        m = pooled_metrics(preds)
        rows.append(
            {
                "model": label,
                "n": m["n"],
                "eta": m["eta"],
                "eta (mean over elements)": m["eta_mean_elements"],
                "spectrum MSE": m["mse"],
                "derivative MSE": m["derivative_mse"],
                "curvature MSE": m["curvature_mse"],
                "mean RSE": m["mean_rse"],
                "mean edge error (eV)": m["mean_edge_error_ev"],
            }
        )
    return rows


def ablation_rows(
    models: Mapping[str, Sequence[Predictions]],
    full: str,
    d1: float = 0.1,
    d2: float = 0.01,
) -> list[dict[str, Any]]:
    """XANE(3)-style ablation table: each variant's errors and their change against ``full``.

    ``total`` is ``MSE + d1 * derivative MSE + d2 * curvature MSE`` (the training objective
    at full weight, without the E0 term); the ``%`` columns are relative changes against the
    full model (positive = worse).
    """
    if full not in models:
        raise ValueError(f"the full model {full!r} is not among {list(models)}")
    _check_same_sites(models)
    pooled = {label: pooled_metrics(p) for label, p in models.items()}

    def total(m: dict[str, float]) -> float:
        return m["mse"] + d1 * m["derivative_mse"] + d2 * m["curvature_mse"]

    ref = pooled[full]
    rows = []
    for label, m in pooled.items():
        row: dict[str, Any] = {"variant": label, "total": total(m)}
        for key, name in (
            ("mse", "spectrum MSE"),
            ("derivative_mse", "derivative MSE"),
            ("curvature_mse", "curvature MSE"),
        ):
            row[name] = m[key]
        row["eta"] = m["eta"]
        for key, name in (("total", "total"), ("mse", "spectrum MSE")):
            value = row["total"] if key == "total" else m[key]
            base = total(ref) if key == "total" else ref[key]
            row[f"{name} change %"] = 100.0 * (value / base - 1.0)
        rows.append(row)
    return rows
