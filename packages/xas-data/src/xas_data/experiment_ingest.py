"""Ingest measured K-edge spectra into a store as fidelity ``EXP``, linked to structures.

Each spectrum is processed (``experiment_processing``: deglitching, E0, edge-step
normalisation, interpolation onto the element's grid) and linked to a crystal structure:

1. a CIF/POSCAR the user gives for the sample (``cif_map``: sample name, file stem or
   material id -> path);
2. a mineral name in the sample name or file name (``tenorite``, ``sphalerite``, ...) whose
   AMCSD structure (shipped with ``larixite``) has the sample's composition;
3. the sample's reduced formula (foils and metals: the element) against the AMCSD formulas;
   among several minerals the one with the most matching CIFs wins (then the name), and
   within it the lowest AMCSD id that parses as an ordered structure.

Linked spectra go to ``spectra/<El>/EXP`` with one site per spectrum: the first absorbing
site of the element in the (primitive) structure, with multiplicity = all absorber sites,
because a measured spectrum is a site average (recorded in the material's source JSON).
Spectra without a structure, or that fail processing, are listed in the returned
:class:`IngestReport` (and by the CLI); unmatched ones are stored only with
``keep_unmatched`` (with an empty structure). Writes go to a temporary copy of the store that
is renamed over the target at the end, so an existing store is never half-modified.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xas_data.edges import k_edge_energy
from xas_data.errors import StructureError, XASDataError
from xas_data.experiment_processing import ProcessedSpectrum, ProcessingConfig, process_spectrum
from xas_data.io_utils import replace_directory
from xas_data.measured import (
    MeasuredSpectrum,
    read_athena_project,
    read_two_column,
    read_xaslib_json,
    read_xdi,
)
from xas_data.schema import EnergyGrid, default_grid

__all__ = [
    "IngestReport",
    "IngestRow",
    "StructureLink",
    "StructureLinker",
    "ingest_measured_spectra",
    "read_measured_sources",
    "sample_composition",
]

FIDELITY = "EXP"
UNMATCHED = "UNMATCHED"
#: Largest difference of atomic fractions for two compositions to count as the same.
COMPOSITION_TOLERANCE = 0.01
_FOIL_WORDS = ("foil", "metal")
_FORMULA_CHARS = re.compile(r"^[A-Za-z0-9().\[\]]+$")


# --------------------------------------------------------------------------- reading


_SPECTRUM_SUFFIXES = (".xdi", ".json", ".prj", ".nor", ".dat", ".xmu")


def _read_one(path: Path, element: str | None, problems: list[str] | None):
    """The spectra of one file, by format (see :func:`read_measured_sources`)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_xaslib_json(path)
    if suffix == ".prj":
        return read_athena_project(path, element=element, problems=problems)
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        first = next((line.strip() for line in handle if line.strip()), "")
    if re.match(r"^#\s*XDI/", first, flags=re.IGNORECASE):
        return [read_xdi(path, element=element)]
    symbol = element or (path.parent.name if _ELEMENT_DIR.match(path.parent.name) else None)
    if symbol is None:
        raise XASDataError(
            f"{path}: a column file names no element; pass the absorber "
            "(--element Ti / element='Ti')"
        )
    return [read_two_column(path, element=symbol)]


_ELEMENT_DIR = re.compile(r"^(Ti|V|Cr|Mn|Fe|Co|Ni|Cu|Zn|Sc|Ca|Ga|Ge|As|Se)$")


def read_measured_sources(
    sources: Sequence[str | Path], element: str | None = None, problems: list[str] | None = None
) -> list[MeasuredSpectrum]:
    """Read measured spectra from files or folders, detecting the format.

    ``*.json``: XAS Data Library export (``read_xaslib_json``); ``*.prj``: Athena project
    (``read_athena_project``, one spectrum per group); a file whose first line starts with
    ``# XDI``: XDI (``read_xdi``); a folder: every ``*.xdi``, ``*.json``, ``*.prj``, ``*.nor``,
    ``*.dat`` and ``*.xmu`` in it (sorted); anything else: column text (``read_two_column``,
    which recognises already-normalised ``.nor``/``.dat`` data; needs ``element``, or a
    folder named by the element, e.g. ``Ti/``).

    Args:
        sources: files or folders.
        element: absorber for column files, Athena projects and XDI files without
            ``Element.symbol``.
        problems: when given, a file or project group that cannot be read adds a one-line
            message here and reading goes on; when None the first one raises.

    Returns:
        The spectra, in the order of ``sources`` (energies in eV, ascending).

    Raises:
        XASDataError: a missing path, an empty folder, a column file without ``element``,
            or any reader error (the file is named), when ``problems`` is None.
    """
    spectra: list[MeasuredSpectrum] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.suffix.lower() in _SPECTRUM_SUFFIXES)
            if not files:
                raise XASDataError(
                    f"{path}: the folder holds no {', '.join(_SPECTRUM_SUFFIXES)} spectra"
                )
            spectra.extend(read_measured_sources(files, element, problems))
            continue
        if not path.is_file():
            raise XASDataError(f"{path}: no such file or folder; check the path")
        try:
            spectra.extend(_read_one(path, element, problems))
        except XASDataError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
    return spectra


# --------------------------------------------------------------------------- compositions


_POLYMORPH_TAG = re.compile(r"-[a-z][a-z0-9]*$")  # MnO2-pyr, TiO2-rutile
_COUNTER_SUFFIX = re.compile(r"(?<=[A-Za-z0-9)])\.\d{3}$")  # FeO.001 (Athena group counters)
_LEADING_COEFFICIENT = re.compile(r"^(\d+(?:\.\d+)?|[nxy])?\s*(.+)$")
_WATER = {"H2O", "(H2O)", "OH2"}


def _formula_parts(text: str) -> list[str]:
    """Split a formula at hydrate and adduct separators: whitespace, ``·``, ``*`` and a ``.``
    before a multiplier or group (``CuSO4.5H2O``), but not inside a leading decimal
    coefficient (``0.5(H2O)``)."""
    parts = []
    for piece in re.split(r"\s+|[·*]", text.strip()):
        head = re.match(r"^\d+\.\d+", piece)
        keep, rest = (head.group(0), piece[head.end() :]) if head else ("", piece)
        split = re.split(r"\.(?=\d*[A-Z(])", rest)
        parts.extend([keep + split[0], *split[1:]] if piece else [])
    return [p for p in parts if p]


def _parse_formula(text: str):
    """pymatgen ``Composition`` of a formula, or None when the text is not one.

    Reads plain formulas (``CuO``, ``Ni(OH)2``), hydrates and adducts (``Zn3(PO4)2·4H2O``,
    ``CuSO4.5H2O``, ``Fe2O3 0.5(H2O)``; water of unknown count, ``Fe4(OH)8Cl n(H2O)``, is
    left out), polymorph tags (``MnO2-pyr``) and Athena group counters (``FeO.001``).
    """
    from pymatgen.core import Composition

    text = text.strip()
    if not text or "_" in text:  # xaslib writes Ni(OH)2 as "Ni_OH_2": ambiguous, not parsed
        return None
    text = _COUNTER_SUFFIX.sub("", _POLYMORPH_TAG.sub("", text))
    total = None
    for part in _formula_parts(text):
        match = _LEADING_COEFFICIENT.match(part)
        if match is None or not _FORMULA_CHARS.match(match.group(2)):
            return None
        coefficient, body = match.group(1), match.group(2)
        if coefficient in ("n", "x", "y"):
            if body in _WATER:
                continue
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                comp = Composition(body) * float(coefficient or 1)
        except Exception:
            return None
        if comp.num_atoms <= 0:
            return None
        total = comp if total is None else total + comp
    return total


def sample_composition(spectrum: MeasuredSpectrum):
    """The sample's composition (pymatgen ``Composition``) or None when it cannot be told.

    Tried in turn: the ``formula`` field; the first word of the sample name (``"CuO  copper
    oxide"``, ``"Ni(OH)2 nickel hydroxide"``); the element itself for foils and metals (the
    name holds ``foil`` or ``metal``). A composition without the absorbing element is ignored.
    """
    from pymatgen.core import Composition

    candidates = [spectrum.formula]
    words = spectrum.name.split()
    if words:
        candidates.append(words[0])
    for text in candidates:
        comp = _parse_formula(text or "")
        if comp is not None and spectrum.element in {el.symbol for el in comp.elements}:
            return comp
    label = f"{spectrum.name} {spectrum.metadata.get('xdi_file', '')}".lower()
    if any(word in label for word in _FOIL_WORDS):
        return Composition(spectrum.element)
    return None


def _same_composition(a, b, tol: float = COMPOSITION_TOLERANCE) -> bool:
    """Whether two compositions have the same elements and atomic fractions within ``tol``."""
    fa, fb = a.fractional_composition, b.fractional_composition
    elements = {el.symbol for el in fa.elements} | {el.symbol for el in fb.elements}
    return all(abs(fa[el] - fb[el]) <= tol for el in elements)


# --------------------------------------------------------------------------- linking


@dataclass(frozen=True)
class StructureLink:
    """How a measured spectrum was linked to a structure.

    Attributes:
        method: ``"cif"`` (user file), ``"mineral-name"``, ``"formula"`` or ``""`` (none).
        structure: pymatgen ``Structure`` (primitive cell for AMCSD) or None.
        source: ``amcsd:<id>:<mineral>`` or ``file:<path>`` ("" when unmatched).
        mineral: the mineral name ("" for user files and unmatched spectra).
        amcsd_id: the AMCSD id, or None.
        candidates: other minerals that matched (formula matches), for the record.
        site_index: first absorbing site of the element in ``structure`` (-1 when none).
        n_absorber_sites: number of absorber sites in the structure (the site average).
        reason: why no structure was linked ("" when linked).
    """

    method: str
    structure: Any = None
    source: str = ""
    mineral: str = ""
    amcsd_id: int | None = None
    candidates: tuple[str, ...] = ()
    site_index: int = -1
    n_absorber_sites: int = 0
    reason: str = ""

    @property
    def linked(self) -> bool:
        return self.structure is not None

    @property
    def label(self) -> str:
        """Short description for tables: ``tenorite (amcsd 18816)``, a file name, UNMATCHED."""
        if not self.linked:
            return UNMATCHED
        if self.amcsd_id is not None:
            return f"{self.mineral.lower()} (amcsd {self.amcsd_id})"
        return Path(self.source.removeprefix("file:")).name

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (no structure)."""
        return {
            "method": self.method,
            "source": self.source,
            "mineral": self.mineral,
            "amcsd_id": self.amcsd_id,
            "candidates": list(self.candidates),
            "site_index": self.site_index,
            "n_absorber_sites": self.n_absorber_sites,
            "reason": self.reason,
        }


def _absorber_sites(structure, element: str) -> list[int]:
    return [i for i, site in enumerate(structure) if site.specie.symbol == element]


class StructureLinker:
    """Links measured spectra to structures: user CIFs, then AMCSD mineral names/formulas.

    The AMCSD index (ids, formulas, mineral names) is read once from larixite's database;
    results are cached per (element, composition, name words), so repeated measurements of
    one compound link to the same CIF.
    """

    def __init__(self, cif_map: Mapping[str, str | Path] | None = None, use_amcsd: bool = True):
        self.cif_map = {self._key(k): Path(v) for k, v in (cif_map or {}).items()}
        self.used_keys: set[str] = set()
        self.use_amcsd = use_amcsd
        self._db = None
        self._rows: list[tuple[int, str, str]] | None = None  # (id, formula, mineral)
        self._compositions: dict[int, Any] = {}
        self._minerals: dict[str, str] = {}
        self._cache: dict[tuple, StructureLink] = {}
        self._parsed: dict[int, Any] = {}

    @staticmethod
    def _key(text: str) -> str:
        return " ".join(str(text).split()).lower()

    # ---------------------------------------------------------------- AMCSD index
    def _index(self) -> list[tuple[int, str, str]]:
        if self._rows is None:
            from xas_data.structures import _amcsd

            self._db = _amcsd()
            import larixite.amcsd as amcsd

            names = {int(r.id): str(r.name) for r in self._db.get_all("minerals")}
            table = self._db.tables["cif"]
            query = amcsd.select(table.c.id, table.c.formula, table.c.mineral_id)
            self._rows = sorted(
                (int(i), str(f or ""), names.get(int(m), "")) for i, f, m in self._db.execall(query)
            )
            self._minerals = {
                n.lower(): n for n in names.values() if n and n != "<missing>" and len(n) >= 4
            }
        return self._rows

    def _composition(self, cif_id: int, formula: str):
        if cif_id not in self._compositions:
            self._compositions[cif_id] = _parse_formula(re.sub(r"\s+", "", formula))
        return self._compositions[cif_id]

    def _structure(self, cif_id: int):
        """Primitive ordered structure of an AMCSD CIF, or None when unusable."""
        if cif_id not in self._parsed:
            from pymatgen.io.cif import CifParser

            from xas_data.structures import check_structure

            structure = None
            try:
                cif = self._db.get_cif(cif_id)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    parsed = CifParser(io.StringIO(cif.ciftext)).parse_structures(primitive=True)
                structure = check_structure(parsed[0], f"amcsd {cif_id}")
            except Exception:
                structure = None
            self._parsed[cif_id] = structure
        return self._parsed[cif_id]

    def _amcsd_link(self, rows, element, comp, method, candidates=()) -> StructureLink | None:
        """The first CIF of ``rows`` (by id) that parses, is ordered and matches ``comp``."""
        for cif_id, _, mineral in sorted(rows):
            structure = self._structure(cif_id)
            if structure is None:
                continue
            if comp is not None and not _same_composition(structure.composition, comp):
                continue
            sites = _absorber_sites(structure, element)
            if not sites:
                continue
            return StructureLink(
                method=method,
                structure=structure,
                source=f"amcsd:{cif_id}:{mineral}",
                mineral=mineral,
                amcsd_id=cif_id,
                candidates=tuple(candidates),
                site_index=sites[0],
                n_absorber_sites=len(sites),
            )
        return None

    # ---------------------------------------------------------------- public
    def user_cif(self, spectrum: MeasuredSpectrum, material_id: str = "") -> Path | None:
        """The user CIF given for this spectrum (by sample name, file stem or material id)."""
        keys = [spectrum.name, material_id]
        for meta_key in ("xdi_file", "source_file"):
            value = spectrum.metadata.get(meta_key)
            if value:
                keys.append(Path(str(value)).stem)
        for key in keys:
            k = self._key(key)
            if k and k in self.cif_map:
                self.used_keys.add(k)
                return self.cif_map[k]
        return None

    def link(self, spectrum: MeasuredSpectrum, material_id: str = "") -> StructureLink:
        """Link one spectrum; never raises for a missing match (returns ``method=""``).

        Raises:
            StructureError: a user-given CIF that cannot be read or lacks the absorber.
        """
        from xas_data.structures import read_structure

        element = spectrum.element
        path = self.user_cif(spectrum, material_id)
        if path is not None:
            structure = read_structure(path)
            sites = _absorber_sites(structure, element)
            if not sites:
                raise StructureError(
                    f"{path} (given for sample {spectrum.name!r}) has no {element} atom; give "
                    f"the structure of the measured {element} compound"
                )
            return StructureLink(
                method="cif",
                structure=structure,
                source=f"file:{path}",
                site_index=sites[0],
                n_absorber_sites=len(sites),
            )
        if not self.use_amcsd:
            return StructureLink(method="", reason="no CIF given and AMCSD linking is off")
        comp = sample_composition(spectrum)
        text = f"{spectrum.name} {Path(str(spectrum.metadata.get('xdi_file', ''))).stem}"
        words = tuple(sorted({w for w in re.split(r"[^a-z]+", text.lower()) if len(w) >= 4}))
        key = (element, comp.reduced_formula if comp is not None else "", words)
        if key not in self._cache:
            self._cache[key] = self._search(element, comp, words)
        return self._cache[key]

    def _search(self, element: str, comp, words: tuple[str, ...]) -> StructureLink:
        rows = self._index()
        # 1. a mineral named in the sample/file name, with the sample's composition
        for word in words:
            mineral = self._minerals.get(word)
            if mineral is None:
                continue
            named = [r for r in rows if r[2] == mineral]
            link = self._amcsd_link(named, element, comp, "mineral-name")
            if link is not None:
                return link
        if comp is None:
            return StructureLink(
                method="",
                reason="no formula (formula field, first word of the name, or a foil) and no "
                "mineral name with this element; pass a CIF for the sample",
            )
        # 2. the reduced formula against the AMCSD formulas
        symbols = {el.symbol for el in comp.elements}
        matches = []
        for row in rows:
            if element not in row[1]:
                continue
            other = self._composition(row[0], row[1])
            if other is None or {el.symbol for el in other.elements} != symbols:
                continue
            if _same_composition(other, comp):
                matches.append(row)
        by_mineral = Counter(r[2] for r in matches if r[2] and r[2] != "<missing>")
        ranked = sorted(by_mineral, key=lambda m: (-by_mineral[m], m.lower()))
        for mineral in ranked:
            others = [m for m in ranked if m != mineral]
            link = self._amcsd_link(
                [r for r in matches if r[2] == mineral], element, comp, "formula", others
            )
            if link is not None:
                return link
        return StructureLink(
            method="",
            reason=f"no ordered AMCSD structure with formula {comp.reduced_formula}; pass a CIF "
            "for the sample (--cif SAMPLE=PATH)",
        )


# --------------------------------------------------------------------------- report


@dataclass
class IngestRow:
    """One input spectrum in the report.

    Attributes:
        name: sample name.
        formula: formula as given.
        element: absorbing element.
        material_id: material id in the store ("" when not stored).
        status: ``stored``, ``already stored``, ``unmatched`` (not stored), ``stored without
            structure`` or ``failed``.
        e0: E0 in eV (NaN when processing failed).
        edge_step: edge step (raw mu units; NaN when failed).
        n_deglitched: replaced spike points.
        structure: ``mineral (amcsd id)``, a file name, or ``UNMATCHED``.
        link_method: ``cif``, ``mineral-name``, ``formula`` or "".
        source_file: the file read (and ``xdi_file`` for the XAS Data Library).
        message: the error or the reason for no structure.
        notes: what processing changed or adapted (keV converted, points sorted, ranges).
    """

    name: str
    formula: str
    element: str
    material_id: str = ""
    status: str = ""
    e0: float = float("nan")
    edge_step: float = float("nan")
    n_deglitched: int = 0
    structure: str = UNMATCHED
    link_method: str = ""
    source_file: str = ""
    message: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    """What :func:`ingest_measured_spectra` did.

    Attributes:
        store: path of the store written.
        rows: one row per input spectrum, in input order.
        counts: spectra stored by this run per element.
    """

    store: Path
    rows: list[IngestRow] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def linked(self) -> list[IngestRow]:
        return [r for r in self.rows if r.structure != UNMATCHED and r.status != "failed"]

    @property
    def unmatched(self) -> list[IngestRow]:
        return [r for r in self.rows if r.structure == UNMATCHED and r.status != "failed"]

    @property
    def failed(self) -> list[IngestRow]:
        return [r for r in self.rows if r.status == "failed"]

    def table(self) -> str:
        """The report as a text table (one line per spectrum) plus the problems."""
        header = (
            f"{'sample':<32}{'formula':<16}{'el':<4}{'E0 (eV)':>10}{'step':>8}{'dgl':>5}  "
            f"{'structure':<30}status"
        )
        lines = [header, "-" * len(header)]
        for r in self.rows:
            e0 = f"{r.e0:.1f}" if np.isfinite(r.e0) else "-"
            step = f"{r.edge_step:.3f}" if np.isfinite(r.edge_step) else "-"
            lines.append(
                f"{' '.join(r.name.split())[:31]:<32}{r.formula[:15]:<16}{r.element:<4}"
                f"{e0:>10}{step:>8}{r.n_deglitched:>5}  {r.structure[:29]:<30}{r.status}"
            )
        counts = ", ".join(f"{el} {n}" for el, n in sorted(self.counts.items())) or "none"
        lines.append(
            f"\n{sum(self.counts.values())} spectra stored in {self.store} ({counts}); "
            f"{len(self.linked)} linked, {len(self.unmatched)} unmatched, "
            f"{len(self.failed)} failed"
        )
        for r in self.unmatched:
            lines.append(f"UNMATCHED {' '.join(r.name.split())} ({r.source_file}): {r.message}")
        for r in self.failed:
            lines.append(f"FAILED {' '.join(r.name.split())}: {r.message}")
        for r in self.rows:
            lines.extend(f"NOTE {' '.join(r.name.split())}: {note}" for note in r.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.store),
            "counts": dict(self.counts),
            "rows": [r.__dict__ for r in self.rows],
        }


# --------------------------------------------------------------------------- ingest


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in text.strip().lower())
    return "-".join(part for part in out.split("-") if part) or "sample"


def _base_id(spectrum: MeasuredSpectrum) -> str:
    meta = spectrum.metadata
    stem = Path(str(meta.get("xdi_file") or "")).stem
    if not stem:
        stem = spectrum.name or Path(str(meta.get("source_file") or "")).stem
        if "record_index" in meta and not spectrum.name:
            stem = f"{stem}-{meta['record_index']}"
    return f"exp-{spectrum.element.lower()}-{_slug(stem)}"


def _data_hash(spectrum: MeasuredSpectrum) -> str:
    digest = hashlib.sha256()
    digest.update(spectrum.element.encode())
    digest.update(np.ascontiguousarray(spectrum.energy, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(spectrum.mu, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def _element_grid(element: str, grids, stored: dict[str, np.ndarray]) -> np.ndarray:
    """Grid (eV [K]) for ``element``: a given one, the store's EXP grid, or the default."""
    if grids is not None and element in grids:
        grid = grids[element]
        return grid.energies if isinstance(grid, EnergyGrid) else np.asarray(grid, float)
    if element in stored:
        return stored[element]
    try:
        return default_grid(element).energies
    except XASDataError:
        from xas_data.schema import DEFAULT_GRID_START_EV, K_EDGE_EV

        offset = DEFAULT_GRID_START_EV["Ti"] - K_EDGE_EV["Ti"]
        return EnergyGrid(round(k_edge_energy(element) + offset, 3)).energies


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, tuple)):
        return list(obj)
    return str(obj)


def ingest_measured_spectra(
    spectra: Sequence[MeasuredSpectrum],
    out: str | Path,
    cif_map: Mapping[str, str | Path] | None = None,
    grids: Mapping[str, EnergyGrid | np.ndarray] | None = None,
    config: ProcessingConfig | None = None,
    keep_unmatched: bool = False,
    link_minerals: bool = True,
    overwrite: bool = False,
    strict: bool = False,
    name: str = "measured",
    read_problems: Sequence[str] = (),
) -> IngestReport:
    """Process measured K-edge spectra and store them as fidelity ``EXP`` in ``out``.

    An existing store is extended (its data are kept; spectra already stored, recognised by
    material id and data hash, are skipped); a new one is created. The whole write happens in
    a temporary copy renamed over ``out`` at the end.

    Args:
        spectra: measured spectra (see ``read_measured_sources``).
        out: the store (``.zarr`` folder).
        cif_map: sample -> CIF/POSCAR path; keys match the sample name (whitespace and case
            ignored), the file stem, or the material id. Every key must match a sample.
        grids: element -> grid (``EnergyGrid`` or energies [K] in eV); default: the store's
            existing EXP grid of the element, else ``default_grid(element)`` (141 x 0.25 eV).
        config: processing settings (deglitching, E0, fit ranges, flattening).
        keep_unmatched: also store spectra without a structure (empty structure, site 0).
        link_minerals: look up AMCSD minerals (larixite); off = only ``cif_map``.
        overwrite: replace an existing store instead of extending it.
        strict: raise on the first spectrum that fails processing (else it is reported).
        name: store name when a new store is created.
        read_problems: one-line messages of files or project groups the readers could not
            read (``read_measured_sources(..., problems=...)``); each becomes a ``failed`` row.

    Returns:
        :class:`IngestReport` with one row per input spectrum.

    Nothing is written when no spectrum is to be stored (a new store is not created), and
    the store's writer lock (:func:`xas_data.store.store_writer`) is held from the first read
    of the store to the final rename, so concurrent ingests never lose each other's spectra.

    Raises:
        XASDataError: no spectra given, a ``cif_map`` key matching no sample, an unreadable
            user CIF, a store of another schema, a grid differing from the store's, or
            (``strict``) a bad spectrum; ``BusyError`` when another writer holds the store.
    """
    from xas_data.store import store_writer

    out = Path(out)
    if not spectra:
        raise XASDataError(f"no spectra to ingest into {out}; pass at least one measured file")
    with store_writer(out):
        return _ingest_locked(
            spectra, out, cif_map, grids, config, keep_unmatched, link_minerals, overwrite,
            strict, name, read_problems,
        )  # fmt: skip


def _ingest_locked(
    spectra,
    out,
    cif_map,
    grids,
    config,
    keep_unmatched,
    link_minerals,
    overwrite,
    strict,
    name,
    read_problems=(),
) -> IngestReport:
    """``ingest_measured_spectra`` with the store's writer lock held."""
    config = config or ProcessingConfig()
    linker = StructureLinker(cif_map, use_amcsd=link_minerals)
    report = IngestReport(store=out)
    for message in read_problems:
        source = message.split(",", 1)[0].split(":", 1)[0]
        report.rows.append(
            IngestRow(
                name="(unread)",
                formula="",
                element="",
                status="failed",
                source_file=source,
                message=message,
            )  # fmt: skip
        )

    existing_hash: dict[str, str] = {}
    stored_grids: dict[str, np.ndarray] = {}
    if out.exists() and not overwrite:
        from xas_data.store import XASDataset

        old = XASDataset.open(out)
        sources = old.root["materials/source"][:] if old.n_materials else []
        for mid, source in zip(old.material_ids, sources, strict=True):
            if str(mid).startswith("exp-"):
                try:
                    existing_hash[str(mid)] = json.loads(str(source)).get("data_sha256", "")
                except (json.JSONDecodeError, AttributeError):
                    existing_hash[str(mid)] = ""
        for element, fidelity in old.groups():
            if fidelity == FIDELITY:
                stored_grids[element] = old.root[f"spectra/{element}/{fidelity}/energy"][:]

    # process and link
    used_ids: set[str] = set()
    materials: dict[str, tuple[Any, str]] = {}
    by_element: dict[str, list[tuple[str, StructureLink, ProcessedSpectrum]]] = {}
    for spectrum in spectra:
        meta = spectrum.metadata
        row = IngestRow(
            name=spectrum.name,
            formula=spectrum.formula,
            element=spectrum.element,
            source_file=str(meta.get("xdi_file") or meta.get("source_file") or ""),
        )
        report.rows.append(row)
        data_hash = _data_hash(spectrum)
        base = _base_id(spectrum)
        mid, k = base, 1
        while mid in used_ids or (mid in existing_hash and existing_hash[mid] != data_hash):
            k += 1
            mid = f"{base}-{k}"
        used_ids.add(mid)
        row.material_id = mid
        link = linker.link(spectrum, mid)
        row.structure, row.link_method = link.label, link.method
        if not link.linked:
            row.message = link.reason
        try:
            grid = _element_grid(spectrum.element, grids, stored_grids)
            processed = process_spectrum(spectrum, grid, config)
        except XASDataError as exc:
            if strict:
                raise
            row.status, row.message, row.material_id = "failed", str(exc), ""
            continue
        row.e0, row.edge_step = processed.e0, processed.edge_step
        row.n_deglitched = processed.n_deglitched
        row.notes = list(processed.notes)
        if mid in existing_hash:
            row.status = "already stored"
            continue
        if not link.linked and not keep_unmatched:
            row.status, row.material_id = "unmatched (not stored)", ""
            continue
        row.status = "stored" if link.linked else "stored without structure"
        source = {
            "kind": "measured",
            "fidelity": FIDELITY,
            "sample": spectrum.name,
            "formula": spectrum.formula,
            "element": spectrum.element,
            "edge": spectrum.edge,
            "temperature": meta.get("temperature", ""),
            "beamline": meta.get("beamline", ""),
            "facility": meta.get("facility", ""),
            "source_file": meta.get("source_file", ""),
            "xdi_file": meta.get("xdi_file", ""),
            "record_index": meta.get("record_index"),
            "mu_source": meta.get("mu_source", ""),
            "data_sha256": data_hash,
            "site_average": True,
            "site_note": "a measured spectrum averages all absorber sites; the stored site is "
            "the first absorbing site of the element and multiplicity counts all of them",
            "structure_link": link.to_dict(),
            "processing": processed.summary(),
        }
        materials[mid] = (
            link.structure if link.linked else "",
            json.dumps(source, default=_json_default),
        )
        by_element.setdefault(spectrum.element, []).append((mid, link, processed))

    unused = sorted(set(linker.cif_map) - linker.used_keys)
    if unused:
        samples = sorted({" ".join(s.name.split()) for s in spectra})
        raise XASDataError(
            f"--cif keys {unused} match no sample; use a sample name, file stem or material id "
            f"(samples: {samples[:20]}{' ...' if len(samples) > 20 else ''})"
        )

    if materials:  # nothing to store: the store is neither created nor rewritten
        _write_store(out, name, materials, by_element, report, config, overwrite)
    return report


def _write_store(
    out: Path,
    name: str,
    materials: dict[str, tuple[Any, str]],
    by_element: dict[str, list[tuple[str, StructureLink, ProcessedSpectrum]]],
    report: IngestReport,
    config: ProcessingConfig,
    overwrite: bool,
) -> None:
    """Write into a temporary copy of ``out`` (or a new store) and rename it over ``out``."""
    from xas_data.store import XASDataset

    tmp = out.with_name(f".{out.name}.ingest-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if out.exists() and not overwrite:
            shutil.copytree(out, tmp)
            ds = XASDataset.open(tmp, mode="a")
        else:
            ds = XASDataset.create(
                tmp,
                name,
                license="see the sources of the measured spectra (materials/source)",
                description="measured K-edge spectra (fidelity EXP) linked to structures",
            )
            ds.add_provenance("source", kind="measured spectra (xas_data.experiment_ingest)")
        ids = sorted(materials)
        ds.add_materials(ids, [materials[m][0] for m in ids], [materials[m][1] for m in ids])
        n_clipped = 0
        for element, items in sorted(by_element.items()):
            energy = items[0][2].energy
            intensity = np.stack([p.mu_norm for _, _, p in items])
            n_clipped += int(np.count_nonzero(intensity < 0))
            new = ds.append_spectra(
                element,
                FIDELITY,
                energy,
                [m for m, _, _ in items],
                [max(link.site_index, 0) for _, link, _ in items],
                np.clip(intensity, 0.0, None),
                multiplicities=[max(link.n_absorber_sites, 1) for _, link, _ in items],
                extras={
                    "e0": np.array([p.e0 for _, _, p in items], dtype=np.float64),
                    "edge_step": np.array([p.edge_step for _, _, p in items], dtype=np.float64),
                    "n_deglitched": np.array([p.n_deglitched for _, _, p in items], np.int32),
                },
            )
            report.counts[element] = int(new.size)
        ds.add_provenance(
            "ingest_measured",
            config=config.to_dict(),
            stored=dict(report.counts),
            negative_values_clipped_to_zero=n_clipped,
            unmatched=[
                {"sample": r.name, "source": r.source_file, "reason": r.message}
                for r in report.unmatched
            ],
            failed=[{"sample": r.name, "reason": r.message} for r in report.failed],
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_directory(tmp, out)
