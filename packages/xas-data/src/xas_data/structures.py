"""Structure sources and checks: CIF/POSCAR files, folders of them, and the AMCSD minerals
shipped in the ``larixite`` wheel.

All structures are pymatgen ``Structure`` objects (lengths in Angstrom).
"""

from __future__ import annotations

import io
import itertools
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Element, Molecule, Structure
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


MAX_ATOMS_ENV = "XAS_MAX_ATOMS"
"""Environment variable overriding :data:`DEFAULT_MAX_ATOMS` (the atom-count limit)."""
DEFAULT_MAX_ATOMS = 5000
"""Most atoms a structure may hold (per cell) unless ``XAS_MAX_ATOMS`` or ``max_atoms`` says
otherwise: bigger cells are almost always a wrong supercell and make the featurizers and spglib
run for hours or exhaust memory."""
MAX_CELL_LENGTH = 1000.0
"""Longest lattice vector accepted (Angstrom); neighbour searches allocate memory that grows
with the cell's extent."""
MIN_NORMALISED_VOLUME = 1e-3
"""Smallest ``volume / (a * b * c)`` accepted (1 for a cube): below it the lattice vectors are
(nearly) coplanar and every fractional/Cartesian conversion is ill-conditioned."""


def max_atoms_limit(max_atoms: int | None = None) -> int:
    """The atom-count limit: ``max_atoms``, else ``$XAS_MAX_ATOMS``, else 5000."""
    if max_atoms is not None:
        return int(max_atoms)
    text = os.environ.get(MAX_ATOMS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_ATOMS
    try:
        return int(text)
    except ValueError:
        raise StructureError(
            f"{MAX_ATOMS_ENV}={text!r} is not an integer; set it to the largest atom count "
            "to accept, e.g. 20000"
        ) from None


def _check_lattice(matrix: np.ndarray, n_atoms: int, name: str) -> None:
    """Finite, non-singular, not absurdly large, not (nearly) flat, volume per atom sane."""
    if not np.all(np.isfinite(matrix)):
        raise StructureError(
            f"{name}: the lattice holds NaN or infinite numbers; give finite lattice vectors"
        )
    lengths = np.linalg.norm(matrix, axis=1)
    volume = abs(float(np.linalg.det(matrix)))
    if lengths.min() <= 0 or volume <= 0 or not np.isfinite(volume):
        raise StructureError(
            f"{name}: the lattice is singular (volume {volume:.3g} A^3, a zero or coplanar "
            "lattice vector); give three independent lattice vectors"
        )
    if lengths.max() > MAX_CELL_LENGTH:
        raise StructureError(
            f"{name}: a lattice vector is {lengths.max():.4g} Angstrom long (> "
            f"{MAX_CELL_LENGTH:g}); check the length units (Angstrom) or use a smaller cell"
        )
    if volume / float(np.prod(lengths)) < MIN_NORMALISED_VOLUME:
        raise StructureError(
            f"{name}: the lattice is nearly singular (its vectors are almost coplanar, volume "
            f"{volume:.3g} A^3); fix the lattice vectors or reduce the cell (Niggli)"
        )
    if volume / n_atoms < 1.0:
        raise StructureError(
            f"{name}: {volume / n_atoms:.3g} A^3 per atom is far too dense (real crystals have "
            "> 5); check the lattice units (Angstrom) and the atom list"
        )


def _check_coordinates(structure: Structure, name: str) -> None:
    frac = np.asarray(structure.frac_coords, dtype=float)
    bad = ~np.all(np.isfinite(frac), axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise StructureError(
            f"{name}: atom {i} ({structure[i].species_string}) has a NaN or infinite "
            f"coordinate{' (and ' + str(int(bad.sum()) - 1) + ' more)' if bad.sum() > 1 else ''}"
            "; give finite coordinates"
        )


def closest_pair(structure: Structure, cutoff: float) -> tuple[float, int, int] | None:
    """``(distance, i, j)`` of the closest two atoms (periodic images included, an atom and its
    own image too) when closer than ``cutoff`` Angstrom, else ``None``.

    A k-d tree over the 27 neighbouring cells: memory O(N), unlike a distance matrix (O(N^2))
    or pymatgen's cell-list search (which grows with the cell's extent). Needs a cell at least
    ``cutoff`` thick in every direction (checked by the caller).
    """
    from scipy.spatial import cKDTree

    lattice = structure.lattice.matrix
    cart = np.mod(structure.frac_coords, 1.0) @ lattice
    tree = cKDTree(cart)
    best: tuple[float, int, int] | None = None
    for shift in itertools.product((-1, 0, 1), repeat=3):
        k = 2 if shift == (0, 0, 0) else 1
        # atom i against the images of all atoms shifted by ``shift`` cells
        query = cart - np.asarray(shift, dtype=float) @ lattice
        dist, idx = tree.query(query, k=k, distance_upper_bound=cutoff)
        dist, idx = dist.reshape(len(cart), k), idx.reshape(len(cart), k)
        if shift == (0, 0, 0):  # drop each atom's match with itself
            self_hit = idx == np.arange(len(cart))[:, None]
            dist = np.where(self_hit, np.inf, dist)
        i, col = np.unravel_index(np.argmin(dist), dist.shape)
        if np.isfinite(dist[i, col]) and (best is None or dist[i, col] < best[0]):
            best = (float(dist[i, col]), int(i), int(idx[i, col]))
    return best


def _check_overlaps(structure: Structure, name: str, min_distance: float) -> None:
    matrix = structure.lattice.matrix
    volume = abs(float(np.linalg.det(matrix)))
    areas = [np.linalg.norm(np.cross(matrix[(k + 1) % 3], matrix[(k + 2) % 3])) for k in range(3)]
    thickness = min(volume / a for a in areas)
    if thickness < min_distance:
        raise StructureError(
            f"{name}: the cell is only {thickness:.3f} Angstrom thick, so every atom overlaps "
            f"its own periodic image (< {min_distance}); fix the lattice vectors"
        )
    pair = closest_pair(structure, min_distance)
    if pair is not None:
        distance, i, j = pair
        raise StructureError(
            f"{name}: atoms {i} and {j} are {distance:.3f} Angstrom apart "
            f"(< {min_distance}); the CIF likely lists alternative positions of one site: "
            "remove the duplicate atom"
        )


def is_molecule(structure) -> bool:
    """Whether ``structure`` is non-periodic (a pymatgen ``Molecule``: no lattice, no images)."""
    return isinstance(structure, Molecule)


def _check_molecule(molecule: Molecule, name: str, min_distance: float) -> None:
    """Finite Cartesian coordinates and no two atoms closer than ``min_distance`` (Angstrom);
    no lattice and no periodic images."""
    from scipy.spatial import cKDTree

    cart = np.asarray(molecule.cart_coords, dtype=float)
    bad = ~np.all(np.isfinite(cart), axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise StructureError(
            f"{name}: atom {i} ({molecule[i].species_string}) has a NaN or infinite coordinate; "
            "give finite coordinates (Angstrom)"
        )
    if len(cart) < 2:
        return
    pairs = cKDTree(cart).query_pairs(min_distance, output_type="ndarray")
    if len(pairs):
        dist = np.linalg.norm(cart[pairs[:, 0]] - cart[pairs[:, 1]], axis=1)
        k = int(np.argmin(dist))
        i, j = sorted(int(v) for v in pairs[k])
        raise StructureError(
            f"{name}: atoms {i} and {j} are {dist[k]:.3f} Angstrom apart "
            f"(< {min_distance}); remove the duplicated atom from the xyz"
        )


def check_structure(
    structure: Structure | Molecule,
    name: str,
    min_distance: float = 0.5,
    max_atoms: int | None = None,
) -> Structure | Molecule:
    """The one structure validator, run before any C extension (spglib, featurizers) sees the
    data; returns ``structure`` or raises a one-line ``StructureError`` naming the fix.

    Rejects: no atoms; more than ``max_atoms`` atoms (default ``$XAS_MAX_ATOMS`` or 5000);
    a non-finite, singular, nearly flat, absurdly large or absurdly dense lattice; NaN/inf
    coordinates; atoms (or periodic images) closer than ``min_distance`` Angstrom; partial
    occupancies. A ``Molecule`` (non-periodic) gets the same atom, coordinate, overlap and
    order checks without the lattice ones.
    """
    n_atoms = len(structure)
    if n_atoms == 0:
        raise StructureError(f"{name}: the structure has no atoms; give a complete CIF/POSCAR")
    limit = max_atoms_limit(max_atoms)
    if n_atoms > limit:
        raise StructureError(
            f"{name}: {n_atoms} atoms exceed the limit of {limit}; use the primitive cell, or "
            f"raise the limit (max_atoms=..., or the {MAX_ATOMS_ENV} environment variable)"
        )
    if is_molecule(structure):
        if not structure.is_ordered:
            raise StructureError(
                f"{name}: the molecule has partial occupancies; give one element per atom"
            )
        _check_molecule(structure, name, min_distance)
        return structure
    _check_lattice(np.asarray(structure.lattice.matrix, dtype=float), n_atoms, name)
    _check_coordinates(structure, name)
    if not structure.is_ordered:
        raise StructureError(
            f"{name}: the structure is disordered (partial occupancies); FEFF and the featurizers "
            "need an ordered cell: order it first (e.g. pymatgen OrderDisorderedStructureTransformation) "
            "or pick an ordered polymorph"
        )
    _check_overlaps(structure, name, min_distance)
    return structure


_FORMULA_SUM = re.compile(
    r"^[ \t]*_chemical_formula_sum[ \t]*(?:\n[ \t]*)?(?:'([^'\n]*)'|\"([^\"\n]*)\"|([^\n]*?))[ \t]*$",
    re.MULTILINE,
)


def cif_formula(text: str) -> Composition | None:
    """The ``_chemical_formula_sum`` of the first data block of a CIF, or ``None`` when it
    is absent or unreadable."""
    match = _FORMULA_SUM.search(text)
    if match is None:
        return None
    formula = next((g for g in match.groups() if g), "").strip().strip("'\"")
    if not formula or formula in "?.":
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Composition(formula)
    except Exception:  # an unusual formula notation: no check rather than a false alarm
        return None


def check_cif_formula(structure: Structure, text: str, name: str) -> None:
    """Refuse a CIF whose atoms do not make its ``_chemical_formula_sum`` (e.g. a file cut
    off inside its atom list): same elements in the same proportions (1 % tolerance)."""
    declared = cif_formula(text)
    if declared is None or declared.num_atoms <= 0:
        return
    found = structure.composition
    same_elements = {e.symbol for e in declared.elements} == {e.symbol for e in found.elements}
    if same_elements and declared.fractional_composition.almost_equals(
        found.fractional_composition, rtol=0.01, atol=1e-3
    ):
        return
    raise StructureError(
        f"{name}: its atoms make {found.reduced_formula} but _chemical_formula_sum says "
        f"{declared.reduced_formula}; the file is truncated or its atom list incomplete: "
        "complete the atom_site loop (or correct _chemical_formula_sum)"
    )


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
    check_structure(structure, str(path))
    if path.suffix.lower() == ".cif":
        check_cif_formula(structure, path.read_text(errors="replace"), str(path))
    return structure


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
