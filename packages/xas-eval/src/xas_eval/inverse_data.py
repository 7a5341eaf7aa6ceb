"""Data for the inverse problem: XANES spectrum of a site -> local-structure descriptors.

:func:`load_inverse_data` reads, from a dataset store (``"default"`` = the shipped store), the
spectra of one fidelity for every (or the chosen) element together with the stored site
descriptors of :mod:`xas_features.descriptors` (``features/descriptors-v<version>-<hash>``,
column names in the attribute ``config.names``), one :class:`InverseData` per split.

* **Spectra** are divided by their post-edge level (the mean of the last ``tail`` = 20 grid
  points, :func:`xas_eval.oxidation.post_edge_normalise`), so that simulated spectra in FEFF
  units and edge-step-normalised measurements are on one intensity scale. Every element keeps
  its own energy grid (``InverseData.energy[element]``); the spectra of all elements are
  stacked into one [N, K] array, so the grids must have the same number of points K (true
  for the default store: 141 points, 0.25 eV apart, on element-specific absolute energies).
* **Labels** are float64 [N] per descriptor, NaN where the descriptor is missing for the site.
* **Kinds**: ``classification`` (OS, CN, OCN, CN2, PSGO) or ``regression`` (NNRS, MOOD,
  NNOSM), as in :data:`xas_features.descriptors.DESCRIPTOR_KINDS`; a column that is not in
  that table is a classification when all its values are integers and it has at most
  :data:`MAX_INFERRED_CLASSES` distinct values, else a regression.
* **Classes** of a classification descriptor: the sorted unique non-NaN values over the
  training split (over all loaded splits when ``train`` is not loaded). Test sites may carry
  a class never seen in training; scores count them as errors.

Rows are ordered by element (alphabetically), then by the store's spectrum order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xas_eval.oxidation import post_edge_normalise
from xas_features.descriptor_table import DESCRIPTOR_KINDS  # noqa: E402

MAX_INFERRED_CLASSES = 30
"""An integer-valued column outside :data:`DESCRIPTOR_KINDS` with at most this many distinct
values is treated as a classification."""

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


@dataclass
class InverseData:
    """Spectra and descriptor labels of one split.

    Attributes:
        split: ``train``, ``val`` or ``test``.
        fidelity: the spectra's fidelity (e.g. ``FEFF-fast``).
        spectra: post-edge-normalised spectra, float32 [N, K].
        labels: descriptor name -> float64 [N] (NaN = missing).
        element: absorbing element of each row, str [N].
        site_ids: ``"<material id>:<site index>"`` of each row, str [N].
        site_rows: row of each site in the store's ``sites/`` arrays, int64 [N].
        energy: element -> its energy grid (eV), float64 [K].
        kinds: descriptor name -> ``classification`` / ``regression``.
        classes: classification descriptor name -> sorted class values (from training).
    """

    split: str
    fidelity: str
    spectra: np.ndarray
    labels: dict[str, np.ndarray]
    element: np.ndarray
    site_ids: np.ndarray
    site_rows: np.ndarray
    energy: dict[str, np.ndarray]
    kinds: dict[str, str] = field(default_factory=dict)
    classes: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.spectra.shape[0])

    @property
    def names(self) -> list[str]:
        """Descriptor names in column order."""
        return list(self.labels)

    @property
    def elements(self) -> list[str]:
        """Sorted distinct elements of the rows."""
        return sorted(set(self.element.tolist()))

    @property
    def energy_step(self) -> float:
        """Grid spacing (eV) shared by every element's grid (ValueError if they differ or a
        grid is not uniform)."""
        steps = set()
        for element, grid in self.energy.items():
            diffs = np.diff(np.asarray(grid, dtype=np.float64))
            if diffs.size == 0 or not np.allclose(diffs, diffs[0], rtol=1e-4, atol=1e-6):
                raise ValueError(f"the {element} energy grid is not uniform")
            steps.add(round(float(diffs[0]), 6))
        if len(steps) != 1:
            raise ValueError(f"the element grids have different spacings {sorted(steps)} eV")
        return steps.pop()

    def subset(self, mask: np.ndarray) -> InverseData:
        """The rows selected by a boolean mask or an index array."""
        idx = np.asarray(mask)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        elements = set(self.element[idx].tolist())
        return InverseData(
            split=self.split,
            fidelity=self.fidelity,
            spectra=self.spectra[idx],
            labels={k: v[idx] for k, v in self.labels.items()},
            element=self.element[idx],
            site_ids=self.site_ids[idx],
            site_rows=self.site_rows[idx],
            energy={e: g for e, g in self.energy.items() if e in elements},
            kinds=dict(self.kinds),
            classes={k: list(v) for k, v in self.classes.items()},
        )

    @property
    def materials(self) -> np.ndarray:
        """Material id of each row (``site_ids`` before the last ``:``), str [N]."""
        return np.array([s.rsplit(":", 1)[0] for s in self.site_ids])

    def label_counts(self) -> dict[str, int]:
        """Number of non-missing labels per descriptor."""
        return {k: int(np.isfinite(v).sum()) for k, v in self.labels.items()}


class InverseDataset(dict):
    """``split -> InverseData`` (a dict) with the descriptor ``names``, ``kinds`` and
    ``classes`` shared by the splits, and where the data came from (``store`` path,
    ``dataset_name`` and ``license`` from the store's attributes, ``fidelity``,
    ``feature_key``, ``elements``)."""

    def __init__(
        self,
        splits: dict[str, InverseData],
        names: list[str],
        kinds: dict[str, str],
        classes: dict[str, list[float]],
        store: str,
        fidelity: str,
        feature_key: str,
        elements: list[str],
        dataset_name: str = "",
        license: str = "",
    ) -> None:
        super().__init__(splits)
        self.dataset_name = dataset_name
        self.license = license
        self.names = names
        self.kinds = kinds
        self.classes = classes
        self.store = store
        self.fidelity = fidelity
        self.feature_key = feature_key
        self.elements = elements

    def summary(self) -> dict[str, Any]:
        """Counts per split and element, and non-missing labels per split."""
        return {
            "store": self.store,
            "fidelity": self.fidelity,
            "feature_key": self.feature_key,
            "kinds": dict(self.kinds),
            "classes": {k: list(v) for k, v in self.classes.items()},
            "splits": {
                s: {
                    "n": len(d),
                    "per_element": {e: int((d.element == e).sum()) for e in d.elements},
                    "labelled": d.label_counts(),
                }
                for s, d in self.items()
            },
        }


def _open_store(store: Any):
    from xas_data import open_default_dataset
    from xas_data.store import XASDataset

    if isinstance(store, XASDataset):
        return store
    if str(store) == "default":
        return open_default_dataset()
    return XASDataset.open(store)


def _find_descriptor_key(ds, descriptors_feature: str) -> str:
    """Key of the complete descriptor features, with a ValueError naming the fix."""
    candidates = []
    if ds.has_features(descriptors_feature):
        return descriptors_feature
    for key in ds.feature_names():
        attrs = ds.feature_attrs(key)
        if attrs.get("featurizer") == descriptors_feature and attrs.get("complete"):
            candidates.append((str(attrs.get("written", "")), key))
    if not candidates:
        raise ValueError(
            f"{ds.path} has no complete {descriptors_feature!r} features (present: "
            f"{ds.feature_names()}); compute them with: xas-features featurize --dataset "
            f"{ds.path} --featurizer {descriptors_feature}"
        )
    return max(candidates)[1]  # the most recently written, as xas_features.find_features


def _infer_kind(values: np.ndarray) -> str:
    finite = values[np.isfinite(values)]
    if finite.size and np.all(finite == np.round(finite)):
        if np.unique(finite).size <= MAX_INFERRED_CLASSES:
            return "classification"
    return "regression"


def load_inverse_data(
    store: Any = "default",
    fidelity: str = "FEFF-fast",
    elements: Sequence[str] | None = None,
    descriptors: Sequence[str] | None = None,
    splits: Sequence[str] = SPLIT_NAMES,
    tail: int = 20,
    descriptors_feature: str = "descriptors",
) -> InverseDataset:
    """Spectra and descriptor labels per split of the ``fidelity`` spectra in ``store``.

    Args:
        store: ``"default"`` (the shipped store), a path, or an open ``XASDataset``.
        fidelity: spectra fidelity (``FEFF-fast``, ``FEFF-accurate``, ...).
        elements: absorbing elements (default: every element with ``fidelity`` spectra).
        descriptors: descriptor columns (default: all stored ones, in stored order).
        splits: the splits to load; each must hold at least one row.
        tail: number of final grid points averaged for the post-edge level.
        descriptors_feature: featurizer name (or full feature key) of the descriptors.

    Returns:
        :class:`InverseDataset`: ``split -> InverseData`` plus ``names``, ``kinds``,
        ``classes``.

    Raises:
        ValueError: no descriptor features in the store, unknown descriptor names, unknown
            fidelity/element/split, grids of different lengths, or an empty split.
    """
    ds = _open_store(store)
    key = _find_descriptor_key(ds, descriptors_feature)
    stored = [str(n) for n in ds.feature_attrs(key).get("config", {}).get("names", [])]
    if not stored:
        raise ValueError(
            f"features {key} of {ds.path} record no column names (attribute config.names); "
            "recompute them with xas-features featurize --featurizer descriptors --force"
        )
    names = list(stored) if descriptors is None else [str(d) for d in descriptors]
    unknown = [n for n in names if n not in stored]
    if unknown or not names:
        raise ValueError(
            f"unknown descriptor(s) {unknown or names}; {key} holds {stored}: pass "
            "descriptors=None for all of them or a subset of those names"
        )
    columns = [stored.index(n) for n in names]

    groups = ds.groups()
    with_fidelity = sorted({e for e, f in groups if f == fidelity})
    if not with_fidelity:
        raise ValueError(
            f"no {fidelity!r} spectra in {ds.path}; fidelities present: "
            f"{sorted({f for _, f in groups})}"
        )
    if elements is None:
        chosen = with_fidelity
    else:
        chosen = sorted({str(e) for e in elements})
        missing = [e for e in chosen if e not in with_fidelity]
        if missing or not chosen:
            raise ValueError(
                f"no {fidelity} spectra of {missing or chosen} in {ds.path}; elements with "
                f"{fidelity} spectra: {with_fidelity}"
            )
    bad_splits = [s for s in splits if s not in SPLIT_NAMES]
    if bad_splits or not splits:
        raise ValueError(f"unknown split(s) {bad_splits or list(splits)}; use {SPLIT_NAMES}")

    energy: dict[str, np.ndarray] = {}
    parts: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in splits}
    material_ids = ds.material_ids
    for element in chosen:
        for split in splits:
            sel = ds.select(element, fidelity, split)
            if element not in energy:
                energy[element] = np.asarray(sel.energy, dtype=np.float64)
            if len(sel) == 0:
                continue
            cols = ds.sites(sel.site_rows, ("material", "index"))
            values = sel.features(key)[:, columns].astype(np.float64)
            try:
                spectra = post_edge_normalise(sel.intensities(), tail).astype(np.float32)
            except ValueError as err:
                raise ValueError(f"{element} {fidelity} {split}: {err}") from err
            ids = [
                f"{material_ids[m]}:{i}"
                for m, i in zip(cols["material"].tolist(), cols["index"].tolist(), strict=True)
            ]
            parts[split].append(
                {
                    "spectra": spectra,
                    "values": values,
                    "element": np.full(len(sel), element),
                    "site_ids": np.asarray(ids, dtype=str),
                    "site_rows": np.asarray(sel.site_rows, dtype=np.int64),
                }
            )
    lengths = {e: g.size for e, g in energy.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"the energy grids have different lengths {lengths}; load elements with grids of "
            "one length together (elements=[...]) or interpolate the store onto one grid size"
        )
    for split, chunks in parts.items():
        if not chunks:
            raise ValueError(
                f"the {split} split of the {fidelity} spectra of {chosen} in {ds.path} is "
                "empty; pass splits=[...] without it, more elements, or another fidelity"
            )

    merged: dict[str, dict[str, np.ndarray]] = {
        s: {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        for s, chunks in parts.items()
    }
    source = merged["train"] if "train" in merged else None
    all_values = (
        source["values"]
        if source is not None
        else np.concatenate([m["values"] for m in merged.values()])
    )
    kinds: dict[str, str] = {}
    classes: dict[str, list[float]] = {}
    for j, name in enumerate(names):
        kinds[name] = DESCRIPTOR_KINDS.get(name) or _infer_kind(all_values[:, j])
        if kinds[name] == "classification":
            col = all_values[:, j]
            classes[name] = [float(v) for v in np.unique(col[np.isfinite(col)])]

    out = {}
    for split, m in merged.items():
        out[split] = InverseData(
            split=split,
            fidelity=fidelity,
            spectra=m["spectra"],
            labels={name: m["values"][:, j].copy() for j, name in enumerate(names)},
            element=m["element"],
            site_ids=m["site_ids"],
            site_rows=m["site_rows"],
            energy={e: g for e, g in energy.items() if e in set(m["element"].tolist())},
            kinds=dict(kinds),
            classes={k: list(v) for k, v in classes.items()},
        )
    return InverseDataset(
        out,
        names=names,
        kinds=kinds,
        classes=classes,
        store=str(ds.path),
        fidelity=fidelity,
        feature_key=key,
        elements=chosen,
        dataset_name=ds.name,
        license=str(ds.root.attrs.get("license", "")),
    )
