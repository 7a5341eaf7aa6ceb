"""Turn FEFF simulation results into a curated, split ``XASDataset`` and re-curate stores.

Curation of one (element, fidelity) group, each step recorded in the store's provenance:

1. OmniXAS label scaling: ``y = 1000 * mu * xsedge_norm / a0^2`` (FEFF only);
2. interpolation onto the element's edge-anchored grid (``fit_edge_grid``: >= 99 % of edges
   >= 5 eV inside, >= 60 eV above the median E0), raw spectra and E0 kept beside it;
3. OmniXAS outlier removal (mean +- c * population sigma per energy; c = 2.5 FEFF, 5 VASP);
4. exact and near-duplicate removal (within one fidelity);
5. material-level greedy split (80/10/10, seeded) over all elements at once.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from xas_data import curation
from xas_data.errors import StoreError
from xas_data.io_utils import replace_directory
from xas_data.schema import (
    EDGE_MARGIN_EV,
    EnergyGrid,
    default_grid,
    edges_inside,
    fit_edge_grid,
)
from xas_data.simulation.presets import get_preset
from xas_data.splits import greedy_material_split, split_site_rows, two_pool_split
from xas_data.store import XASDataset


@dataclass(frozen=True)
class CurationConfig:
    """Settings of ``curate_group``.

    Attributes:
        outlier_c: envelope width in population sigmas; ``None`` = per fidelity (2.5 FEFF, 5 VASP).
        remove_outliers: apply the OmniXAS outlier removal.
        duplicate_rtol: near-duplicate tolerance (relative max abs difference); 0 = exact only.
        grid: ``edge`` (default) fits one grid per element to its spectra's edges
            (``fit_edge_grid``: >= 99 % of edges >= 5 eV inside, >= ``grid_above_ev`` above the
            median E0); ``omnixas`` is the fixed OmniXAS-style grid (``default_grid``).
        grid_starts: per-element grid start energies (eV) overriding the defaults (``omnixas``).
        grid_step: grid spacing (eV); in ``edge`` mode the smallest step allowed.
        grid_points: number of grid points (``omnixas``).
        grid_above_ev: ``edge`` mode: the grid reaches this far above the median E0 (eV).
        grid_max_points: ``edge`` mode: at most this many points (the step grows instead).
        check_edges: refuse a grid that cuts the edge of more than 1 % of a group's spectra.
    """

    outlier_c: float | None = None
    remove_outliers: bool = True
    duplicate_rtol: float = 1e-4
    grid: Literal["edge", "omnixas"] = "edge"
    grid_starts: dict[str, float] = field(default_factory=dict)
    grid_step: float = 0.25
    grid_points: int = 141
    grid_above_ev: float = 60.0
    grid_max_points: int = 256
    check_edges: bool = True


@dataclass
class GroupData:
    """Spectra of one (element, fidelity) group before they enter a store."""

    element: str
    fidelity: str
    material_ids: list[str]
    site_indices: list[int]
    multiplicities: list[int]
    energy: np.ndarray  # grid, eV [K]
    intensity: np.ndarray  # [n, K]
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def take(self, mask: np.ndarray) -> GroupData:
        idx = np.flatnonzero(mask)
        return GroupData(
            self.element,
            self.fidelity,
            [self.material_ids[i] for i in idx],
            [self.site_indices[i] for i in idx],
            [self.multiplicities[i] for i in idx],
            self.energy,
            self.intensity[idx],
            {k: v[idx] for k, v in self.extras.items()},
        )


def omnixas_resample(energy: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """OmniXAS's resampling of a FEFF spectrum onto ``grid`` (eV, [K]) -> [K].

    FEFF points above the grid's last energy are dropped first, then the spectrum is linearly
    interpolated with constant extension at both ends. The cropping matters: it reproduces the
    released OmniXAS Cu labels to ~1e-7 relative, where interpolating the full spectrum differs
    by up to 3 % on the last grid points.
    """
    inside = energy <= grid[-1]
    if inside.sum() < 2:
        inside = np.ones_like(inside)
    return curation.interpolate_to_grid(energy[inside], values[inside], grid, "clamp")


def curate_group(group: GroupData, config: CurationConfig) -> tuple[GroupData, list[dict]]:
    """Outlier and duplicate removal on one group; returns the kept data and step records."""
    records = []
    if config.remove_outliers and len(group.material_ids) >= 3:
        c = config.outlier_c or curation.outlier_c_for(group.fidelity)
        start = time.perf_counter()
        keep = curation.outlier_keep_mask(group.intensity, c)
        records.append(
            curation.record_step(
                "outlier_removal",
                {"c": c, "sigma": "population", "group": f"{group.element}/{group.fidelity}"},
                len(keep),
                int(keep.sum()),
                time.perf_counter() - start,
            ).to_dict()
        )
        group = group.take(keep)
    start = time.perf_counter()
    keep = curation.duplicate_keep_mask(group.intensity, rtol=config.duplicate_rtol)
    records.append(
        curation.record_step(
            "duplicate_removal",
            {"rtol": config.duplicate_rtol, "group": f"{group.element}/{group.fidelity}"},
            len(keep),
            int(keep.sum()),
            time.perf_counter() - start,
        ).to_dict()
    )
    return group.take(keep), records


@dataclass
class RawGroup:
    """Simulated spectra of one (element, fidelity) on the simulation's own energy points.

    Attributes:
        energy: [n, R] eV, NaN-padded rows (FEFF's points differ slightly between sites).
        mu: [n, R] FEFF's normalised mu (xmu.dat column 4), NaN-padded.
        xsedge_norm: [n] FEFF's edge normalisation constant.
        e0: [n] edge energy (eV): the derivative maximum of the raw spectrum (``find_e0``).
    """

    element: str
    fidelity: str
    material_ids: list[str]
    site_indices: list[int]
    multiplicities: list[int]
    energy: np.ndarray
    mu: np.ndarray
    xsedge_norm: np.ndarray
    e0: np.ndarray


def _pad_rows(rows: list[np.ndarray], dtype) -> np.ndarray:
    width = max(r.size for r in rows)
    out = np.full((len(rows), width), np.nan, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out


def read_simulation_group(
    workdir: str | Path, preset: str, element: str, task_ids: set[str] | None = None
) -> RawGroup:
    """The FEFF results of one preset and element in a simulation work folder (only those of
    ``task_ids`` when given)."""
    results = Path(workdir) / get_preset(preset).name / "results"
    metas = sorted(results.glob(f"{element}_*.json"))
    if task_ids is not None:
        metas = [m for m in metas if m.stem in task_ids]
    if not metas:
        raise StoreError(f"no {element} results for preset {preset} in {results}")
    ids, sites, mults, energies, mus, norms, e0 = [], [], [], [], [], [], []
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        with np.load(meta_path.with_suffix(".npz")) as xmu:
            energy, mu, xsedge = xmu["energy"], xmu["mu"], float(xmu["xsedge_norm"])
        energy, order = np.unique(energy, return_index=True)  # FEFF may repeat a point
        ids.append(meta["material_id"])
        sites.append(int(meta["site_index"]))
        mults.append(int(meta.get("multiplicity", 1)))
        energies.append(energy)
        mus.append(mu[order])
        norms.append(xsedge)
        e0.append(curation.find_e0(energy, mu[order]))
    return RawGroup(
        element,
        get_preset(preset).fidelity,
        ids,
        sites,
        mults,
        _pad_rows(energies, np.float64),
        _pad_rows(mus, np.float32),
        np.asarray(norms),
        np.asarray(e0),
    )


def element_grid(groups: list[RawGroup], config: CurationConfig) -> EnergyGrid:
    """The grid of one element: ``edge`` mode fits it to the E0 of all its fidelities (one
    grid per element, so cross-fidelity models share their output grid) and reaches
    ``grid_above_ev`` above the upper-quartile E0 of every fidelity (so the median of what
    curation keeps, which drops outliers after gridding, is still covered); ``omnixas`` mode
    is the fixed OmniXAS-style grid."""
    element = groups[0].element
    if config.grid == "omnixas":
        return default_grid(element, config.grid_starts, config.grid_step, config.grid_points)
    return fit_edge_grid(
        np.concatenate([g.e0 for g in groups]),
        below_ev=EDGE_MARGIN_EV,
        above_ev=config.grid_above_ev,
        step=config.grid_step,
        max_points=config.grid_max_points,
        reach_ev=max(float(np.quantile(g.e0, 0.75)) for g in groups) + config.grid_above_ev,
    )


def element_grids(raws: dict[str, list[RawGroup]], config: CurationConfig) -> dict[str, EnergyGrid]:
    """One grid per element (``element_grid``); in ``edge`` mode all share the largest step and
    point count (each keeps its own start), so universal models see one output width across
    elements, as on the OmniXAS grids. A longer grid only adds points above the edge."""
    grids = {element: element_grid(groups, config) for element, groups in raws.items()}
    if config.grid != "edge" or not grids:
        return grids
    step = max(g.step for g in grids.values())
    span = max(g.stop - g.start for g in grids.values())
    n_points = int(np.ceil(round(span / step, 6))) + 1
    return {e: EnergyGrid(g.start, step, n_points) for e, g in grids.items()}


def check_edges_inside(raw: RawGroup, grid: EnergyGrid, coverage: float = 0.99) -> int:
    """Raise ``StoreError`` when fewer than ``coverage`` of the group's edges sit inside."""
    inside = edges_inside(raw.e0, grid)
    if inside.mean() < coverage:
        raise StoreError(
            f"{raw.element} {raw.fidelity}: the grid {grid.start:.2f}..{grid.stop:.2f} eV cuts "
            f"the edge of {int((~inside).sum())} of {inside.size} spectra (E0 less than "
            f"{EDGE_MARGIN_EV:g} eV inside); use the edge-anchored grid (grid='edge') or move "
            "the grid start below the edges"
        )
    return int(inside.sum())


def grid_group(raw: RawGroup, grid: EnergyGrid) -> tuple[GroupData, list[dict]]:
    """Scale labels (OmniXAS recipe) and resample one raw group onto ``grid``; the raw spectra
    and E0 stay beside the gridded ones as extras."""
    rows = []
    for energy, mu, xsedge in zip(raw.energy, raw.mu, raw.xsedge_norm, strict=True):
        ok = np.isfinite(energy)
        label = curation.omnixas_label_scale(mu[ok].astype(np.float64), xsedge)
        rows.append(omnixas_resample(energy[ok], label, grid.energies))
    first = np.nanmin(raw.energy, axis=1)
    group = GroupData(
        raw.element,
        raw.fidelity,
        raw.material_ids,
        raw.site_indices,
        raw.multiplicities,
        grid.energies,
        np.asarray(rows, dtype=np.float32),
        {"xsedge_norm": raw.xsedge_norm, "e0": raw.e0, "raw_energy": raw.energy, "raw_mu": raw.mu},
    )
    n = len(raw.material_ids)
    records = [
        curation.record_step(
            "omnixas_label_scale",
            {
                "formula": "1000 * mu * xsedge_norm / a0^2",
                "a0_angstrom": curation.BOHR_RADIUS_ANGSTROM,
            },
            n,
            n,
            0.0,
        ).to_dict(),
        curation.record_step(
            "interpolate_to_grid",
            {
                "group": f"{raw.element}/{raw.fidelity}",
                "grid": grid.to_dict(),
                "method": "omnixas_resample (crop to grid end, linear, clamp)",
                "n_clamped_below": int((first > grid.start).sum()),
                "n_edges_inside": int(edges_inside(raw.e0, grid).sum()),
                "edge_margin_ev": EDGE_MARGIN_EV,
            },
            n,
            n,
            0.0,
        ).to_dict(),
    ]
    return group, records


def grid_groups(raws: dict[str, list[RawGroup]], config: CurationConfig):
    """Yield (GroupData, provenance records) of every raw group on its element's grid, after
    checking that the grid keeps the group's edges inside (``config.check_edges``)."""
    grids = element_grids(raws, config)
    for element in sorted(raws):
        for raw in raws[element]:
            if config.check_edges:
                check_edges_inside(raw, grids[element])
            yield grid_group(raw, grids[element])


def _store_structures(ds: XASDataset, groups: list[GroupData]) -> dict[str, tuple[str, str]]:
    """Structure JSON and source of every material of ``groups``, read from store ``ds``."""
    structures = {}
    for mid in {m for g in groups for m in g.material_ids}:
        row = ds.material_row(mid)
        structures[mid] = (
            str(ds.root["materials/structure"][row]),
            str(ds.root["materials/source"][row]),
        )
    return structures


def load_simulation_group(
    workdir: str | Path, preset: str, element: str, config: CurationConfig
) -> tuple[GroupData, list[dict]]:
    """Read the FEFF results of one preset and element, scale labels and grid them (the grid is
    fitted to this group alone in ``edge`` mode)."""
    raw = read_simulation_group(workdir, preset, element)
    grid = element_grid([raw], config)
    if config.check_edges:
        check_edges_inside(raw, grid)
    return grid_group(raw, grid)


def write_store(
    groups: list[GroupData],
    structures: dict[str, tuple[object, str]],
    out: str | Path,
    name: str,
    records: list[dict],
    split_fractions=(0.8, 0.1, 0.1),
    seed: int = 42,
    license: str = "",
    description: str = "",
    source: dict | None = None,
    overwrite: bool = False,
    splits_from: dict[tuple[str, int, str], str] | None = None,
    priority_ids: set[str] | None = None,
) -> XASDataset:
    """Write groups into a new store at ``out`` (built in a temporary folder, then renamed).

    ``structures`` maps material id -> (pymatgen Structure or JSON text, source string).
    Splits are assigned by material over all groups (``priority_ids``: split on their own with
    a larger test share, ``two_pool_split``), or taken from ``splits_from`` (a
    ``split_map``); either way they are written before the rename, so a kill leaves the old
    store or the complete new one.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise StoreError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    tmp = out.with_name(f".{out.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    ds = XASDataset.create(tmp, name, license=license, description=description)
    ds.add_provenance("source", **(source or {}))
    all_ids = [m for g in groups for m in g.material_ids]
    # materials sorted by id for a stable layout
    unique_ids = sorted(set(all_ids))
    ds.add_materials(
        unique_ids, [structures[m][0] for m in unique_ids], [structures[m][1] for m in unique_ids]
    )
    if priority_ids:
        assignment = two_pool_split(all_ids, priority_ids, split_fractions, seed=seed)
    else:
        assignment = greedy_material_split(all_ids, split_fractions, seed)
    for group in groups:
        ds.append_spectra(
            group.element,
            group.fidelity,
            group.energy,
            group.material_ids,
            group.site_indices,
            group.intensity,
            splits=split_site_rows(group.material_ids, assignment),
            multiplicities=group.multiplicities,
            extras=group.extras,
        )
    for record in records:
        ds.add_provenance(record.pop("step"), **record)
    if splits_from is not None:
        copy_splits(splits_from, ds)
    else:
        splits = ds.sites(columns=("split",))["split"]
        counts = {s: int((splits == s).sum()) for s in ("train", "val", "test")}
        ds.add_provenance(
            "split",
            method="omnixas_greedy_material",
            fractions=list(split_fractions),
            seed=seed,
            counts=counts,
        )
    replace_directory(tmp, out)
    return XASDataset.open(out)


DEFAULT_SOURCE = {
    "kind": "FEFF10 simulation (feff10-rs) of AMCSD mineral structures (larixite)",
    "license": "CC-BY-4.0 (spectra computed by this project); structures: AMCSD",
    "description": "FEFF10 K-edge XANES of mineral structures at two fidelities",
}


def build_from_simulations(
    workdir: str | Path,
    out: str | Path,
    name: str = "xas-default",
    presets: tuple[str, ...] = ("fast", "accurate"),
    config: CurationConfig = CurationConfig(),
    split_fractions=(0.8, 0.1, 0.1),
    seed: int = 42,
    overwrite: bool = False,
    about: dict[str, str] = DEFAULT_SOURCE,
    task_ids: set[str] | None = None,
) -> XASDataset:
    """Curate every (preset, element) of a simulation work folder into one store.

    ``about`` gives the store's ``kind`` of source, ``license`` and ``description``;
    ``task_ids`` restricts the store to those sites (e.g. one plan of a shared folder). Materials
    with spectra at more than one preset are split on their own with a larger test share, so
    cross-fidelity models find test materials with both fidelities.
    """
    workdir = Path(workdir)
    groups, records = [], []
    failures: dict[str, int] = {}
    raws: dict[str, list[RawGroup]] = defaultdict(list)
    for preset in presets:
        base = workdir / get_preset(preset).name
        done = [p.stem for p in (base / "results").glob("*.json")]
        elements = sorted({t.split("_")[0] for t in done if task_ids is None or t in task_ids})
        failures[preset] = sum(
            task_ids is None or p.stem in task_ids for p in (base / "failures").glob("*.json")
        )
        for element in elements:
            raws[element].append(read_simulation_group(workdir, preset, element, task_ids))
    for group, recs in grid_groups(raws, config):
        group, more = curate_group(group, config)
        groups.append(group)
        records.extend(recs + more)
    source = {
        "kind": about["kind"],
        "presets": {p: get_preset(p).to_dict() for p in presets},
        "failed_sites": failures,
        "recipe": _plan_recipe(workdir),
        "curation": asdict(config),
    }
    return write_store(
        groups,
        _work_structures(workdir, groups),
        out,
        name,
        records,
        split_fractions,
        seed,
        license=about["license"],
        description=about["description"],
        source=source,
        overwrite=overwrite,
        priority_ids=_multi_fidelity_materials(groups),
    )


def _work_structures(workdir: Path, groups: list[GroupData]) -> dict[str, tuple[object, str]]:
    from xas_data.simulation.runner import load_structure

    structures = {}
    for mid in {m for g in groups for m in g.material_ids}:
        payload = json.loads((workdir / "structures" / f"{mid}.json").read_text())
        structures[mid] = (load_structure(workdir, mid), payload.get("source", ""))
    return structures


def _plan_recipe(workdir: Path) -> dict | None:
    for name in ("campaign-plan.json", "plan.json"):
        if (workdir / name).exists():
            return json.loads((workdir / name).read_text())["recipe"]
    return None


def _multi_fidelity_materials(groups: list[GroupData]) -> set[str]:
    """Materials with spectra of one element at two or more fidelities."""
    fidelities: dict[tuple[str, str], set[str]] = defaultdict(set)
    for group in groups:
        for mid in group.material_ids:
            fidelities[(group.element, mid)].add(group.fidelity)
    return {mid for (_, mid), fids in fidelities.items() if len(fids) > 1}


def group_from_store(selection) -> GroupData:
    """Load one selection of a store as ``GroupData`` (for re-curation)."""
    sites = selection.sites()
    ids = selection.material_ids().tolist()
    group_path = f"spectra/{selection.element}/{selection.fidelity}"
    group = selection.dataset.root[group_path]
    extras = {
        key: selection.extra(key)
        for key in group.array_keys()
        if key not in ("energy", "rows", "intensity")
    }
    return GroupData(
        selection.element,
        selection.fidelity,
        ids,
        sites["index"].tolist(),
        sites["multiplicity"].tolist(),
        selection.energy,
        selection.intensities(),
        extras,
    )


def curate_store(
    src: str | Path,
    out: str | Path,
    config: CurationConfig = CurationConfig(),
    split_fractions=(0.8, 0.1, 0.1),
    seed: int = 42,
    keep_splits: bool = False,
    overwrite: bool = False,
) -> XASDataset:
    """Re-curate an existing store into a new one (the source store is never modified)."""
    ds = XASDataset.open(src)
    groups, records = [], []
    for selection in ds.iter_selections():
        group, recs = curate_group(group_from_store(selection), config)
        groups.append(group)
        records.extend(recs)
    structures = _store_structures(ds, groups)
    source = {"kind": "re-curation", "from": str(Path(src).resolve()), "parent": ds.provenance}
    return write_store(
        groups,
        structures,
        out,
        ds.name,
        records,
        split_fractions,
        seed,
        ds.attrs.get("license", ""),
        ds.attrs.get("description", ""),
        source,
        overwrite,
        splits_from=split_map(ds) if keep_splits else None,
    )


def split_map(src: XASDataset) -> dict[tuple[str, int, str], str]:
    """(material id, site index, fidelity) -> split of every site of ``src``."""
    sites = src.sites(columns=("material", "index", "fidelity", "split"))
    ids = src.material_ids[sites["material"]]
    return {
        (str(m), int(i), str(f)): str(s)
        for m, i, f, s in zip(ids, sites["index"], sites["fidelity"], sites["split"], strict=True)
    }


def copy_splits(src: XASDataset | dict, out: XASDataset) -> XASDataset:
    """Give every site of the writable store ``out`` the split of the same (material, site,
    fidelity) in ``src`` (a store or its ``split_map``; '' where it lacks the site)."""
    old = split_map(src) if isinstance(src, XASDataset) else src
    new = out
    cols = new.sites(columns=("material", "index", "fidelity"))
    ids = new.material_ids[cols["material"]]
    splits = np.array(
        [
            old.get((str(m), int(i), str(f)), "")
            for m, i, f in zip(ids, cols["index"], cols["fidelity"], strict=True)
        ]
    )
    new.set_splits(splits, method="kept from source store")
    return new


def raw_group_from_store(selection) -> RawGroup:
    """The raw spectra a store keeps beside one selection's gridded ones."""
    missing = {"raw_energy", "raw_mu", "xsedge_norm", "e0"} - selection.extra_names()
    if missing:
        raise StoreError(
            f"{selection.element} {selection.fidelity}: the store keeps no raw spectra "
            f"(missing {sorted(missing)}); it can only be re-gridded by simulating again "
            "(xas-data simulate, then xas-data build)"
        )
    sites = selection.sites()
    return RawGroup(
        selection.element,
        selection.fidelity,
        selection.material_ids().tolist(),
        sites["index"].tolist(),
        sites["multiplicity"].tolist(),
        selection.extra("raw_energy"),
        selection.extra("raw_mu"),
        selection.extra("xsedge_norm"),
        selection.extra("e0"),
    )


def regrid_store(
    src: str | Path, out: str | Path, config: CurationConfig = CurationConfig(), overwrite=False
) -> XASDataset:
    """Re-derive every element's grid from the raw spectra kept in ``src`` and resample them
    into a new store at ``out`` (same rows and splits; no new simulation, no re-curation)."""
    ds = XASDataset.open(src)
    splits = split_map(ds)  # read before ``out`` may replace ``src`` (in-place regrid)
    raws: dict[str, list[RawGroup]] = defaultdict(list)
    for selection in ds.iter_selections():
        raws[selection.element].append(raw_group_from_store(selection))
    groups, records = [], []
    for group, recs in grid_groups(raws, config):
        groups.append(group)
        records.extend(recs)
    structures = _store_structures(ds, groups)
    source = {"kind": "regrid", "from": str(Path(src).resolve()), "parent": ds.provenance}
    return write_store(
        groups,
        structures,
        out,
        ds.name,
        records,
        license=ds.attrs.get("license", ""),
        description=ds.attrs.get("description", ""),
        source=source,
        overwrite=overwrite or Path(out).resolve() == Path(src).resolve(),
        splits_from=splits,
    )
