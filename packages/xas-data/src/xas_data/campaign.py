"""The 8-element FEFF10 campaign: AMCSD minerals (larixite) plus the transition-metal sites of
the Materials Project structures that come with the OmniXAS Cu data.

Tasks are planned once into ``campaign-plan.json`` (deterministic order, interleaved across elements and
cheapest first, so a partial run covers every element evenly) and then run by any executor of
``xas_data.simulation`` into the same work folder. ``accurate`` tasks are a subset of the
``fast`` ones chosen by whole materials, so that materials with both fidelities exist for
cross-fidelity learning.

Run: ``xas-data campaign plan WORKDIR`` then ``xas-data simulate-plan WORKDIR --preset fast``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np

from xas_data.default_dataset import DEFAULT_ELEMENTS, feff_cost_estimate
from xas_data.errors import StructureError
from xas_data.io_utils import atomic_write_bytes, atomic_write_text
from xas_data.simulation.runner import SiteTask, _npz_bytes, plan_tasks
from xas_data.structures import MaterialRecord, check_structure, mineral_structures

MP_LICENSE = "Materials Project structures: CC-BY-4.0"
AMCSD_LICENSE = (
    "AMCSD structures: free for research (American Mineralogist Crystal Structure Database)"
)


@dataclass(frozen=True)
class CampaignRecipe:
    """Knobs of the campaign (counts are per absorbing element).

    Attributes:
        elements: absorbing elements.
        fast_per_element: most ``fast`` sites planned per element.
        accurate_per_element: most ``accurate`` sites planned per element.
        max_atoms: largest primitive cell (atoms) taken from either source.
        max_sites_per_material: inequivalent sites of one element kept per material.
        accurate_max_cost: ``feff_cost_estimate`` cap for accurate sites (keeps them affordable).
    """

    elements: tuple[str, ...] = DEFAULT_ELEMENTS
    fast_per_element: int = 600
    accurate_per_element: int = 80
    max_atoms: int = 60
    max_sites_per_material: int = 4
    accurate_max_cost: float = 400.0


def omnixas_mp_records(shared_data: str | Path, max_atoms: int) -> list[MaterialRecord]:
    """Materials Project structures of ``<shared_data>/omnixas-cu-feff/structures_poscar.json``."""
    from pymatgen.core import Structure

    path = Path(shared_data) / "omnixas-cu-feff" / "structures_poscar.json"
    if not path.is_file():
        raise StructureError(
            f"{path}: not found; set XAS_SHARED_DATA to the folder holding omnixas-cu-feff"
        )
    records = []
    for material_id, text in sorted(json.loads(path.read_text()).items()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(text, fmt="poscar")
        if len(structure) > max_atoms:
            continue
        try:
            check_structure(structure, material_id)
        except StructureError:
            continue
        records.append(MaterialRecord(material_id, structure, f"materials-project:{material_id}"))
    return records


def _element_tasks(
    records: list[MaterialRecord], element: str, workdir: Path, recipe: CampaignRecipe
) -> list[SiteTask]:
    """Tasks of one element, cheapest cells first, capped at ``fast_per_element``."""
    holding = [r for r in records if r.structure.composition.get(element, 0) > 0]
    holding.sort(key=lambda r: (len(r.structure), r.material_id))
    tasks: list[SiteTask] = []
    for record in holding:
        if len(tasks) >= recipe.fast_per_element:
            break
        tasks.extend(plan_tasks([record], element, workdir, recipe.max_sites_per_material))
    return tasks[: recipe.fast_per_element]


def _accurate_subset(
    tasks: list[SiteTask], structures: dict, recipe: CampaignRecipe
) -> list[SiteTask]:
    """Cheapest whole materials of ``tasks`` until ``accurate_per_element`` sites."""
    by_material: dict[str, list[SiteTask]] = {}
    for task in tasks:
        by_material.setdefault(task.material_id, []).append(task)
    costs = {
        mid: max(feff_cost_estimate(structures[mid], t.site_index) for t in group)
        for mid, group in by_material.items()
    }
    chosen: list[SiteTask] = []
    for mid in sorted(by_material, key=lambda m: (costs[m], m)):
        if len(chosen) >= recipe.accurate_per_element or costs[mid] > recipe.accurate_max_cost:
            break
        chosen.extend(by_material[mid])
    return chosen[: recipe.accurate_per_element]


def _interleave(groups: list[list[SiteTask]]) -> list[SiteTask]:
    return [t for batch in zip_longest(*groups) for t in batch if t is not None]


def plan_campaign(
    workdir: str | Path,
    shared_data: str | Path | None = None,
    recipe: CampaignRecipe = CampaignRecipe(),
) -> tuple[list[SiteTask], list[SiteTask]]:
    """Select sites and write ``workdir/campaign-plan.json``; a second call reads the saved plan.

    Returns the ``fast`` and ``accurate`` task lists.
    """
    workdir = Path(workdir)
    plan_path = workdir / "campaign-plan.json"
    if plan_path.exists():
        return read_plan(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shared_data = shared_data or os.environ.get("XAS_SHARED_DATA", "../shared/data")
    mp = omnixas_mp_records(shared_data, recipe.max_atoms)
    fast_groups, accurate_groups = [], []
    for element in recipe.elements:
        minerals = mineral_structures(element, (), max_atoms=recipe.max_atoms)
        records = mp + minerals
        structures = {r.material_id: r.structure for r in records}
        tasks = _element_tasks(records, element, workdir, recipe)
        fast_groups.append(tasks)
        accurate_groups.append(_accurate_subset(tasks, structures, recipe))
    fast, accurate = _interleave(fast_groups), _interleave(accurate_groups)
    payload = {
        "recipe": asdict(recipe),
        "licenses": [MP_LICENSE, AMCSD_LICENSE],
        "fast": [asdict(t) for t in fast],
        "accurate": [asdict(t) for t in accurate],
    }
    atomic_write_text(plan_path, json.dumps(payload, indent=1))
    return fast, accurate


def read_plan(workdir: str | Path) -> tuple[list[SiteTask], list[SiteTask]]:
    """The ``fast`` and ``accurate`` tasks of ``workdir/campaign-plan.json``."""
    path = Path(workdir) / "campaign-plan.json"
    if not path.is_file():
        raise StructureError(f"{path}: no campaign plan; run `xas-data campaign plan` first")
    plan = json.loads(path.read_text())
    return [SiteTask(**t) for t in plan["fast"]], [SiteTask(**t) for t in plan["accurate"]]


ARCHIVE_PRESETS = ("fast", "accurate")


def _pad(rows: list[np.ndarray], dtype) -> np.ndarray:
    width = max((r.size for r in rows), default=0)
    out = np.full((len(rows), width), np.nan, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out


def _preset_arrays(workdir: Path, preset: str) -> dict[str, np.ndarray]:
    """Results (FEFF's own points, NaN-padded) and failure records of one preset."""
    base = workdir / preset
    metas = sorted((base / "results").glob("*.json"))
    columns: dict[str, list] = {k: [] for k in ("energy", "mu", "mu0", "chi", "xsedge_norm")}
    for meta in metas:
        with np.load(meta.with_suffix(".npz")) as r:
            for key in columns:
                columns[key].append(np.atleast_1d(r[key]))
    failures = [
        json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "traceback"})
        for p in sorted((base / "failures").glob("*.json"))
    ]
    return {
        f"{preset}/meta": np.array([m.read_text() for m in metas], dtype=str),
        f"{preset}/energy": _pad(columns["energy"], np.float64),
        f"{preset}/mu": _pad(columns["mu"], np.float32),
        f"{preset}/mu0": _pad(columns["mu0"], np.float32),
        f"{preset}/chi": _pad(columns["chi"], np.float32),
        f"{preset}/xsedge_norm": np.array([x[0] for x in columns["xsedge_norm"]], np.float64),
        f"{preset}/failures": np.array(failures, dtype=str),
    }


def pack_campaign(workdir: str | Path, archive: str | Path) -> dict[str, int]:
    """Write the plan, structures, results and failures of ``workdir`` into one compressed
    ``.npz`` (temporary file, then rename), so a campaign can go on in another session or on
    another machine (``unpack_campaign``). Returns the result counts per preset."""
    workdir, archive = Path(workdir), Path(archive)
    structures = sorted((workdir / "structures").glob("*.json"))
    arrays = {
        "plan": np.array((workdir / "campaign-plan.json").read_text()),
        "structure_ids": np.array([p.stem for p in structures], dtype=str),
        "structures": np.array([p.read_text() for p in structures], dtype=str),
    }
    for preset in ARCHIVE_PRESETS:
        if (workdir / preset / "results").is_dir():
            arrays |= _preset_arrays(workdir, preset)
    tmp = archive.with_name(f".{archive.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(archive)
    return {p: len(arrays.get(f"{p}/meta", [])) for p in ARCHIVE_PRESETS}


def unpack_campaign(archive: str | Path, workdir: str | Path) -> dict[str, int]:
    """Restore what ``pack_campaign`` saved into ``workdir``; results already there are kept.

    Returns the number of results written per preset.
    """
    workdir = Path(workdir)
    written: dict[str, int] = {}
    with np.load(archive) as data:
        workdir.mkdir(parents=True, exist_ok=True)
        if not (workdir / "campaign-plan.json").exists():
            atomic_write_text(workdir / "campaign-plan.json", str(data["plan"]))
        (workdir / "structures").mkdir(exist_ok=True)
        for sid, text in zip(data["structure_ids"], data["structures"], strict=True):
            path = workdir / "structures" / f"{sid}.json"
            if not path.exists():
                atomic_write_text(path, str(text))
        for preset in ARCHIVE_PRESETS:
            if f"{preset}/meta" not in data.files:
                continue
            written[preset] = _restore_preset(data, preset, workdir / preset)
    return written


def _restore_preset(data, preset: str, base: Path) -> int:
    """Write the archived results and failures of one preset that ``base`` lacks."""
    for sub in ("results", "failures", "runs"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    n = 0
    for i, meta_text in enumerate(data[f"{preset}/meta"]):
        meta = json.loads(str(meta_text))
        target = base / "results" / f"{meta['task_id']}.json"
        if target.exists():
            continue
        ok = np.isfinite(data[f"{preset}/energy"][i])
        arrays = {k: data[f"{preset}/{k}"][i][ok] for k in ("energy", "mu", "mu0", "chi")}
        atomic_write_bytes(
            target.with_suffix(".npz"),
            _npz_bytes(**arrays, xsedge_norm=np.float64(data[f"{preset}/xsedge_norm"][i])),
        )
        atomic_write_text(target, str(meta_text))  # the json marker last: the task is done
        n += 1
    for text in data[f"{preset}/failures"]:
        failure = json.loads(str(text))
        path = base / "failures" / f"{failure['task_id']}.json"
        if not path.exists() and not (base / "results" / path.name).exists():
            atomic_write_text(path, json.dumps(failure, indent=1))
    return n


def simulation_costs(workdir: str | Path) -> list[dict]:
    """Per preset and element: results, failures, CPU-hours and CPU seconds per site.

    CPU time is the ``cpu_seconds`` a result records (FEFF's processes included); results
    written before that field existed count their wall seconds instead (``wall_only``).
    """
    rows = []
    for preset in ARCHIVE_PRESETS:
        base = Path(workdir) / preset
        per: dict[str, dict] = {}
        for meta_path in sorted((base / "results").glob("*.json")):
            meta = json.loads(meta_path.read_text())
            row = per.setdefault(
                meta["element"], {"results": 0, "failures": 0, "cpu_s": 0.0, "wall_only": 0}
            )
            row["results"] += 1
            row["cpu_s"] += float(meta.get("cpu_seconds", meta.get("seconds", 0.0)))
            row["wall_only"] += "cpu_seconds" not in meta
        for failure in sorted((base / "failures").glob("*.json")):
            element = failure.name.split("_")[0]
            per.setdefault(element, {"results": 0, "failures": 0, "cpu_s": 0.0, "wall_only": 0})
            per[element]["failures"] += 1
        for element, row in sorted(per.items()):
            rows.append(
                {
                    "preset": preset,
                    "element": element,
                    "results": row["results"],
                    "failures": row["failures"],
                    "cpu_hours": row["cpu_s"] / 3600,
                    "cpu_s_per_site": row["cpu_s"] / max(1, row["results"]),
                    "wall_only": row["wall_only"],
                }
            )
    return rows


def grid_coverage(store) -> list[dict]:
    """Per (element, fidelity) of a store: spectra, grid and the share of edges (the stored
    ``e0``) at least ``EDGE_MARGIN_EV`` inside the grid (NaN where no E0 is stored)."""
    from xas_data.schema import EDGE_MARGIN_EV, EnergyGrid, edges_inside

    rows = []
    for selection in store.iter_selections():
        energy = selection.energy
        grid = EnergyGrid(float(energy[0]), float(energy[1] - energy[0]), int(energy.size))
        has_e0 = "e0" in selection.extra_names()
        share = float(edges_inside(selection.extra("e0"), grid).mean()) if has_e0 else float("nan")
        rows.append(
            {
                "element": selection.element,
                "fidelity": selection.fidelity,
                "spectra": len(selection),
                "grid": f"{energy[0]:.2f}..{energy[-1]:.2f} eV, {energy.size} pts",
                "edges_inside": share,
                "margin_ev": EDGE_MARGIN_EV,
            }
        )
    return rows


CAMPAIGN_NAME = "xas-3dtm-feff10"
CAMPAIGN_ABOUT = {
    "kind": "FEFF10 simulation (feff10-rs) of AMCSD minerals (larixite) and Materials Project "
    "structures (the OmniXAS Cu set's transition-metal sites)",
    "license": "spectra CC-BY-4.0 (computed by this project); structures: Materials Project "
    "CC-BY-4.0, AMCSD",
    "description": "FEFF10 K-edge XANES of Ti-Cu sites at two fidelities on edge-anchored grids, "
    "raw FEFF spectra kept beside the gridded ones",
}


def build_campaign(workdir: str | Path, out: str | Path, overwrite: bool = False):
    """Curate every result of the campaign folder into the ``xas-3dtm-feff10`` store."""
    from xas_data.build import build_from_simulations

    return build_from_simulations(
        workdir, out, name=CAMPAIGN_NAME, about=CAMPAIGN_ABOUT, overwrite=overwrite
    )
