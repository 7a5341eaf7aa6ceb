"""OmniXAS "Table I" report: eta per model, improvement and win rates, with plots.

Input is a list of :class:`~xas_eval.predictions.Predictions`, at most one per
(element, fidelity, model label). Rows are (element, fidelity) pairs, FEFF first and then the
other fidelities, elements by atomic number. The candidate of a row (default ``tuned``) is
compared with the reference (default ``expert``) on the same test sites (matched by site id);
where a row has no candidate but a ``cross-fidelity`` model, that one is the candidate (the
OmniXAS VASP rows compare models fine-tuned from FEFF with VASP experts).

Plots are drawn with Matplotlib's Agg canvas directly (no pyplot, no global backend change);
Matplotlib is imported only when plotting.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xas_data.io_utils import atomic_write_bytes, atomic_write_text
from xas_eval import metrics as _m
from xas_eval.predictions import Predictions

MODEL_ORDER = ("expert", "universal", "tuned", "cross-fidelity")
CROSS_FIDELITY = "cross-fidelity"
DPI = 150
ENERGY_LABEL = "Energy (eV)"
MU_LABEL = "mu(E) (norm.)"

_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As "
    "Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu "
    "Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U"
).split()
_Z = {s: z for z, s in enumerate(_SYMBOLS, start=1)}

Group = dict[str, Predictions]


# ----------------------------------------------------------------------------- table


def model_labels(preds: Sequence[Predictions]) -> list[str]:
    """Model labels present: expert, universal, tuned, cross-fidelity, then others sorted."""
    present = {p.model for p in preds}
    known = [m for m in MODEL_ORDER if m in present]
    return known + sorted(present - set(MODEL_ORDER))


def _row_key(key: tuple[str, str]) -> tuple:
    element, fidelity = key
    return (fidelity.upper() != "FEFF", fidelity, _Z.get(element, 1000), element)


def group_predictions(preds: Sequence[Predictions]) -> dict[tuple[str, str], Group]:
    """``{(element, fidelity): {model: Predictions}}`` in table row order.

    Raises ``ValueError`` when one (element, fidelity, model) occurs twice.
    """
    groups: dict[tuple[str, str], Group] = {}
    for p in preds:
        p.validate()
        group = groups.setdefault((p.element, p.fidelity), {})
        if p.model in group:
            other = group[p.model]
            raise ValueError(
                f"two predictions for model {p.model!r} on {p.element} {p.fidelity} "
                f"(splits {other.split!r} and {p.split!r}, runs {other.run_id!r} and "
                f"{p.run_id!r}); pass one file per model, element and fidelity"
            )
        group[p.model] = p
    order = model_labels(preds)
    return {
        key: {m: groups[key][m] for m in order if m in groups[key]}
        for key in sorted(groups, key=_row_key)
    }


def pick_candidate(models: Sequence[str], reference: str, candidate: str) -> str | None:
    """The model compared with ``reference`` in a row, or None when there is no pair.

    ``candidate`` when present, else ``cross-fidelity`` when present (and not the reference).
    """
    if reference not in models:
        return None
    if candidate in models and candidate != reference:
        return candidate
    if candidate not in models and CROSS_FIDELITY in models and reference != CROSS_FIDELITY:
        return CROSS_FIDELITY
    return None


def align(reference: Predictions, candidate: Predictions) -> Predictions:
    """``candidate`` with its rows reordered to ``reference``'s site order.

    Raises ``ValueError`` when the two do not hold the same sites, energy grid or true
    spectra (then the comparison would not be like for like).
    """
    what = f"{candidate.model!r} vs {reference.model!r} on {reference.element} {reference.fidelity}"
    ref_ids, cand_ids = set(reference.site_ids.tolist()), set(candidate.site_ids.tolist())
    if ref_ids != cand_ids:
        only_ref = sorted(ref_ids - cand_ids)
        only_cand = sorted(cand_ids - ref_ids)
        raise ValueError(
            f"{what}: the site sets differ ({len(only_ref)} sites only in {reference.model!r}, "
            f"e.g. {only_ref[:3]}; {len(only_cand)} only in {candidate.model!r}, e.g. "
            f"{only_cand[:3]}); evaluate both models on the same split of the same dataset"
        )
    if candidate.energy.shape != reference.energy.shape or not np.allclose(
        candidate.energy, reference.energy, rtol=0, atol=1e-6
    ):
        raise ValueError(f"{what}: the energy grids differ; predict on the same grid")
    index = {s: i for i, s in enumerate(candidate.site_ids.tolist())}
    order = np.array([index[s] for s in reference.site_ids.tolist()])
    y_true = candidate.y_true[order]
    if not np.allclose(y_true, reference.y_true, rtol=1e-5, atol=1e-6):
        raise ValueError(
            f"{what}: the true spectra differ for the same site ids; "
            "both files must come from the same dataset version and normalisation"
        )
    return Predictions(
        y_true=y_true,
        y_pred=candidate.y_pred[order],
        y_train_mean=candidate.y_train_mean,
        energy=candidate.energy,
        site_ids=candidate.site_ids[order],
        model=candidate.model,
        element=candidate.element,
        fidelity=candidate.fidelity,
        split=candidate.split,
        features=candidate.features,
        run_id=candidate.run_id,
        extra=dict(candidate.extra),
    )


def _eta(p: Predictions) -> float:
    xi = float(np.median(p.errors()))
    xi_base = float(np.median(p.baseline_errors()))
    return xi_base / xi if xi > 0 else math.inf


def table_one(
    preds: Sequence[Predictions], reference: str = "expert", candidate: str = "tuned"
) -> list[dict[str, Any]]:
    """Rows of OmniXAS Table I, one per (element, fidelity).

    Keys: ``element``, ``fidelity``, ``n_test`` (spectra of the reference, else of the first
    model), ``eta <label>`` for every model label present in ``preds`` (None where the row has
    no such model), ``candidate`` (the label compared with ``reference``), ``improvement %``
    = (eta_candidate / eta_reference - 1) * 100, ``w_e %`` and ``w_s %`` (candidate's win
    rates over the reference in per cent, computed on the sites matched by id). Missing
    values are None. Raises ``ValueError`` if compared models hold different site sets.
    """
    labels = model_labels(preds)
    rows = []
    for (element, fidelity), group in group_predictions(preds).items():
        etas = {m: _eta(p) for m, p in group.items()}
        first = group[reference] if reference in group else next(iter(group.values()))
        row: dict[str, Any] = {"element": element, "fidelity": fidelity, "n_test": first.n}
        row.update({f"eta {m}": etas.get(m) for m in labels})
        cand = pick_candidate(list(group), reference, candidate)
        row["candidate"] = cand
        row["improvement %"] = row["w_e %"] = row["w_s %"] = None
        if cand is not None:
            ref_p, cand_p = group[reference], align(group[reference], group[cand])
            if etas[reference] > 0:  # 0 only when the baseline is exact (degenerate data)
                row["improvement %"] = (etas[cand] / etas[reference] - 1.0) * 100.0
            row["w_e %"] = 100.0 * _m.win_rate_energy(ref_p.y_true, cand_p.y_pred, ref_p.y_pred)
            row["w_s %"] = 100.0 * _m.win_rate_spectra(ref_p.y_true, cand_p.y_pred, ref_p.y_pred)
        rows.append(row)
    return rows


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if key.startswith("eta"):
            return f"{value:.2f}"
        if key.endswith("%"):
            return f"{value:.1f}"
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of ``rows`` (columns: keys in order of first appearance).

    None (and NaN) shows as ``n/a``; columns whose key starts with ``eta`` get 2 decimals,
    columns ending in ``%`` 1 decimal, other floats 4 significant digits. Numeric columns are
    right-aligned.
    """
    if not rows:
        return "_(no rows)_\n"
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]

    def numeric(col: str) -> bool:
        values = [r.get(col) for r in rows if r.get(col) is not None]
        return bool(values) and all(
            isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            for v in values
        )

    lines = [
        "| " + " | ".join(_cell("", c) for c in columns) + " |",
        "|" + "|".join("---:" if numeric(c) else "---" for c in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c, row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def model_metrics_rows(preds: Sequence[Predictions]) -> list[dict[str, Any]]:
    """Per-model summary rows (element, fidelity, model, split, features, n, eta, xi, RSE,
    Pearson r, edge-energy error in eV), in table order."""
    rows = []
    for (element, fidelity), group in group_predictions(preds).items():
        for model, p in group.items():
            m = p.metrics()
            rows.append(
                {
                    "element": element,
                    "fidelity": fidelity,
                    "model": model,
                    "split": p.split,
                    "features": p.features or None,
                    "n": m["n"],
                    "eta": m["eta"],
                    "xi (median MSE)": m["xi"],
                    "mean RSE": m["mean_rse"],
                    "median Pearson r": m["median_pearson"],
                    "mean edge-energy error (eV)": m["mean_edge_error_ev"],
                }
            )
    return rows


# ----------------------------------------------------------------------------- plots


def _slug(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9.+-]+", "-", p).strip("-") or "x" for p in parts)


def _figure(layout: str | None = "constrained", **kwargs: Any):
    """A Matplotlib figure on an Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(layout=layout, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _color(label: str, labels: Sequence[str]) -> str:
    return f"C{list(labels).index(label) % 10}" if label in labels else "C9"


def plot_spectra_by_decile(p: Predictions, path: Path, color: str = "C0") -> Path:
    """2x5 panels: for each decile of ``J_i`` the test spectrum at the middle of that decile
    (true, predicted, and the baseline as a thin grey line); energies in eV."""
    errors = p.errors()
    order = np.argsort(errors, kind="stable")
    baseline = p.baseline()
    fig = _figure(figsize=(17, 6.5), layout=None)  # manual layout: constrained is 2x slower
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.08, top=0.85, wspace=0.25, hspace=0.4)
    axes = fig.subplots(2, 5, sharex=True)
    for d, ax in enumerate(axes.flat):
        i = order[int(round((d + 0.5) / 10 * (p.n - 1)))]
        ax.plot(p.energy, baseline[i], color="0.6", lw=0.8, label="baseline")
        ax.plot(p.energy, p.y_true[i], color="k", lw=1.4, label="true")
        ax.plot(p.energy, p.y_pred[i], color=color, lw=1.2, ls="--", label="predicted")
        # a fixed title position skips matplotlib's costly automatic placement
        ax.set_title(f"decile {d + 1}: J = {errors[i]:.2e}\n{p.site_ids[i]}", fontsize=9, y=1.01)
        if d >= 5:
            ax.set_xlabel(ENERGY_LABEL)
        if d % 5 == 0:
            ax.set_ylabel(MU_LABEL)
        ax.tick_params(labelsize=8)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(
        f"{p.element} {p.fidelity}, {p.model} ({p.split}, N = {p.n}): "
        "spectra at the middle of each per-spectrum-MSE decile"
    )
    return _save_figure(fig, path)


def plot_error_distribution(group: Group, path: Path, reference: str = "expert") -> Path:
    """Histograms of log10 ``J_i`` for each model of one (element, fidelity) and the baseline
    (mean training spectrum of the reference, else the first model), medians dashed."""
    labels = list(group)
    base_p = group[reference] if reference in group else next(iter(group.values()))
    series = [("baseline", base_p.baseline_errors(), "0.5")]
    series += [(m, p.errors(), _color(m, labels)) for m, p in group.items()]
    positive = np.concatenate([e[e > 0] for _, e, _ in series])
    floor = positive.min() if positive.size else 1e-12
    logs = [(name, np.log10(np.maximum(e, floor)), c) for name, e, c in series]
    lo = min(v.min() for _, v, _ in logs)
    hi = max(v.max() for _, v, _ in logs)
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
    fig = _figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for name, values, c in logs:
        med = float(np.median(values))
        ax.hist(
            values, bins=bins, histtype="step", lw=1.6, color=c, label=f"{name} (N={len(values)})"
        )
        ax.axvline(med, color=c, ls="--", lw=1.2, label=f"median {name}: {10**med:.2e}")
    ax.set_xlabel("log10 J_i (per-spectrum MSE of mu(E) (norm.))")
    ax.set_ylabel("spectra (count)")
    ax.set_title(f"{base_p.element} {base_p.fidelity}: error distribution ({base_p.split})")
    ax.legend(fontsize=8)
    return _save_figure(fig, path)


def plot_eta_per_element(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Grouped bar chart of eta: x = element (element/fidelity when several fidelities),
    one bar per model label; the dashed line at eta = 1 is the baseline."""
    labels = [k[len("eta ") :] for k in rows[0] if k.startswith("eta ")] if rows else []
    several = len({r["fidelity"] for r in rows}) > 1
    names = [f"{r['element']}/{r['fidelity']}" if several else r["element"] for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / max(len(labels), 1)
    fig = _figure(figsize=(max(6.0, 1.1 * len(rows) * max(len(labels), 1) ** 0.5 + 2), 4.5))
    ax = fig.subplots()
    for j, label in enumerate(labels):
        values = [r.get(f"eta {label}") for r in rows]
        keep = [i for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        if not keep:
            continue
        offset = (j - (len(labels) - 1) / 2) * width
        bars = ax.bar(
            x[keep] + offset, [values[i] for i in keep], width, label=label, color=f"C{j % 10}"
        )
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.axhline(1.0, color="0.4", ls="--", lw=1, label="baseline (eta = 1)")
    ax.set_xticks(x, names)
    ax.set_xlabel("element/fidelity" if several else "element")
    ax.set_ylabel("eta = xi_baseline / xi_model")
    ax.set_title("eta per element (higher is better)")
    ax.legend(fontsize=8)
    return _save_figure(fig, path)


def plot_energy_improvement(reference: Predictions, candidate: Predictions, path: Path) -> Path:
    """``I(E)`` of ``candidate`` over ``reference`` (normalised by the baseline's median
    squared error) against energy relative to the first grid point (eV)."""
    cand = align(reference, candidate)
    baseline_train = np.atleast_2d(reference.y_train_mean)
    improvement = _m.energy_improvement(
        reference.y_true, cand.y_pred, reference.y_pred, baseline_train
    )
    w_e = 100.0 * _m.win_rate_energy(reference.y_true, cand.y_pred, reference.y_pred)
    de = reference.energy - reference.energy[0]
    fig = _figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.plot(de, improvement, color="k", lw=1.2)
    ax.fill_between(
        de,
        improvement,
        0,
        where=improvement >= 0,
        color="C2",
        alpha=0.4,
        label=f"{candidate.model} better",
    )
    ax.fill_between(
        de,
        improvement,
        0,
        where=improvement < 0,
        color="C3",
        alpha=0.4,
        label=f"{reference.model} better",
    )
    ax.axhline(0.0, color="0.4", lw=0.8)
    # Where the baseline's error is ~0 (e.g. a flat pre-edge) I(E) can be huge; keep the
    # bulk readable with robust limits and say how many points fall outside.
    finite = improvement[np.isfinite(improvement)]
    if finite.size:
        q1, q3 = np.percentile(finite, [25, 75])
        lo = max(finite.min(), q1 - 3.0 * (q3 - q1))  # Tukey's far-out fences
        hi = min(finite.max(), q3 + 3.0 * (q3 - q1))
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        pad = 0.15 * (hi - lo) if hi > lo else 0.1
        ax.set_ylim(lo - pad, hi + pad)
        outside = int(np.sum((finite < lo - pad) | (finite > hi + pad)))
        if outside:
            ax.text(
                0.01,
                0.02,
                f"{outside} point(s) outside the y range",
                transform=ax.transAxes,
                fontsize=8,
                color="0.3",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8},
            )
    ax.set_xlabel(f"Energy relative to {reference.energy[0]:.1f} eV (eV)")
    ax.set_ylabel("I(E) (fraction of baseline error)")
    ax.set_title(
        f"{reference.element} {reference.fidelity}: {candidate.model} over {reference.model} "
        f"(w_e = {w_e:.1f}%)"
    )
    ax.legend(fontsize=8)
    return _save_figure(fig, path)


# ----------------------------------------------------------------------------- report

_LEGEND = """\
- **eta** = xi_baseline / xi_model, where xi is the median over test spectra of the
  per-spectrum MSE J_i = mean_E (mu_true - mu_pred)^2 and the baseline predicts the mean
  training spectrum for every site (eta = 1 is the baseline; higher is better).
- **candidate**: the model compared with the reference `{reference}` in that row
  (`{candidate}`, or `cross-fidelity` where the row has no `{candidate}` model).
- **improvement %** = (eta_candidate / eta_reference - 1) x 100.
- **w_e %**: share of energy points where the candidate's median squared error (over
  spectra) is lower than the reference's; **w_s %**: share of test spectra where the
  candidate's J_i is lower (ties count half). Both use the sites matched by id.
- `n/a`: the model or the pair is not present for that element and fidelity.
"""


def write_report(
    preds: Sequence[Predictions],
    out_dir: str | Path,
    reference: str = "expert",
    candidate: str = "tuned",
) -> Path:
    """Write ``out_dir/report.md`` (Table I, legend, per-model metrics, plot links) and PNG
    plots (150 dpi) next to it; returns the report path. Files are written atomically."""
    preds = list(preds)
    if not preds:
        raise ValueError("no predictions to report on")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = group_predictions(preds)
    rows = table_one(preds, reference=reference, candidate=candidate)
    labels = model_labels(preds)

    plots: dict[tuple[str, str], list[tuple[str, str]]] = {}
    eta_png = plot_eta_per_element(rows, out / "eta_per_element.png").name
    for row, ((element, fidelity), group) in zip(rows, groups.items(), strict=True):
        section = plots.setdefault((element, fidelity), [])
        name = f"error_distribution_{_slug(element, fidelity)}.png"
        plot_error_distribution(group, out / name, reference=reference)
        section.append(("error distribution", name))
        if row["candidate"] is not None:
            name = f"energy_improvement_{_slug(element, fidelity)}.png"
            plot_energy_improvement(group[reference], group[row["candidate"]], out / name)
            section.append((f"I(E) of {row['candidate']} over {reference}", name))
        for model, p in group.items():
            name = f"spectra_by_decile_{_slug(element, fidelity, model)}.png"
            plot_spectra_by_decile(p, out / name, color=_color(model, labels))
            section.append((f"{model}: spectra by error decile", name))

    splits = sorted({p.split for p in preds})
    parts = [
        "# OmniXAS evaluation report\n",
        f"{len(preds)} prediction sets; split(s): {', '.join(splits)}; "
        f"reference `{reference}`, candidate `{candidate}`.\n",
        "## Table I\n",
        render_markdown(rows),
        _LEGEND.format(reference=reference, candidate=candidate),
        "## Per-model metrics\n",
        render_markdown(model_metrics_rows(preds)),
        "mean RSE = mean over spectra of sum_E (mu_true - mu_pred)^2 / sum_E mu_true^2; "
        "Pearson r per spectrum; edge-energy error = |E0(pred) - E0(true)| in eV with E0 at "
        "the maximum of dmu/dE.\n",
        "## Plots\n",
        f"![eta per element]({eta_png})\n",
    ]
    for (element, fidelity), section in plots.items():
        parts.append(f"### {element} {fidelity}\n")
        parts += [f"- [{title}]({name})" for title, name in section]
        parts.append("")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path
