"""Scores of inverse-problem predictions (spectrum -> site descriptors), robustness of a
predictor to noise and energy misalignment, and calibration of ensemble uncertainties.

* Classification descriptors: F1 macro (unweighted mean over classes), F1 weighted (by
  class support) and accuracy, from scikit-learn; the classes are those present in the true
  or predicted labels (sklearn's default), and a class with no true and no predicted
  member cannot appear; zero division counts as 0.
* Regression descriptors: R^2 = 1 - SS_res / SS_tot (NaN when fewer than 2 labels or constant
  labels) and the mean absolute error.
* Rows whose true label is NaN (missing descriptor) are ignored everywhere; a NaN
  prediction for a labelled row counts as wrong (classification) or makes the regression
  scores NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

NOISE_TAIL = 20
"""Grid points averaged for the post-edge level that sets the noise amplitude."""


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _pairs(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must have the same length")
    keep = np.isfinite(t)
    return t[keep], p[keep]


def classification_scores(y_true, y_pred) -> dict[str, float]:
    """``f1_macro``, ``f1_weighted``, ``accuracy`` and ``n`` over the rows with a true label
    (NaN scores when there are none)."""
    from sklearn.metrics import accuracy_score, f1_score

    t, p = _pairs(y_true, y_pred)
    if t.size == 0:
        return {"f1_macro": math.nan, "f1_weighted": math.nan, "accuracy": math.nan, "n": 0}
    # a missing prediction is a class of its own (never equal to a true label)
    p = np.where(np.isfinite(p), p, np.nanmin(np.r_[t, p[np.isfinite(p)]]) - 1e6)
    return {
        "f1_macro": float(f1_score(t, p, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(t, p, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(t, p)),
        "n": int(t.size),
    }


def regression_scores(y_true, y_pred) -> dict[str, float]:
    """``r2``, ``mae`` and ``n`` over the rows with a true label."""
    t, p = _pairs(y_true, y_pred)
    if t.size == 0:
        return {"r2": math.nan, "mae": math.nan, "n": 0}
    residual = t - p
    mae = float(np.mean(np.abs(residual)))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / ss_tot if t.size >= 2 and ss_tot > 0 else math.nan
    return {"r2": r2, "mae": mae, "n": int(t.size)}


def primary_metric(kind: str) -> str:
    """The headline score of a descriptor kind: ``f1_macro`` or ``r2``."""
    if kind == "classification":
        return "f1_macro"
    if kind == "regression":
        return "r2"
    raise ValueError(f"unknown descriptor kind {kind!r}; use classification or regression")


def descriptor_scores(kind: str, y_true, y_pred) -> dict[str, float]:
    """:func:`classification_scores` or :func:`regression_scores` by ``kind``."""
    primary_metric(kind)
    if kind == "classification":
        return classification_scores(y_true, y_pred)
    return regression_scores(y_true, y_pred)


def score_predictions(
    labels: Mapping[str, np.ndarray],
    preds: Mapping[str, np.ndarray],
    element: np.ndarray | Sequence[str],
    kinds: Mapping[str, str],
) -> list[dict[str, Any]]:
    """One row per descriptor and element (sorted, then ``all``) with ``n`` labelled rows and
    the scores of its kind; ``score`` repeats the primary metric (F1 macro or R^2).

    Descriptors in ``labels`` but not in ``preds`` are skipped; (descriptor, element) pairs
    without a labelled row are left out.
    """
    element = np.asarray(element).astype(str)
    rows: list[dict[str, Any]] = []
    for name, y in labels.items():
        if name not in preds:
            continue
        y = np.asarray(y, dtype=np.float64)
        p = np.asarray(preds[name], dtype=np.float64)
        if y.shape != element.shape or p.shape != element.shape:
            raise ValueError(
                f"{name}: labels {y.shape}, predictions {p.shape} and elements "
                f"{element.shape} must have one entry per row"
            )
        kind = kinds[name]
        for el in [*sorted(set(element.tolist())), "all"]:
            mask = np.ones(element.shape, bool) if el == "all" else element == el
            if not np.isfinite(y[mask]).any():
                continue
            scores = descriptor_scores(kind, y[mask], p[mask])
            row = {"descriptor": name, "kind": kind, "element": el, **scores}
            row["score"] = scores[primary_metric(kind)]
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- perturbations


def add_noise(
    spectra: np.ndarray,
    sigma: float | np.ndarray,
    rng: np.random.Generator | int | None = None,
    tail: int = NOISE_TAIL,
) -> np.ndarray:
    """Spectra [N, K] plus Gaussian noise of standard deviation ``sigma`` times each
    spectrum's post-edge level (mean of its last ``tail`` points); same dtype as the input.
    ``sigma`` is one amplitude or one per spectrum (``[N, 1]``); all zero returns a copy."""
    x = np.asarray(spectra)
    s = np.asarray(sigma, dtype=np.float64)
    if (s < 0).any():
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    out = np.array(x, dtype=x.dtype if x.dtype.kind == "f" else np.float64, copy=True)
    if not s.any():
        return out
    flat = np.atleast_2d(out)
    level = np.abs(flat[:, -tail:].astype(np.float64).mean(axis=1, keepdims=True))
    noisy = flat + s * level * _as_rng(rng).standard_normal(flat.shape)
    return noisy.astype(out.dtype).reshape(out.shape)


def shift_energy(
    spectra: np.ndarray,
    energy_step: float,
    max_shift_ev: float = 1.0,
    rng: np.random.Generator | int | None = None,
    shifts: np.ndarray | Sequence[float] | None = None,
) -> np.ndarray:
    """Each spectrum of [N, K] (uniform grid, ``energy_step`` eV apart) moved to higher
    energy by ``s_i`` eV, ``s_i`` uniform in [-max_shift_ev, max_shift_ev] (or the given
    ``shifts`` [N]): ``out_i(E) = spectrum_i(E - s_i)`` by linear interpolation, the first /
    last value held beyond the grid ends. Same dtype as the input."""
    x = np.atleast_2d(np.asarray(spectra))
    if energy_step <= 0:
        raise ValueError(f"energy_step must be > 0 eV, got {energy_step}")
    n, k = x.shape
    if shifts is None:
        s = _as_rng(rng).uniform(-max_shift_ev, max_shift_ev, n)
    else:
        s = np.broadcast_to(np.asarray(shifts, dtype=np.float64), (n,))
    grid = np.arange(k) * float(energy_step)
    out = np.empty(x.shape, dtype=x.dtype if x.dtype.kind == "f" else np.float64)
    for i in range(n):
        out[i] = np.interp(grid - s[i], grid, x[i].astype(np.float64))
    return out.reshape(np.shape(spectra)) if np.ndim(spectra) == 1 else out


def robustness_curve(
    predict_fn: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    spectra: np.ndarray,
    labels: Mapping[str, np.ndarray],
    kinds: Mapping[str, str],
    noise_levels: Sequence[float],
    rng: np.random.Generator | int | None = None,
    shift_ev: float = 0.0,
    energy_step: float | None = None,
    elements: np.ndarray | Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Scores of ``predict_fn`` (spectra -> name -> [N]) on perturbed ``spectra``.

    For each noise level, the spectra are first shifted by random amounts in
    ``+-shift_ev`` eV (:func:`shift_energy`, needs ``energy_step``; skipped when 0), then
    noise of that relative amplitude is added (:func:`add_noise`). One row per noise level
    and descriptor: ``noise``, ``shift_ev``, ``descriptor``, ``kind``, ``metric`` (f1_macro
    or r2), ``score``, ``n``. One ``rng`` draws all perturbations in order, so a seed fixes
    the whole curve.
    """
    gen = _as_rng(rng)
    if shift_ev and energy_step is None:
        raise ValueError("shift_ev > 0 needs energy_step (the grid spacing in eV)")
    groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(np.asarray(spectra)), bool))]
    if elements is not None:
        el = np.asarray(elements).astype(str)
        groups += [(e, el == e) for e in sorted(set(el.tolist()))]
    rows: list[dict[str, Any]] = []
    for level in noise_levels:
        x = np.asarray(spectra)
        if shift_ev:
            x = shift_energy(x, float(energy_step), shift_ev, gen)
        x = add_noise(x, float(level), gen)
        preds = predict_fn(x)
        for name, y in labels.items():
            if name not in preds:
                continue
            metric = primary_metric(kinds[name])
            y, p = np.asarray(y), np.asarray(preds[name])
            for group, sel in groups:
                scores = descriptor_scores(kinds[name], y[sel], p[sel])
                rows.append(
                    {
                        "noise": float(level),
                        "shift_ev": float(shift_ev),
                        "descriptor": name,
                        "kind": kinds[name],
                        "metric": metric,
                        "element": group,
                        "score": scores[metric],
                        "n": scores["n"],
                    }
                )
    return rows


def robustness_table(
    rows: Sequence[Mapping[str, Any]], shift_ev: float = 0.0, element: str = "all"
) -> str:
    """Markdown of :func:`robustness_curve` rows (with a ``model`` key): one line per model and
    descriptor, one column per noise level (F1 macro or R^2), at one shift and element."""
    sel = [
        r
        for r in rows
        if float(r.get("shift_ev", 0.0)) == float(shift_ev) and r.get("element", "all") == element
    ]
    if not sel:
        return ""
    levels = sorted({float(r["noise"]) for r in sel})
    cell = {(r.get("model", ""), r["descriptor"], float(r["noise"])): r for r in sel}
    keys = list(dict.fromkeys((r.get("model", ""), r["descriptor"], r["metric"]) for r in sel))
    head = "| model | descriptor | metric | " + " | ".join(f"noise {v:g}" for v in levels) + " |"
    lines = [head, "|---|---|---|" + "---:|" * len(levels)]
    for model, name, metric in keys:
        vals = [
            format_cell(cell.get((model, name, v), {}).get("score", math.nan), 3) for v in levels
        ]
        lines.append(f"| {model} | {name} | {metric} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- uncertainty


def interval_coverage(y_true, mean, std, k: float = 1.0) -> float:
    """Fraction of rows with ``|y_true - mean| <= k * std`` among those where all three are
    finite (NaN when none are). A calibrated Gaussian predictor covers about 0.683 at
    ``k = 1`` and 0.954 at ``k = 2``."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    m = np.asarray(mean, dtype=np.float64).ravel()
    s = np.asarray(std, dtype=np.float64).ravel()
    if not (t.shape == m.shape == s.shape):
        raise ValueError(f"y_true {t.shape}, mean {m.shape} and std {s.shape} must match")
    keep = np.isfinite(t) & np.isfinite(m) & np.isfinite(s)
    if not keep.any():
        return math.nan
    return float(np.mean(np.abs(t[keep] - m[keep]) <= k * s[keep]))


def coverage_scale(y_true, mean, std, target: float = 0.6827) -> float:
    """Factor ``s`` such that ``mean +- s * std`` covers the fraction ``target`` of the rows
    (the ``target`` quantile of ``|y_true - mean| / std`` over rows where all are finite and
    ``std > 0``): fitted on a validation split, it recalibrates an ensemble's spread. NaN when
    no row qualifies."""
    if not 0 < target < 1:
        raise ValueError(f"target coverage must be in (0, 1), got {target}")
    t = np.asarray(y_true, dtype=np.float64).ravel()
    m = np.asarray(mean, dtype=np.float64).ravel()
    s = np.asarray(std, dtype=np.float64).ravel()
    if not (t.shape == m.shape == s.shape):
        raise ValueError(f"y_true {t.shape}, mean {m.shape} and std {s.shape} must match")
    keep = np.isfinite(t) & np.isfinite(m) & np.isfinite(s) & (s > 0)
    if not keep.any():
        return math.nan
    return float(np.quantile(np.abs(t[keep] - m[keep]) / s[keep], target))


# ----------------------------------------------------------------------------- tables


def format_cell(value: Any, digits: int = 3) -> str:
    """A markdown table cell: ``n/a`` for None / NaN / inf, floats to ``digits`` places,
    integers as they are, other values as text with ``|`` escaped."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3
) -> str:
    """Markdown table of ``rows`` (columns: ``columns`` or every key in order of first
    appearance); floats with ``digits`` decimals, NaN as ``n/a``, numbers right-aligned."""
    if not rows:
        return ""
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(c for c in row if c not in columns)
    numeric = {
        c: all(
            isinstance(r.get(c), int | float | np.integer | np.floating)
            and not isinstance(r.get(c), bool)
            for r in rows
            if c in r
        )
        for c in columns
    }
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if numeric[c] else "---" for c in columns) + "|",
    ]
    for row in rows:
        cells = [format_cell(row[c], digits) if c in row else "" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
