"""An inverse model applied to measured standards, with and without spectral domain mapping.

For the ``EXP`` spectra of one element in a store (``xas-data ingest-measured``), the inverse
model (:func:`xas_models.predict_descriptors`) predicts the descriptors of each measured
spectrum (limited to the classes the element may take, with its training-domain check) as it
is and after SDM (:mod:`xas_models.sdm`, fitted on the simulated spectra of
the element in ``simulated``). Known values: the oxidation state from the formula
(:func:`xas_eval.oxidation.known_oxidation_state`) and the coordination number CN of the
linked structure's absorbing site (xas-features descriptors), where a structure is linked.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from xas_eval.oxidation import accepted_classes, known_oxidation_state, post_edge_normalise


def load_standards(
    measured: str,
    element: str,
    energy: np.ndarray,
    descriptors: list[str] | tuple[str, ...] = ("OS", "CN"),
    tail: int = 20,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The measured ``EXP`` spectra of ``element`` in the store ``measured``, interpolated
    onto ``energy`` ``[K]`` (eV) and divided by their post-edge level (mean of the last
    ``tail`` points, as the simulated spectra), ``[Nm, K]``; and one dict per spectrum:
    ``sample``, ``formula``, ``known_<name>`` for each of ``descriptors`` (OS from the formula
    or the linked structure, the others from the linked structure's absorbing site; None
    when unknown).

    Raises:
        ValueError: no EXP spectra of ``element``, spectra that do not cover ``energy``, or a
            spectrum without a post-edge level.
    """
    from xas_data.store import XASDataset
    from xas_features.descriptor_table import DESCRIPTOR_KINDS
    from xas_features.descriptors import DescriptorFeaturizer

    ds = XASDataset.open(measured)
    if (element, "EXP") not in ds.groups():
        raise ValueError(f"{measured} holds no EXP spectra of {element}; ingest them first")
    sel = ds.select(element, "EXP")
    grid = np.asarray(sel.energy, dtype=np.float64)
    step = float(energy[1] - energy[0])
    if grid[0] > energy[0] + 2 * step or grid[-1] < energy[-1] - 2 * step:
        raise ValueError(
            f"the measured {element} spectra span {grid[0]:.1f}..{grid[-1]:.1f} eV but the "
            f"simulated grid is {energy[0]:.1f}..{energy[-1]:.1f} eV; re-ingest them over "
            "that range"
        )
    raw = np.stack([np.interp(energy, grid, r) for r in sel.intensities()])
    try:
        spectra = post_edge_normalise(raw, tail)
    except ValueError as exc:
        raise ValueError(f"measured {element} spectra in {measured}: {exc}") from None
    # known values from the structure for the descriptors the featurizer computes
    others = [n for n in descriptors if n != "OS" and n in DESCRIPTOR_KINDS]
    featurizer = DescriptorFeaturizer(names=others) if others else None
    cols = sel.sites()  # read once: every call reads the store
    sources = ds.root["materials/source"][:]
    linked = ds.root["materials/structure"][:]
    rows = []
    for i, m in enumerate(int(v) for v in cols["material"]):
        meta = json.loads(sources[m]) if str(sources[m]).startswith("{") else {}
        structure = ds.structure(m) if str(linked[m]) else None
        formula = str(meta.get("formula", ""))
        row: dict[str, Any] = {
            "sample": " ".join(str(meta.get("sample", "")).split()) or f"spectrum {i}",
            "formula": formula,
        }
        if "OS" in descriptors:
            row["known_OS"] = known_oxidation_state(formula, element, structure)
        values = (
            featurizer.featurize([structure], [int(cols["index"][i])])[0]
            if featurizer is not None and structure is not None and len(structure)
            else np.full(len(others), np.nan)
        )
        for name in descriptors:
            row.setdefault(f"known_{name}", None)
        for name, v in zip(others, values, strict=True):
            row[f"known_{name}"] = float(v) if np.isfinite(v) else None
        rows.append(row)
    return spectra, rows


def describe_standards(
    model: Any,
    measured: str,
    element: str,
    simulated: str = "default",
    fidelity: str = "FEFF-fast",
    n_clusters: int = 4,
    seed: int = 0,
    zoo: str | None = None,
) -> dict[str, Any]:
    """Rows (sample, formula, known OS/CN, predicted OS/CN raw and with SDM) and accuracies.

    Raises:
        ValueError: no EXP spectra of ``element`` in ``measured``.
    """
    from xas_data import open_default_dataset
    from xas_data.store import XASDataset
    from xas_models.inverse import predict_descriptors
    from xas_models.predict import resolve_model
    from xas_models.sdm import sdm_map

    loaded = resolve_model(model, "latest", zoo)
    grid = loaded.meta.grid_for(element)
    energy = grid.start + grid.step * np.arange(grid.n_points)
    exp_y, rows = load_standards(measured, element, energy, ("OS", "CN"))
    sim_ds = open_default_dataset() if simulated == "default" else XASDataset.open(simulated)
    ssel = sim_ds.select(element, fidelity)
    sim_y = np.stack([np.interp(energy, ssel.energy, r) for r in ssel.intensities()])
    mapped = sdm_map(post_edge_normalise(sim_y), exp_y, n_clusters=n_clusters, seed=seed).mapped
    raw = predict_descriptors(exp_y, energy, element, model=(loaded.module, loaded.meta))
    sdm = predict_descriptors(mapped, energy, element, model=(loaded.module, loaded.meta))
    for i, row in enumerate(rows):
        for key, pred in (("raw", raw), ("sdm", sdm)):
            for name in ("OS", "CN"):
                if name in pred:
                    row[f"{name}_{key}"] = pred[name][i].value
            first = next(iter(pred.values()))[i]
            row[f"in_domain_{key}"] = first.in_domain
    summary: dict[str, Any] = {"n": len(rows)}
    # a known value the model cannot predict for this element (never seen in its training
    # data, or chemically impossible) is not scored
    classes = _predictable_classes(loaded, element)
    for name in ("OS", "CN"):
        scored = [
            r
            for r in rows
            if r[f"known_{name}"] is not None
            and f"{name}_raw" in r
            and (name not in classes or _accepted(name, r) & classes[name])
        ]
        summary[f"n_{name}"] = len(scored)
        for key in ("raw", "sdm"):
            if scored:
                summary[f"{name}_accuracy_{key}"] = float(
                    np.mean([r[f"{name}_{key}"] in _accepted(name, r) for r in scored])
                )
    return {"rows": rows, "summary": summary, "model": loaded.name, "element": element}


def _accepted(name: str, row: dict[str, Any]) -> set[float]:
    """Predictions scored as right: a mixed-valence OS accepts both neighbouring integers."""
    known = float(row[f"known_{name}"])
    return accepted_classes(known) if name == "OS" else {known}


def _predictable_classes(loaded: Any, element: str) -> dict[str, set[float]]:
    """Descriptor -> the class values the model can predict for ``element`` (its allowed
    classes, :func:`xas_models.domain.allowed_classes`, else all its classes)."""
    from xas_models.domain import allowed_classes

    tasks = loaded.module.tasks
    allowed, _ = allowed_classes(loaded.meta.training_data, loaded.meta.elements, tasks, element)
    out = {t.name: {float(c) for c in t.classes} for t in tasks if t.classes}
    return {**out, **{k: {float(c) for c in v} for k, v in allowed.items() if v}}


def render_standards(result: dict[str, Any]) -> str:
    """Markdown table of :func:`describe_standards` plus the accuracy line."""

    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:g}"

    lines = [
        "| sample | known OS | OS | OS (SDM) | known CN | CN | CN (SDM) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['sample']} | {fmt(r['known_OS'])} | {fmt(r.get('OS_raw'))} | "
            f"{fmt(r.get('OS_sdm'))} | {fmt(r['known_CN'])} | {fmt(r.get('CN_raw'))} | "
            f"{fmt(r.get('CN_sdm'))} |"
        )
    s = result["summary"]
    acc = ", ".join(
        f"{k.replace('_accuracy_', ' accuracy ')} {v:.2f} (of {s['n_' + k.split('_')[0]]})"
        for k, v in s.items()
        if "accuracy" in k
    )
    return (
        "\n".join(lines)
        + f"\n\n{result['element']}: {s['n']} spectra; {acc}. Scored: spectra whose known "
        "value is a class the model was trained on\n"
    )
