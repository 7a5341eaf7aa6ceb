"""Plots of inverse-problem results: confusion matrices (classification descriptors), parity
plots (regression descriptors, optional uncertainty bars) and robustness curves.

Matplotlib is imported inside the functions (Agg canvas, no pyplot state); every PNG is
written to a temporary sibling and renamed over the target, so a reader never sees a partial
file. Each function returns the path written.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xas_data.io_utils import atomic_write_bytes

DPI = 150


def _figure(**kwargs: Any):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _label(value: float) -> str:
    return f"{value:g}"


def plot_confusion(
    y_true,
    y_pred,
    classes: Sequence[float] | None,
    path: str | Path,
    title: str = "",
) -> Path:
    """Confusion matrix (rows: true class, columns: predicted) over the rows with a true
    label; cell colour = fraction of the true class, text = count. ``classes`` fixes the
    order (None: every class in ``y_true`` or ``y_pred``); classes outside it are added."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must have the same length")
    keep = np.isfinite(t) & np.isfinite(p)
    t, p = t[keep], p[keep]
    order = [float(c) for c in (list(classes) if classes is not None else [])]
    order += sorted({float(v) for v in np.r_[t, p]} - set(order))
    index = {c: i for i, c in enumerate(order)}
    n = len(order)
    counts = np.zeros((n, n), dtype=int)
    for a, b in zip(t.tolist(), p.tolist(), strict=True):
        counts[index[a], index[b]] += 1
    support = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    size = min(3.0 + 0.35 * n, 14.0)
    fig = _figure(figsize=(size + 1.0, size))
    ax = fig.subplots()
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of true class", shrink=0.8)
    font = 8 if n <= 15 else 5
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                colour = "white" if frac[i, j] > 0.5 else "black"
                ax.text(
                    j, i, str(counts[i, j]), ha="center", va="center", fontsize=font, color=colour
                )
    labels = [_label(c) for c in order]
    ax.set_xticks(range(n), labels, fontsize=font + 1, rotation=90 if n > 15 else 0)
    ax.set_yticks(range(n), labels, fontsize=font + 1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = float(np.mean(t == p)) if t.size else math.nan
    ax.set_title(f"{title}\nN = {t.size}, accuracy = {accuracy:.2f}".strip(), fontsize=10)
    return _save(fig, path)


def plot_parity(
    y_true,
    y_pred,
    path: str | Path,
    title: str = "",
    std=None,
    unit: str = "",
) -> Path:
    """Predicted vs true values over the finite pairs, the diagonal, R^2 and MAE in the
    title; ``std`` [N] draws 1-sigma error bars (e.g. an ensemble spread)."""
    from xas_eval.inverse_metrics import regression_scores

    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must have the same length")
    keep = np.isfinite(t) & np.isfinite(p)
    s = None
    if std is not None:
        s = np.asarray(std, dtype=np.float64).ravel()
        if s.shape != t.shape:
            raise ValueError(f"std {s.shape} must match y_true {t.shape}")
        s = np.where(np.isfinite(s), s, 0.0)[keep]
    t, p = t[keep], p[keep]
    scores = regression_scores(t, p)
    fig = _figure(figsize=(5.0, 5.0))
    ax = fig.subplots()
    if s is not None:
        ax.errorbar(t, p, yerr=s, fmt="o", ms=4, alpha=0.7, elinewidth=0.8, capsize=0)
    else:
        ax.scatter(t, p, s=16, alpha=0.7)
    if t.size:
        lo = float(min(t.min(), (p - (s if s is not None else 0)).min()))
        hi = float(max(t.max(), (p + (s if s is not None else 0)).max()))
        pad = 0.05 * (hi - lo) if hi > lo else 0.5
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.4", lw=1, ls="--")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal", adjustable="box")
    suffix = f" [{unit}]" if unit else ""
    ax.set_xlabel(f"true{suffix}")
    ax.set_ylabel(f"predicted{suffix}")
    r2 = "n/a" if not math.isfinite(scores["r2"]) else f"{scores['r2']:.2f}"
    mae = "n/a" if not math.isfinite(scores["mae"]) else f"{scores['mae']:.3g}"
    ax.set_title(f"{title}\nN = {scores['n']}, R$^2$ = {r2}, MAE = {mae}".strip(), fontsize=10)
    return _save(fig, path)


def plot_robustness(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Rows of :func:`~xas_eval.inverse_metrics.robustness_curve` (several curves may be
    concatenated): score vs relative noise level, one line per descriptor (and line style per
    energy-shift amplitude), classification (F1 macro) and regression (R^2) side by side.
    Only the pooled rows (``element`` "all" or absent) are drawn."""
    rows = [r for r in rows if r.get("element", "all") == "all"]
    if not rows:
        raise ValueError("no robustness rows to plot; run robustness_curve first")
    panels = [k for k in ("classification", "regression") if any(r["kind"] == k for r in rows)]
    shifts = sorted({float(r.get("shift_ev", 0.0)) for r in rows})
    styles = ["-", "--", ":", "-."]
    fig = _figure(figsize=(5.5 * len(panels), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, panel in zip(axes, panels, strict=True):
        names = list(dict.fromkeys(r["descriptor"] for r in rows if r["kind"] == panel))
        for i, name in enumerate(names):
            for j, shift in enumerate(shifts):
                sel = [
                    r
                    for r in rows
                    if r["descriptor"] == name and float(r.get("shift_ev", 0.0)) == shift
                ]
                if not sel:
                    continue
                sel.sort(key=lambda r: r["noise"])
                label = name if len(shifts) == 1 else f"{name}, shift \u00b1{shift:g} eV"
                ax.plot(
                    [r["noise"] for r in sel],
                    [r["score"] for r in sel],
                    marker="o",
                    ms=3,
                    color=f"C{i % 10}",
                    ls=styles[j % len(styles)],
                    label=label,
                )
        ax.set_xlabel("noise sigma (relative to the post-edge level)")
        ax.set_ylabel("F1 macro" if panel == "classification" else "R$^2$")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
