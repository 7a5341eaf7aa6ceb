"""Training arrays from an xas-data store: features X, spectra Y and element labels per split.

Everything is loaded into memory once (per-site MLP inputs are small: 10^4-10^5 sites of a few
hundred floats), so epochs never touch the store. Multi-element (universal) data keeps each
element's energy grid explicitly: output index ``k`` of element ``e`` is at
``grids[e].start + k * grids[e].step`` eV, and all elements must share the number of points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xas_train.config import DataConfig
from xas_train.errors import TrainError


@dataclass
class SplitArrays:
    """One split of the training data.

    Attributes:
        x: features, float32 [N, D].
        y: spectra, float32 [N, K].
        element: absorbing element of each row, str [N].
        site_ids: ``<material>_<site index>`` of each row, str [N].
        graphs: for graph models, one crystal graph (torch-geometric ``Data``) per row with
            its absorbing site flagged in ``absorber_mask``; ``x`` is then ``[N, 0]``.
    """

    x: np.ndarray
    y: np.ndarray
    element: np.ndarray
    site_ids: np.ndarray
    graphs: list | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, mask: np.ndarray) -> SplitArrays:
        graphs = None
        if self.graphs is not None:
            graphs = [g for g, keep in zip(self.graphs, mask, strict=True) if keep]
        return SplitArrays(
            self.x[mask], self.y[mask], self.element[mask], self.site_ids[mask], graphs
        )

    def only(self, element: str) -> SplitArrays:
        return self.subset(self.element == element)


@dataclass
class TrainingData:
    """Train/val/test arrays plus what a checkpoint must record about them.

    Attributes:
        grids: element -> ``(start eV, step eV, n_points)``.
        energies: element -> energy grid (eV, float64 [K]).
        feature_keys: the store keys concatenated into ``x``, in order.
        featurizer: featurizer names joined by ``+``; ``featurizer_version`` likewise.
    """

    train: SplitArrays
    val: SplitArrays
    test: SplitArrays | None
    elements: list[str]
    fidelity: str
    energies: dict[str, np.ndarray]
    feature_keys: list[str]
    featurizer: str
    featurizer_version: str
    dataset_name: str
    dataset_path: str
    dataset_license: str = ""
    graph_settings: dict | None = None
    provenance: dict = field(default_factory=dict)

    @property
    def is_graph(self) -> bool:
        """True when the inputs are crystal graphs (``data.features: [graph]``)."""
        return self.train.graphs is not None

    @property
    def input_dim(self) -> int:
        """Features per site, or node-feature size of the graphs."""
        if self.is_graph:
            return int(self.train.graphs[0].x.shape[1])
        return int(self.train.x.shape[1])

    @property
    def output_dim(self) -> int:
        return int(self.train.y.shape[1])

    def grid(self, element: str) -> dict[str, float]:
        """``{"start", "step", "n_points"}`` of ``element`` (eV)."""
        e = self.energies[element]
        return {"start": float(e[0]), "step": float(e[1] - e[0]), "n_points": int(e.size)}

    def train_mean(self, element: str) -> np.ndarray:
        """Mean training spectrum of ``element`` (the OmniXAS baseline), float64 [K]."""
        return self.train.only(element).y.astype(np.float64).mean(axis=0)


def open_dataset(spec: str):
    """Open ``default`` (the shipped dataset) or a store path read-only."""
    from xas_data import open_default_dataset
    from xas_data.store import XASDataset

    if spec == "default":
        return open_default_dataset()
    path = Path(spec).expanduser()
    if not path.exists():
        raise TrainError(
            f"dataset {spec!r} not found; set data.dataset to an xas-data store path or 'default'"
        )
    return XASDataset.open(path)


def _feature_key(ds, name: str) -> str:
    from xas_features.storage import find_features

    try:
        return find_features(ds, name)
    except Exception as exc:  # FeaturizerError with the fix in its message
        raise TrainError(str(exc)) from None


def _material_holdout(site_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask holding out ``fraction`` of the materials (whole materials, seeded)."""
    return material_holdout(np.array([s.rsplit("_", 1)[0] for s in site_ids]), fraction, seed)


def material_holdout(materials: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask ``[N]`` over rows with material ids ``materials`` ``[N]`` that holds out
    ``fraction`` of the distinct materials (at least one; whole materials, seeded)."""
    materials = np.asarray(materials)
    unique = np.unique(materials)
    rng = np.random.default_rng(seed)
    n_out = max(1, round(fraction * unique.size))
    if unique.size < 2:
        raise TrainError(
            f"cannot hold out validation materials from {unique.size} material(s); "
            "add data or set data.val_split to a stored split"
        )
    held = set(rng.choice(unique, size=n_out, replace=False).tolist())
    return np.array([m in held for m in materials])


GRAPH_FEATURES = "graph"


def graph_config(settings: dict):
    """``CrystalGraphConfig`` from ``data.graph`` settings; TrainError for bad ones."""
    from xas_features.graphs import CrystalGraphConfig

    try:
        return CrystalGraphConfig(**settings)
    except (TypeError, ValueError, Exception) as exc:
        raise TrainError(f"invalid data.graph settings {settings}: {exc}") from None


def graph_key(settings: dict) -> str:
    """Feature key recorded in checkpoints of graph models, e.g. ``graph-1a2b3c4d``."""
    import hashlib
    import json

    blob = json.dumps(graph_config(settings).to_dict(), sort_keys=True).encode()
    return f"{GRAPH_FEATURES}-{hashlib.sha256(blob).hexdigest()[:8]}"


def _read_graphs(ds, sel, settings: dict) -> list:
    """One crystal graph per selected site (absorber flagged), in selection order.

    One neighbour search per material (not per site), run in a process pool over materials
    and cached on disk by graph settings and structure hash
    (:func:`xas_features.graphs.material_edges`), so a second run reads the edges back.
    """
    from xas_features.graphs import build_site_graphs, material_edges

    config = graph_config(settings)
    cols = sel.sites()
    materials = [int(m) for m in cols["material"]]
    order = list(dict.fromkeys(materials))  # unique, first-seen order
    structures = [ds.structure(m) for m in order]
    edges = material_edges(structures, config)
    sites: dict[int, list[int]] = {m: [] for m in order}
    for material, index in zip(materials, cols["index"], strict=True):
        sites[material].append(int(index))
    built: dict[tuple[int, int], object] = {}
    for material, structure, material_edges_ in zip(order, structures, edges, strict=True):
        graphs = build_site_graphs(structure, sites[material], config, material_edges_)
        built.update(zip(((material, i) for i in sites[material]), graphs, strict=True))
    return [built[(m, int(i))] for m, i in zip(materials, cols["index"], strict=True)]


def _read_split(ds, element, fidelity, split, keys, drop_nonfinite, graph=None) -> SplitArrays:
    sel = ds.select(element, fidelity, split)
    if graph is not None:
        y = (
            sel.intensities().astype(np.float32)
            if len(sel)
            else np.zeros((0, sel.energy.size), np.float32)
        )
        cols = sel.sites()
        mids = ds.material_ids[cols["material"]] if len(sel) else np.zeros(0, dtype=str)
        site_ids = np.array(
            [f"{m}_{int(i):03d}" for m, i in zip(mids, cols["index"], strict=True)], dtype="<U40"
        )
        graphs = _read_graphs(ds, sel, graph) if len(sel) else []
        return SplitArrays(
            np.zeros((len(y), 0), np.float32),
            y,
            np.full(len(y), element, dtype="<U3"),
            site_ids,
            graphs,
        )
    if len(sel) == 0:
        d = sum(int(ds.root[f"features/{k}/values"].shape[1]) for k in keys)
        return SplitArrays(
            np.zeros((0, d), np.float32),
            np.zeros((0, sel.energy.size), np.float32),
            np.zeros(0, dtype="<U3"),
            np.zeros(0, dtype="<U40"),
        )
    x = np.concatenate([sel.features(k) for k in keys], axis=1).astype(np.float32)
    y = sel.intensities().astype(np.float32)
    cols = sel.sites()
    mids = ds.material_ids[cols["material"]]
    site_ids = np.array([f"{m}_{int(i):03d}" for m, i in zip(mids, cols["index"], strict=True)])
    ok = np.all(np.isfinite(x), axis=1)
    if not ok.all():
        if not drop_nonfinite:
            raise TrainError(
                f"{int((~ok).sum())} of {ok.size} {element} {fidelity} {split} sites have "
                f"NaN/inf features in {keys}; featurize them again or set "
                "data.drop_nonfinite: true"
            )
        x, y, site_ids = x[ok], y[ok], site_ids[ok]
    return SplitArrays(x, y, np.full(len(y), element), site_ids)


def _concat(parts: list[SplitArrays]) -> SplitArrays:
    graphs = None
    if parts and parts[0].graphs is not None:
        graphs = [g for p in parts for g in p.graphs]
    return SplitArrays(
        np.concatenate([p.x for p in parts]),
        np.concatenate([p.y for p in parts]),
        np.concatenate([p.element for p in parts]),
        np.concatenate([p.site_ids for p in parts]),
        graphs,
    )


def load_training_data(config: DataConfig, seed: int = 0) -> TrainingData:
    """Read the configured splits into memory, checking everything a run needs.

    Raises:
        TrainError: missing dataset/features/element/fidelity, empty training split,
            non-finite features, elements whose grids differ in length, or a damaged store
            (a missing chunk, a chunk failing its checksum, all-zero spectra: the message
            names the array).
    """
    from xas_data.errors import XASDataError

    try:
        return _load_training_data(config, seed)
    except XASDataError as exc:
        raise TrainError(f"cannot train on {config.dataset}: {exc}") from None


def _load_training_data(config: DataConfig, seed: int = 0) -> TrainingData:
    ds = open_dataset(config.dataset)
    groups = ds.groups()
    fidelities = sorted({f for _, f in groups})
    if config.fidelity not in fidelities:
        raise TrainError(
            f"fidelity {config.fidelity!r} is not in {ds.path}; present: {fidelities}. "
            "Set data.fidelity to one of them"
        )
    present = sorted(e for e, f in groups if f == config.fidelity)
    elements = list(config.elements) if config.elements else present
    missing = [e for e in elements if e not in present]
    if missing:
        raise TrainError(
            f"element(s) {missing} have no {config.fidelity} spectra in {ds.path}; elements "
            f"present at this fidelity: {present}. Fix data.elements"
        )
    is_graph = config.features == [GRAPH_FEATURES]
    if GRAPH_FEATURES in config.features and not is_graph:
        raise TrainError(
            "data.features 'graph' (crystal graphs for graph models) cannot be mixed with "
            f"per-site features {config.features}; use features: [graph] alone"
        )
    graph = dict(config.graph) if is_graph else None
    keys = [graph_key(graph)] if is_graph else [_feature_key(ds, n) for n in config.features]
    energies = {e: ds.select(e, config.fidelity).energy for e in elements}
    sizes = {e: g.size for e, g in energies.items()}
    if len(set(sizes.values())) > 1:
        raise TrainError(
            f"the elements' energy grids have different lengths {sizes}; one model predicts "
            "one number of points; resample the data onto grids of equal length"
        )

    def read(split: str | None) -> SplitArrays | None:
        if split is None:
            return None
        parts = [
            _read_split(ds, e, config.fidelity, split, keys, config.drop_nonfinite, graph)
            for e in elements
        ]
        return _concat(parts)

    train = read(config.train_split)
    assert train is not None
    empty = [e for e in elements if not np.any(train.element == e)]
    if empty:
        raise TrainError(
            f"no {config.train_split!r} spectra for {empty} at {config.fidelity}; check the "
            "store's splits (xas-data info) or choose other elements"
        )
    if config.val_split is None:
        held = _material_holdout(train.site_ids, config.holdout_fraction, seed)
        val, train = train.subset(held), train.subset(~held)
    else:
        val = read(config.val_split)
        assert val is not None
        if len(val) == 0:
            raise TrainError(
                f"the {config.val_split!r} split is empty for {elements} {config.fidelity}; "
                "set data.val_split: null to hold out training materials instead"
            )
    test = read(config.test_split)
    if is_graph:
        from xas_features import __version__ as features_version

        attrs = [{"featurizer": "crystal-graph", "version": f"xas-features {features_version}"}]
    else:
        attrs = [ds.feature_attrs(k) for k in keys]
    return TrainingData(
        train=train,
        val=val,
        test=test,
        elements=elements,
        fidelity=config.fidelity,
        energies=energies,
        feature_keys=keys,
        featurizer="+".join(a.get("featurizer", k) for a, k in zip(attrs, keys, strict=True)),
        featurizer_version="+".join(str(a.get("version", "")) for a in attrs),
        dataset_name=ds.name,
        dataset_path=str(ds.path),
        dataset_license=str(ds.attrs.get("license", "")),
        graph_settings=graph_config(graph).to_dict() if is_graph else None,
        provenance={"splits": ds.attrs.get("splits", {})} if "splits" in ds.attrs else {},
    )
