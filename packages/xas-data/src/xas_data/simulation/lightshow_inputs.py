"""Simulation inputs through Lightshow (https://github.com/AI-multimodal/Lightshow, BSD-3).

* FEFF: the ``fast`` / ``accurate`` / ``omnixas`` presets as Lightshow ``FEFFParameters``
  cards. Lightshow's FEFF cards are free-form, so they carry every card the presets set; its
  *defaults* differ (COREHOLE RPA, SCF 7 A, FMS 9 A, EGRID, RPATH -1: OmniXAS-like settings
  far too slow for this project's fast/accurate presets), so the presets' own cards are kept.
* VASP (core-hole ``CH_LSPEC``), XSpectra and OCEAN: Lightshow's default K-edge inputs written
  by ``lightshow.Database.write`` into ``<workdir>/<material id>/<code>/...``, ready to be
  run on a cluster; :mod:`xas_data.theory_ingest` reads the results back from the same tree.

Lightshow is imported through :mod:`xas_data.simulation._lightshow_compat` only.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

from xas_data.errors import SimulationError, StructureError
from xas_data.simulation._lightshow_compat import load_lightshow
from xas_data.simulation.presets import FeffPreset

# cards of pymatgen's MPXANESSet that the presets keep (LDOS is dropped, EDGE comes from edge)
PRESET_BASE_CARDS = {"CONTROL": "1 1 1 1 1 1", "PRINT": "1 0 0 0 0 0", "EXCHANGE": "0 0.0 0.0 2"}
# folder Lightshow writes per code under <workdir>/<material id>/
CODE_FOLDERS = {"vasp": "VASP", "xspectra": "XSpectra", "ocean": "OCEAN"}
# environment variables Lightshow reads to copy licensed / external potentials
POTENTIAL_ENV = {
    "vasp": ("VASP_POTCAR_DIRECTORY",),
    "xspectra": ("XS_PSP_DIRECTORY", "XS_CHPSP_DIRECTORY"),
    "ocean": (),
}


def preset_cards(preset: FeffPreset) -> dict:
    """FEFF cards of ``preset`` for Lightshow's ``FEFFParameters`` (card name -> value).

    The same cards pymatgen's ``MPXANESSet`` path writes: CONTROL, PRINT, EXCHANGE, COREHOLE,
    S02, FMS, XANES, and SCF only when ``preset.scf_radius`` is set; no LDOS.
    """
    return dict(PRESET_BASE_CARDS) | preset.tags()


def feff_parameters(preset: FeffPreset, edge: str = "K"):
    """Lightshow ``FEFFParameters`` for ``preset``; cluster radius ``fms + padding`` (A)."""
    lightshow = load_lightshow()
    return lightshow.FEFFParameters(
        cards=preset_cards(preset),
        edge=edge,
        radius=preset.fms_radius + preset.cluster_padding,
        spectrum="XANES",
        name=f"FEFF-{preset.name}",
    )


def feff_input_text_lightshow(structure, site_index: int, preset: FeffPreset, edge: str = "K"):
    """feff.inp text for absorbing site ``site_index`` made by Lightshow's ``FEFFParameters``."""
    if not 0 <= site_index < len(structure):
        raise StructureError(
            f"absorbing site index {site_index} is out of range for a structure of "
            f"{len(structure)} atoms; use an index in 0..{len(structure) - 1}"
        )
    params = feff_parameters(preset, edge)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (feff_set,) = params.get_FEFFDictSets(structure, [site_index])
        with tempfile.TemporaryDirectory() as tmp:
            feff_set.write_input(tmp)
            return (Path(tmp) / "feff.inp").read_text()


def code_parameters(code: str, edge: str = "K", preset: FeffPreset | None = None):
    """Lightshow parameters for ``code`` (vasp, xspectra, ocean; feff needs ``preset``).

    VASP: Lightshow's core-hole INCAR (ICORELEVEL 2, CLN 1 / CLL 0 = 1s, CLZ 1, CH_LSPEC);
    XSpectra / OCEAN: Lightshow's default cards for ``edge``. Only the K edge is supported.
    """
    if edge != "K":
        raise SimulationError(f"edge {edge!r}: only K-edge inputs are written; use edge='K'")
    lightshow = load_lightshow()
    from lightshow import defaults

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no POTCAR / pseudopotential folder" notices
        if code == "vasp":
            incar = copy.deepcopy(defaults.VASP_INCAR_DEFAULT_COREHOLE_POTENTIAL)
            return lightshow.VASPParameters(incar=incar)
        if code == "xspectra":
            cards = copy.deepcopy(defaults.XSPECTRA_DEFAULT_CARDS)
            return lightshow.XSpectraParameters(cards=cards, edge=edge)
        if code == "ocean":
            cards = copy.deepcopy(defaults.OCEAN_DEFAULT_CARDS)
            return lightshow.OCEANParameters(cards=cards, edge=edge)
    if code == "feff" and preset is not None:
        return feff_parameters(preset, edge)
    raise SimulationError(
        f"unknown code {code!r}; choose one of vasp, xspectra, ocean (or feff with a preset)"
    )


def missing_potentials(code: str) -> list[str]:
    """Environment variables Lightshow would read to copy potentials for ``code`` but are unset."""
    return [name for name in POTENTIAL_ENV.get(code, ()) if not os.environ.get(name)]


def _database(records: Iterable, supercell_cutoff: float):
    """A Lightshow ``Database`` keyed by material id (structures copied, Lightshow edits them)."""
    lightshow = load_lightshow()
    structures = {r.material_id: r.structure.copy() for r in records}
    if not structures:
        raise SimulationError("no structures given; pass a folder of CIF/POSCAR files")
    metadata = {r.material_id: {"origin": r.source} for r in records}
    database = lightshow.Database(structures=structures, metadata=metadata)
    database.initialize_supercells(supercell_cutoff)
    return database


def written_runs(workdir: Path, material_ids: Iterable[str], folder: str) -> list[Path]:
    """Run folders Lightshow wrote: ``<workdir>/<id>/<folder>/<site>_<El>`` (OCEAN: ``<El>``)."""
    runs = []
    for mid in material_ids:
        base = workdir / mid / folder
        runs += sorted(p for p in base.iterdir() if p.is_dir() and p.name != "GS")
    return runs


def write_code_inputs(
    records: Iterable,
    element: str,
    workdir: str | Path,
    code: str,
    preset: FeffPreset | None = None,
    supercell_cutoff: float = 9.0,
) -> list[Path]:
    """Write Lightshow inputs of ``code`` for every inequivalent ``element`` site of ``records``.

    ``records`` are ``MaterialRecord``s; their structures are used as given (site indices in
    folder names refer to them; Lightshow also writes each one as ``<id>/POSCAR``). VASP and
    XSpectra use supercells of at least ``supercell_cutoff`` A a side. Returns the run folders.
    """
    given = list(records)
    records = [r for r in given if element in {s.specie.symbol for s in r.structure}]
    if not records:
        raise SimulationError(
            f"no {element} site in the {len(given)} structures given; check --element"
        )
    workdir = Path(workdir)
    params = code_parameters(code, preset=preset)
    database = _database(records, supercell_cutoff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        database.write(workdir, absorbing_atoms=element, options=[params], pbar=False)
    (workdir / "writer_metadata.json").replace(workdir / f"writer_metadata_{params.name}.json")
    return written_runs(workdir, [r.material_id for r in records], params.name)
