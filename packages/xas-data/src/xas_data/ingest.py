"""Ingest public data into stores: the OmniXAS Cu FEFF set, the OmniXAS ML arrays, and
measured spectra (XAS Data Library JSON, XDI, two-column text).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from xas_data import curation
from xas_data.build import CurationConfig, GroupData, curate_group, omnixas_resample, write_store
from xas_data.errors import StoreError, XASDataError
from xas_data.schema import OMNIXAS_CU_START_EV, EnergyGrid, default_grid
from xas_data.splits import parse_site_id, read_split_file, splits_from_lists
from xas_data.store import XASDataset

OMNIXAS_LICENSE = "BSD-3-Clause (OmniXAS); structures CC-BY-4.0 (Materials Project)"
OMNIXAS_FEATURES = "m3gnet-omnixas-0.8.5"


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise XASDataError(
            f"{path}: missing {what}; point to a folder holding the OmniXAS files "
            "(e.g. ../shared/data/omnixas-cu-feff) or fetch it with `xas-data fetch`"
        )
    return path


def omnixas_cu_labels(energy: np.ndarray, mu: np.ndarray, xsedge_norm: np.ndarray) -> np.ndarray:
    """OmniXAS Cu labels on ``E_k = 8983.173 + 0.25 k`` (k < 141) from FEFF rows.

    ``energy`` and ``mu`` are [n, m] (one FEFF grid per spectrum), ``xsedge_norm`` [n].
    Returns float64 [n, 141].
    """
    grid = EnergyGrid(OMNIXAS_CU_START_EV).energies
    scaled = curation.omnixas_label_scale(mu, xsedge_norm)
    return np.stack([omnixas_resample(e, y, grid) for e, y in zip(energy, scaled, strict=True)])


def ingest_omnixas_cu_feff(
    folder: str | Path,
    out: str | Path,
    only_listed: bool = True,
    config: CurationConfig | None = None,
    overwrite: bool = False,
) -> XASDataset:
    """Store the OmniXAS Cu K-edge FEFF spectra with structures and the official splits.

    With ``only_listed`` (default) only sites in the official train/val lists are kept (the
    OmniXAS curation); otherwise all spectra are kept, curated with ``config`` (outlier and
    duplicate removal) and unlisted sites get an empty split.
    """
    from pymatgen.core import Structure

    folder = Path(folder)
    data = np.load(_require(folder / "spectra.npz", "spectra.npz"))
    poscars = json.loads(_require(folder / "structures_poscar.json", "structures").read_text())
    lists = {}
    for split in ("train", "val", "test"):
        path = folder / "splits" / f"Cu_FEFF_{split}.txt"
        if path.exists():
            lists[split] = read_split_file(path)
    if not lists:
        raise XASDataError(f"{folder}/splits holds no Cu_FEFF_<split>.txt files")
    material_ids = data["material_id"].astype(str)
    sites = data["site"].astype(int)
    split_of = splits_from_lists(material_ids, sites, lists)
    keep = split_of != "" if only_listed else np.ones(material_ids.size, dtype=bool)
    labels = omnixas_cu_labels(data["energy"][keep], data["mu"][keep], data["xsedge_norm"][keep])
    grid = EnergyGrid(OMNIXAS_CU_START_EV)
    group = GroupData(
        "Cu",
        "FEFF",
        material_ids[keep].tolist(),
        sites[keep].tolist(),
        [1] * int(keep.sum()),
        grid.energies,
        labels.astype(np.float32),
        {"xsedge_norm": data["xsedge_norm"][keep]},
    )
    records = [
        curation.record_step(
            "omnixas_label_scale+interpolate_to_grid",
            {"grid": grid.to_dict(), "formula": "1000 * omnixas_resample(mu * xsedge_norm / a0^2)"},
            int(material_ids.size),
            int(keep.sum()),
            0.0,
        ).to_dict()
    ]
    if not only_listed:
        group, more = curate_group(group, config or CurationConfig())
        records.extend(more)
    structures = {}
    for mid in sorted(set(group.material_ids)):
        if mid not in poscars:
            raise XASDataError(f"{folder}: no POSCAR for {mid} in structures_poscar.json")
        structure = Structure.from_str(poscars[mid], fmt="poscar")
        structures[mid] = (structure, f"materialsproject:{mid}")
    ds = write_store(
        [group],
        structures,
        out,
        "omnixas-cu-feff",
        records,
        license=OMNIXAS_LICENSE,
        description="OmniXAS Cu K-edge FEFF 9.9.1 site spectra (Materials Project oxides)",
        source={
            "kind": "OmniXAS Cu FEFF",
            "folder": str(folder.resolve()),
            "only_listed": only_listed,
        },
        overwrite=overwrite,
    )
    # official splits, not the greedy ones write_store made
    ds = XASDataset.open(out, mode="a")
    cols = ds.sites(columns=("material", "index"))
    splits = splits_from_lists(ds.material_ids[cols["material"]], cols["index"], lists)
    ds.set_splits(splits, method="official OmniXAS split lists", files=sorted(lists))
    return XASDataset.open(out)


def ingest_omnixas_ml_arrays(
    npz_path: str | Path, out: str | Path, overwrite: bool = False
) -> XASDataset:
    """Store the OmniXAS ML arrays (``<El>_<FID>_<split>_{X,y,ids}``) with their features.

    The 64-d M3GNet features (matgl 0.8.5, x1000) go to ``features/m3gnet-omnixas-0.8.5``.
    No structures come with these arrays: materials are stored with an empty structure.
    """
    npz_path = Path(npz_path)
    data = np.load(_require(npz_path, "the OmniXAS ML arrays (val_test_arrays.npz)"))
    keys = defaultdict(dict)
    for key in data.files:
        element, fidelity, split, kind = key.split("_")
        keys[(element, fidelity)][(split, kind)] = key
    groups, features, splits_by_group = [], [], []
    for (element, fidelity), parts in sorted(keys.items()):
        grid = default_grid(element)
        ids, sites, ys, xs, split_names = [], [], [], [], []
        for split in ("train", "val", "test"):
            if (split, "y") not in parts:
                continue
            for site_id in data[parts[(split, "ids")]]:
                material, site = parse_site_id(str(site_id))
                ids.append(material)
                sites.append(site)
            ys.append(data[parts[(split, "y")]])
            xs.append(data[parts[(split, "X")]])
            split_names += [split] * len(data[parts[(split, "y")]])
        y = np.concatenate(ys)
        groups.append(GroupData(element, fidelity, ids, sites, [1] * len(ids), grid.energies, y))
        features.append(np.concatenate(xs))
        splits_by_group.append(split_names)
    structures = {
        m: ("", "materialsproject (structure not shipped)") for g in groups for m in g.material_ids
    }
    records = [
        curation.record_step(
            "import_arrays",
            {"file": npz_path.name, "note": "labels as released by OmniXAS (already curated)"},
            sum(len(g.material_ids) for g in groups),
            sum(len(g.material_ids) for g in groups),
            0.0,
        ).to_dict()
    ]
    write_store(
        groups,
        structures,
        out,
        "omnixas-ml-arrays",
        records,
        license="BSD-3-Clause (OmniXAS)",
        description="OmniXAS val/test ML arrays: M3GNet (matgl 0.8.5) features and labels",
        source={"kind": "OmniXAS ML arrays", "file": str(npz_path.resolve())},
        overwrite=overwrite,
    )
    ds = XASDataset.open(out, mode="a")
    values = ds.create_features(
        OMNIXAS_FEATURES,
        features[0].shape[1],
        attrs={
            "featurizer": "m3gnet",
            "version": "matgl-0.8.5",
            "scale": 1000.0,
            "note": "from the OmniXAS release; not reproducible with current matgl",
        },
    )
    full = np.full(values.shape, np.nan, dtype=np.float32)
    splits = np.full(ds.n_sites, "", dtype=object)
    for group, x, split_names in zip(groups, features, splits_by_group, strict=True):
        selection = ds.select(group.element, group.fidelity)
        full[selection.site_rows] = x
        splits[selection.site_rows] = split_names
    values[:] = full
    ds.set_splits(splits.astype(str), method="as released (OmniXAS val/test arrays)")
    return XASDataset.open(out)


def compare_with_omnixas_arrays(ds: XASDataset, npz_path: str | Path, key: str = "Cu_FEFF_val"):
    """Max and median relative difference between stored labels and OmniXAS ``<key>_y``.

    Returns (n_matched, max_rel, median_rel), relative to each reference spectrum's max.
    """
    data = np.load(npz_path)
    ref_y, ref_ids = data[f"{key}_y"], data[f"{key}_ids"].astype(str)
    selection = ds.select("Cu", "FEFF")
    sites = selection.sites()
    ids = selection.material_ids()
    where = {
        f"{m}_{int(s):03d}": i for i, (m, s) in enumerate(zip(ids, sites["index"], strict=True))
    }
    matched = [(i, where[r]) for i, r in enumerate(ref_ids) if r in where]
    if not matched:
        raise StoreError(f"no ids of {key} found in {ds.path}")
    ref_idx, our_idx = map(np.array, zip(*matched, strict=True))
    ours = selection.intensities(our_idx).astype(np.float64)
    ref = ref_y[ref_idx].astype(np.float64)
    rel = np.abs(ours - ref).max(axis=1) / np.abs(ref).max(axis=1)
    return len(matched), float(rel.max()), float(np.median(rel))


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in text.strip().lower())
    return "-".join(part for part in out.split("-") if part) or "sample"


def read_measured(path: str | Path, kind: str) -> list:
    """Measured spectra from an XAS Data Library JSON file (``xaslib``) or XDI files (``xdi``:
    one file or a folder of ``*.xdi``)."""
    from xas_data.measured import read_xaslib_json, read_xdi

    path = Path(path)
    if kind == "xaslib":
        return read_xaslib_json(path)
    if kind == "xdi":
        files = sorted(path.glob("*.xdi")) if path.is_dir() else [path]
        if not files:
            raise XASDataError(f"{path}: no .xdi files found")
        return [read_xdi(f) for f in files]
    raise XASDataError(f"unknown measured format {kind!r}; use xaslib or xdi")


def ingest_measured(
    path: str | Path, out: str | Path, kind: str = "xaslib", overwrite: bool = False
) -> XASDataset:
    """Normalise measured K-edge spectra and store them as fidelity ``EXP`` (all of them).

    A thin wrapper over :func:`xas_data.experiment_ingest.ingest_measured_spectra` that keeps
    spectra without a linked structure too (``keep_unmatched``): deglitching, edge-step
    normalisation (pre-edge line, post-edge quadratic, E0 from the derivative maximum),
    interpolation onto the element's default grid, metadata and mineral links as there.
    """
    from xas_data.experiment_ingest import ingest_measured_spectra

    report = ingest_measured_spectra(
        read_measured(path, kind),
        out,
        keep_unmatched=True,
        overwrite=overwrite,
        name=f"measured-{kind}",
    )
    if not report.counts:
        raise XASDataError(f"{path}: no spectrum could be stored ({len(report.failed)} failed)")
    return XASDataset.open(report.store)
