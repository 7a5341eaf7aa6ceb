"""Fixtures: a small dataset store with real structures, and the ../shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xas_data.store import XASDataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def small_structures() -> dict[str, Structure]:
    return {
        "nio": Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        "rutile": Structure.from_spacegroup(
            "P4_2/mnm",
            Lattice.tetragonal(4.594, 2.959),
            ["Ti", "O"],
            [[0, 0, 0], [0.305, 0.305, 0]],
        ),
        "cuprite": Structure.from_spacegroup(
            "Pn-3m", Lattice.cubic(4.27), ["Cu", "O"], [[0.25, 0.25, 0.25], [0, 0, 0]]
        ),
        "coo": Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(4.26), ["Co", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ).get_primitive_structure(),
    }


def make_store(path: Path, chunk_rows: int = 4) -> XASDataset:
    """A store with every cation site of the small structures (one spectrum each)."""
    ds = XASDataset.create(path, "small", chunk_rows=chunk_rows)
    structures = small_structures()
    ds.add_materials(list(structures), list(structures.values()), ["test"] * len(structures))
    grid = 8000.0 + 0.25 * np.arange(20)
    splits = {"nio": "train", "rutile": "train", "cuprite": "val", "coo": "test"}
    for mid, structure in structures.items():
        element = structure[0].specie.symbol
        sites = [i for i, s in enumerate(structure) if s.specie.symbol == element]
        ds.append_spectra(
            element,
            "FEFF",
            grid,
            [mid] * len(sites),
            sites,
            np.ones((len(sites), grid.size), np.float32),
            splits=[splits[mid]] * len(sites),
        )
    return XASDataset.open(path, mode="a")


@pytest.fixture
def store_factory():
    """``make_store(path, chunk_rows)`` for tests that need several stores."""
    return make_store


@pytest.fixture
def small_store(tmp_path) -> XASDataset:
    return make_store(tmp_path / "small.zarr")
