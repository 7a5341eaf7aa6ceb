"""Non-periodic structures: xyz parsing, checks and boxing of molecules (pymatgen ``Molecule``).

Molecules are stored as pymatgen ``Molecule`` JSON (``"@class": "Molecule"``: no lattice in
the record); :func:`structure_from_json` reads either kind back and :func:`structure_kind`
says which one a record holds. Featurizers that need a cell put a molecule in a box with
:func:`boxed` (vacuum in Angstrom), which leaves every atom further than ``vacuum`` from
any periodic image of any other atom.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pymatgen.core import Element, Molecule, Structure

from xas_data.errors import StructureError
from xas_data.structures import check_structure

DEFAULT_VACUUM = 15.0
"""Vacuum (Angstrom) between a molecule and its periodic images in :func:`boxed`: above the
graph cutoffs of CHGNet (6 A) and M3GNet (5 A), so no image enters a neighbour list."""


def _element(token: str, name: str, line: int) -> str:
    """Element symbol from an xyz token (symbol like ``Fe`` or atomic number like ``26``)."""
    try:
        if token.isdigit():
            return Element.from_Z(int(token)).symbol
        return Element(token.capitalize()).symbol
    except ValueError:
        raise StructureError(
            f"{name}: line {line}: unknown element {token!r}; use a symbol (Fe) or an atomic "
            "number (26)"
        ) from None


def parse_xyz(text: str, name: str = "xyz", absorber: str | None = None) -> Molecule:
    """A ``Molecule`` from xyz text (count line, comment line, ``element x y z`` per atom).

    Elements may be symbols or atomic numbers (XANESNET writes numbers); lengths in Angstrom.
    With ``absorber`` (e.g. ``"Fe"``) the first atom must be that element (the XANESNET
    convention: the first atom is the absorbing site). The result passes ``check_structure``.
    Raises a one-line ``StructureError`` naming ``name`` and the problem.
    """
    lines = text.strip("\n").splitlines()
    try:
        n_atoms = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise StructureError(
            f"{name}: the first line must be the atom count, got {lines[:1]!r}"
        ) from None
    body = [line for line in lines[2:] if line.strip()]
    if len(body) != n_atoms:
        raise StructureError(
            f"{name}: the count line says {n_atoms} atoms but {len(body)} atom lines follow; "
            "fix the count (first line) or the atom list"
        )
    species, coords = [], []
    for k, line in enumerate(body, start=3):
        parts = line.split()
        if len(parts) < 4:
            raise StructureError(f"{name}: line {k}: expected 'element x y z', got {line!r}")
        species.append(_element(parts[0], name, k))
        try:
            coords.append([float(v) for v in parts[1:4]])
        except ValueError:
            raise StructureError(
                f"{name}: line {k}: coordinates are not numbers: {line!r}"
            ) from None
    if absorber is not None and species[0] != Element(absorber).symbol:
        raise StructureError(
            f"{name}: the first atom is {species[0]}, not the absorber {absorber}; put the "
            f"absorbing {absorber} atom first"
        )
    molecule = Molecule(species, np.asarray(coords, dtype=float))
    return check_structure(molecule, name)


def read_xyz(path: str | Path, absorber: str | None = None) -> Molecule:
    """:func:`parse_xyz` of a file (the file name names it in errors)."""
    path = Path(path)
    if not path.is_file():
        raise StructureError(f"{path}: no such file; pass the path of an .xyz file")
    return parse_xyz(path.read_text(errors="replace"), str(path), absorber)


def structure_kind(structure_json: str | dict) -> str:
    """``"molecule"`` for a pymatgen ``Molecule`` record, ``"crystal"`` otherwise."""
    data = json.loads(structure_json) if isinstance(structure_json, str) else structure_json
    return "molecule" if data.get("@class") == "Molecule" else "crystal"


def structure_from_json(structure_json: str | dict) -> Structure | Molecule:
    """A ``Structure`` or ``Molecule`` from pymatgen JSON text (or its dict), by ``@class``."""
    data = json.loads(structure_json) if isinstance(structure_json, str) else structure_json
    if structure_kind(data) == "molecule":
        return Molecule.from_dict(data)
    return Structure.from_dict(data)


def boxed(molecule: Molecule, vacuum: float = DEFAULT_VACUUM) -> Structure:
    """The molecule in a cubic box with at least ``vacuum`` Angstrom between it and its images.

    Side = largest extent + ``vacuum``; atom order is kept (site ``i`` stays ``i``).
    """
    if not vacuum > 0:
        raise StructureError(f"vacuum must be positive (Angstrom), got {vacuum}")
    from pymatgen.core import Lattice

    cart = np.asarray(molecule.cart_coords, dtype=float)
    low, high = cart.min(axis=0), cart.max(axis=0)
    side = float((high - low).max()) + float(vacuum)
    centred = cart - (low + high) / 2 + side / 2
    return Structure(Lattice.cubic(side), molecule.species, centred, coords_are_cartesian=True)


def as_periodic(structures, vacuum: float = DEFAULT_VACUUM) -> list:
    """``structures`` with each ``Molecule`` replaced by :func:`boxed` (one boxed object per
    distinct molecule object, so repeated entries stay the same object)."""
    cache: dict[int, Structure] = {}
    out = []
    for structure in structures:
        if isinstance(structure, Molecule):
            key = id(structure)
            if key not in cache:
                cache[key] = boxed(structure, vacuum)
            out.append(cache[key])
        else:
            out.append(structure)
    return out
