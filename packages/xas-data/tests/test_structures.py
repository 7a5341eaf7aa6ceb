"""Structure sources: files, folders, bad CIFs, and the AMCSD minerals in larixite."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from xas_data.errors import StructureError
from xas_data.structures import iter_structure_folder, mineral_structures, read_structure

CUO = Structure.from_spacegroup(
    "Fm-3m", Lattice.cubic(4.26), ["Cu", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
)


def test_read_cif_and_poscar(tmp_path):
    CUO.to(filename=str(tmp_path / "a.cif"))
    CUO.to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    assert read_structure(tmp_path / "a.cif").composition.reduced_formula == "CuO"
    records = list(iter_structure_folder(tmp_path))
    assert [r.material_id for r in records] == ["POSCAR", "a"]


def test_malformed_cif_names_the_file(tmp_path):
    bad = tmp_path / "broken.cif"
    bad.write_text("data_x\n_cell_length_a 3.0\nloop_\n_atom_site_label\n")
    with pytest.raises(StructureError, match="broken.cif"):
        read_structure(bad)


def test_disordered_structure_rejected(tmp_path):
    disordered = Structure(Lattice.cubic(3.6), [{"Cu": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    disordered.to(filename=str(tmp_path / "alloy.cif"))
    with pytest.raises(StructureError, match="disordered"):
        read_structure(tmp_path / "alloy.cif")


def test_overlapping_atoms_rejected(tmp_path):
    s = Structure(Lattice.cubic(5.0), ["Cu", "O"], [[0, 0, 0], [0.01, 0, 0]])
    s.to(filename=str(tmp_path / "overlap.cif"))
    with pytest.raises(StructureError, match="Angstrom apart"):
        read_structure(tmp_path / "overlap.cif")


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(StructureError, match="no such file"):
        read_structure(tmp_path / "nope.cif")
    with pytest.raises(StructureError, match="no .cif"):
        list(iter_structure_folder(tmp_path))


def test_minerals_from_larixite():
    pytest.importorskip("larixite")
    records = mineral_structures("Cu", ("O",), max_atoms=20, max_count=5)
    assert len(records) == 5
    for record in records:
        assert record.material_id.startswith("amcsd-")
        assert record.structure.is_ordered and len(record.structure) <= 20
        assert {"Cu", "O"} <= {e.symbol for e in record.structure.composition.elements}
    again = mineral_structures("Cu", ("O",), max_atoms=20, max_count=5)
    assert [r.material_id for r in again] == [r.material_id for r in records]
