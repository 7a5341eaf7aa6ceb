"""Oxidation states of measured standards from a classifier trained on simulated spectra,
with and without spectral domain mapping (SDM, :mod:`xas_models.sdm`).

The classifier (a random forest) learns the oxidation state (OS) of the absorbing site from
simulated spectra of one element; it is applied to measured spectra of standards whose OS is
known from their formula, either as measured or after SDM has mapped them onto the
simulation domain (``T' = S~ C``, a non-negative mixture of cluster centroids of the simulated
spectra). Both domains are put on one intensity scale first: each spectrum is divided by its
mean over the last ``tail`` grid points (the post-edge level), since simulated FEFF labels and
edge-step-normalised measurements have different units. All spectra share one energy grid
(eV); ``energy_shift`` (eV) moves the measured spectra onto the simulated energy scale when an
alignment is known (e.g. the global shift fitted by ``xas-train calibrate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xas_models.spectra import post_edge_normalise

__all__ = ["OxidationCheck", "accepted_classes", "check_stores", "known_oxidation_state",
           "oxidation_state_check", "post_edge_normalise"]  # fmt: skip


def known_oxidation_state(formula: str, element: str, structure: Any = None) -> float | None:
    """Oxidation state of ``element`` in a standard; 0 for the pure element, None when none can
    be assigned. A mixed-valence compound gives its average (Fe3O4: 2.67).

    From the linked ``structure`` (an ordered pymatgen Structure) when there is one: bond
    valence sums (pymatgen's ``BVAnalyzer``), else charge balance that counts anion pairs
    (S-S, Se-Se, O-O bonds) as X2(2-) (pyrite FeS2 is Fe(II), not Fe(IV) or the Fe(III) of a
    composition guess). Otherwise from ``formula`` (pymatgen's most likely guess).
    """
    value = _structure_oxidation_state(structure, element) if structure is not None else None
    if value is None and formula:
        value = _formula_oxidation_state(formula, element)
    if value is None and structure is not None and len(structure):
        value = _formula_oxidation_state(structure.composition.reduced_formula, element)
    return None if value is None or not np.isfinite(value) else float(value)


def accepted_classes(known: float) -> set[float]:
    """Predicted OS classes scored as right for a known OS: the value itself, or for a
    mixed-valence average (Fe3O4: 2.67) both neighbouring integers (2 and 3)."""
    if float(known).is_integer():
        return {float(known)}
    return {float(np.floor(known)), float(np.ceil(known))}


_ANION_CHARGE = {"O": -2, "S": -2, "Se": -2, "Te": -2, "N": -3, "F": -1, "Cl": -1, "Br": -1,
                 "I": -1}  # fmt: skip
_PAIR_BOND = {"O": 1.6, "S": 2.25, "Se": 2.5, "Te": 2.9}  # A: X-X bonds of peroxide-like pairs


def _structure_oxidation_state(structure: Any, element: str) -> float | None:
    """Mean oxidation state of ``element``'s sites in an ordered structure, or None."""
    if not len(structure) or not structure.is_ordered:
        return None
    symbols = [site.specie.symbol for site in structure]
    if element not in symbols:
        return None
    if set(symbols) == {element}:
        return 0.0
    if _anion_pairs(structure, symbols):  # bond valence would read S2(2-) as 2 S(2-)
        return _pair_aware_charge_balance(structure, symbols, element)
    try:
        from pymatgen.analysis.bond_valence import BVAnalyzer

        valences = BVAnalyzer().get_valences(structure)
        return float(np.mean([v for v, s in zip(valences, symbols, strict=True) if s == element]))
    except Exception:  # BVAnalyzer raises ValueError when no valences fit (e.g. pyrite)
        return _pair_aware_charge_balance(structure, symbols, element)


def _anion_pairs(structure: Any, symbols: list[str]) -> set[int]:
    """Indices of anion sites bonded to an anion of their own kind (S-S in pyrite)."""
    return {
        i
        for i, symbol in enumerate(symbols)
        if symbol in _PAIR_BOND
        and any(
            n.specie.symbol == symbol
            for n in structure.get_neighbors(structure[i], _PAIR_BOND[symbol])
        )
    }


def _pair_aware_charge_balance(structure: Any, symbols: list[str], element: str) -> float | None:
    """``element`` as the only cation: minus the anions' charge over its site count, an anion
    bonded to an anion of its kind (closer than ``_PAIR_BOND``) counting half its charge."""
    if any(s != element and s not in _ANION_CHARGE for s in symbols):
        return None
    paired = _anion_pairs(structure, symbols)
    charge = sum(
        _ANION_CHARGE[symbol] / (2 if i in paired else 1)
        for i, symbol in enumerate(symbols)
        if symbol != element
    )
    return -charge / symbols.count(element)


def _formula_oxidation_state(formula: str, element: str) -> float | None:
    import re

    from pymatgen.core import Composition

    # the XAS Data Library writes groups with underscores: Ni_OH_2 = Ni(OH)2
    text = re.sub(r"_([A-Za-z0-9]+)_(\d*)", r"(\1)\2", formula.strip())
    try:
        comp = Composition(text)
    except Exception:
        return None
    if element not in {e.symbol for e in comp.elements}:
        return None
    if len(comp.elements) == 1:
        return 0.0
    guesses = comp.oxi_state_guesses(max_sites=-50)
    if not guesses:
        return None
    return float(guesses[0].get(element, np.nan))


@dataclass
class OxidationCheck:
    """Result of :func:`oxidation_state_check`.

    Attributes:
        classes: OS classes seen in the simulated training spectra.
        rows: one dict per measured spectrum: name, formula, known OS, predicted OS without
            and with SDM, and the probability-weighted mean OS of both.
        accuracy: accuracy without / with SDM over the spectra whose known OS is a training
            class (``n_scorable`` of them).
        mean_abs_error: mean |mean OS - known OS| without / with SDM over the same spectra.
    """

    classes: list[float]
    rows: list[dict[str, Any]] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    mean_abs_error: dict[str, float] = field(default_factory=dict)
    n_scorable: int = 0
    sdm: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """Markdown: per spectrum, known vs predicted OS without / with SDM."""
        lines = [
            "| sample | known OS | OS (raw) | mean OS (raw) | OS (SDM) | mean OS (SDM) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            known = "n/a" if r["known"] is None else f"{r['known']:+.0f}"
            lines.append(
                f"| {r['name']} | {known} | {r['raw']:+.0f} | {r['raw_mean']:+.2f} | "
                f"{r['sdm']:+.0f} | {r['sdm_mean']:+.2f} |"
            )
        return "\n".join(lines) + "\n"


def oxidation_state_check(
    sim_spectra: np.ndarray,
    sim_os: np.ndarray,
    exp_spectra: np.ndarray,
    exp_names: list[str],
    exp_formulas: list[str],
    element: str,
    energy: np.ndarray | None = None,
    energy_shift: float = 0.0,
    n_clusters: int = 4,
    seed: int = 0,
    tail: int = 20,
) -> OxidationCheck:
    """Classify measured spectra [Nm, K] by OS with a forest trained on simulated [Ns, K].

    Raises:
        ValueError: grids of different length, fewer than 2 OS classes in the simulated
            spectra, or no labelled simulated spectra.
    """
    from sklearn.ensemble import RandomForestClassifier

    from xas_models.sdm import sdm_map

    sim = np.asarray(sim_spectra, dtype=np.float64)
    exp = np.asarray(exp_spectra, dtype=np.float64)
    if sim.ndim != 2 or exp.ndim != 2 or sim.shape[1] != exp.shape[1]:
        raise ValueError(
            f"simulated {sim.shape} and measured {exp.shape} spectra must be [N, K] on one "
            "grid; interpolate them onto the same energies"
        )
    labels = np.asarray(sim_os, dtype=np.float64)
    keep = np.isfinite(labels)
    sim, labels = sim[keep], labels[keep]
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        raise ValueError(
            f"the simulated {element} spectra have OS classes {classes}; a classifier needs 2+"
        )
    if energy_shift:
        if energy is None:
            raise ValueError("energy_shift needs the energy grid (eV)")
        exp = np.stack([np.interp(energy + energy_shift, energy, row) for row in exp])
    sim_n, exp_n = post_edge_normalise(sim, tail), post_edge_normalise(exp, tail)
    clf = RandomForestClassifier(n_estimators=300, random_state=seed, class_weight="balanced")
    clf.fit(sim_n, labels)
    mapped = sdm_map(sim_n, exp_n, n_clusters=n_clusters, seed=seed)
    out = OxidationCheck(classes=classes, sdm={"n_clusters": n_clusters})
    out.sdm["mean_reconstruction_error"] = float(np.mean(mapped.reconstruction_error))
    values = np.asarray(clf.classes_, dtype=np.float64)
    for key, x in (("raw", exp_n), ("sdm", mapped.mapped)):
        proba = clf.predict_proba(x)
        pred = values[np.argmax(proba, axis=1)]
        mean = proba @ values
        for i in range(len(exp)):
            if len(out.rows) <= i:
                out.rows.append(
                    {
                        "name": exp_names[i],
                        "formula": exp_formulas[i],
                        "known": known_oxidation_state(exp_formulas[i], element),
                    }
                )
            out.rows[i][key] = float(pred[i])
            out.rows[i][f"{key}_mean"] = float(mean[i])
    scorable = [
        r
        for r in out.rows
        if r["known"] is not None and accepted_classes(r["known"]) & set(classes)
    ]
    out.n_scorable = len(scorable)
    for key in ("raw", "sdm"):
        if scorable:
            out.accuracy[key] = float(
                np.mean([r[key] in accepted_classes(r["known"]) for r in scorable])
            )
            out.mean_abs_error[key] = float(
                np.mean([abs(r[f"{key}_mean"] - r["known"]) for r in scorable])
            )
    return out


def check_stores(
    simulated: str,
    measured: str,
    element: str,
    fidelity: str = "FEFF-fast",
    descriptors: str = "descriptors",
    **kwargs: Any,
) -> OxidationCheck:
    """:func:`oxidation_state_check` on the ``fidelity`` spectra of ``element`` in the store
    ``simulated`` (``default`` = the shipped dataset; OS labels from its stored descriptors)
    and the ``EXP`` spectra of ``measured`` (interpolated onto the simulated grid)."""
    import json

    from xas_data import open_default_dataset
    from xas_data.store import XASDataset
    from xas_features.storage import find_features

    sim_ds = open_default_dataset() if simulated == "default" else XASDataset.open(simulated)
    key = find_features(sim_ds, descriptors)
    names = sim_ds.feature_attrs(key).get("config", {}).get("names", [])
    if "OS" not in names:
        raise ValueError(f"features {key} have no OS column (columns: {names})")
    sel = sim_ds.select(element, fidelity)
    sim_y = sel.intensities()
    sim_os = sel.features(key)[:, names.index("OS")]
    exp_ds = XASDataset.open(measured)
    if (element, "EXP") not in exp_ds.groups():
        raise ValueError(f"{measured} holds no EXP spectra of {element}; ingest them first")
    esel = exp_ds.select(element, "EXP")
    exp_y = np.stack([np.interp(sel.energy, esel.energy, r) for r in esel.intensities()])
    sources = exp_ds.root["materials/source"][:]
    meta = [json.loads(sources[int(m)]) for m in esel.sites()["material"]]
    return oxidation_state_check(
        sim_y,
        sim_os,
        exp_y,
        [str(m.get("sample", "")) for m in meta],
        [str(m.get("formula", "")) for m in meta],
        element,
        energy=sel.energy,
        **kwargs,
    )
