"""Structure sources and checks: CIF/POSCAR files, folders of them, and the AMCSD minerals
shipped in the ``larixite`` wheel.

All structures are pymatgen ``Structure`` objects (lengths in Angstrom).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Element, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from xas_data.errors import MissingExtraError, StructureError

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".json")


@dataclass(frozen=True)
class MaterialRecord:
    """One material: an id unique within a dataset, its structure and where it came from."""

    material_id: str
    structure: Structure
    source: str


@dataclass(frozen=True)
class AbsorbingSite:
    """A symmetry-inequivalent absorbing site: its index in the structure and multiplicity."""

    index: int
    multiplicity: int


def check_structure(structure: Structure, name: str, min_distance: float = 0.5) -> Structure:
    """Raise ``StructureError`` for empty or disordered cells or atoms closer than
    ``min_distance`` (Angstrom); return the structure otherwise."""
    if len(structure) == 0:
        raise StructureError(f"{name}: the structure has no atoms; give a complete CIF/POSCAR")
    if not structure.is_ordered:
        raise StructureError(
            f"{name}: the structure is disordered (partial occupancies); FEFF and the featurizers "
            "need an ordered cell: order it first (e.g. pymatgen OrderDisorderedStructureTransformation) "
            "or pick an ordered polymorph"
        )
    if len(structure) > 1:
        distances = structure.distance_matrix + np.eye(len(structure)) * 1e9
        i, j = np.unravel_index(np.argmin(distances), distances.shape)
        if distances[i, j] < min_distance:
            raise StructureError(
                f"{name}: atoms {i} and {j} are {distances[i, j]:.3f} Angstrom apart "
                f"(< {min_distance}); the CIF likely lists alternative positions of one site: "
                "remove the duplicate atom"
            )
    return structure


def read_structure(path: str | Path) -> Structure:
    """Read a CIF, POSCAR or pymatgen-JSON file into an ordered ``Structure``.

    Raises ``StructureError`` naming the file when it cannot be parsed or is disordered.
    """
    path = Path(path)
    if not path.is_file():
        raise StructureError(f"{path}: no such file; pass the path of a CIF or POSCAR file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if path.suffix.lower() == ".json":
                structure = Structure.from_str(path.read_text(), fmt="json")
            else:
                structure = Structure.from_file(path)
    except Exception as exc:  # pymatgen raises many types for malformed files
        raise StructureError(
            f"{path}: cannot parse the structure ({type(exc).__name__}: {exc}); "
            "check that it is a valid CIF or POSCAR file"
        ) from exc
    return check_structure(structure, str(path))


def iter_structure_folder(folder: str | Path) -> Iterator[MaterialRecord]:
    """Yield one record per structure file in ``folder`` (sorted by name; id = file stem)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StructureError(f"{folder}: not a folder; pass a folder of CIF/POSCAR files")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in STRUCTURE_SUFFIXES or p.name.upper().startswith("POSCAR")
    )
    if not files:
        raise StructureError(f"{folder}: holds no .cif/.vasp/POSCAR files")
    for path in files:
        yield MaterialRecord(path.stem, read_structure(path), f"file:{path.name}")


def inequivalent_absorbing_sites(
    structure: Structure, element: str, symprec: float = 0.01
) -> list[AbsorbingSite]:
    """Symmetry-inequivalent sites of ``element`` with their multiplicities (sorted by index).

    Raises ``StructureError`` when the element is absent.
    """
    symbol = Element(element).symbol
    if symbol not in {sp.symbol for sp in structure.composition.elements}:
        raise StructureError(
            f"absorbing element {symbol} is absent from {structure.composition.reduced_formula}; "
            "choose an element the structure contains"
        )
    try:
        symmetrized = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetrized_structure()
        groups = symmetrized.equivalent_indices
    except Exception:  # spglib can fail on odd cells: treat every site as inequivalent
        groups = [[i] for i in range(len(structure))]
    sites = [
        AbsorbingSite(index=min(group), multiplicity=len(group))
        for group in groups
        if structure[group[0]].specie.symbol == symbol
    ]
    return sorted(sites, key=lambda s: s.index)


def _amcsd():
    try:
        import larixite.amcsd as amcsd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError("larixite", "minerals") from exc
    db_path = Path(amcsd.__file__).with_name("amcsd_cif1.db")
    return amcsd.AMCSD(str(db_path), read_only=True)


def mineral_structures(
    element: str,
    with_elements: Sequence[str] = ("O",),
    max_atoms: int = 40,
    max_count: int | None = None,
    one_per_mineral: bool = True,
) -> list[MaterialRecord]:
    """Ordered AMCSD mineral structures (larixite) containing ``element`` and ``with_elements``.

    Structures are reduced to their primitive cell; those with more than ``max_atoms`` atoms,
    partial occupancies, or that pymatgen cannot parse are skipped. With ``one_per_mineral``
    only the first (lowest AMCSD id) CIF of each mineral name is kept. Ids are ``amcsd-<id>``.
    The order is deterministic (by AMCSD id).
    """
    from pymatgen.io.cif import CifParser

    db = _amcsd()
    cifs = db.find_cifs(
        contains_elements=[element, *with_elements], full_occupancy=True, max_matches=100_000
    )
    cifs = sorted(cifs, key=lambda c: int(c.ams_id))
    records: list[MaterialRecord] = []
    seen_minerals: set[str] = set()
    for cif in cifs:
        mineral = (cif.mineral.name or "").strip().lower()
        if one_per_mineral and mineral in seen_minerals:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = CifParser(io.StringIO(cif.ciftext)).parse_structures(primitive=True)
            structure = parsed[0]
        except Exception:
            continue
        if len(structure) > max_atoms:
            continue
        try:
            check_structure(structure, f"amcsd {cif.ams_id}")
        except StructureError:
            continue
        if structure.composition.get(element, 0) == 0:
            continue
        seen_minerals.add(mineral)
        records.append(
            MaterialRecord(
                f"amcsd-{int(cif.ams_id):07d}", structure, f"amcsd:{cif.ams_id}:{cif.mineral.name}"
            )
        )
        if max_count is not None and len(records) >= max_count:
            break
    return records
