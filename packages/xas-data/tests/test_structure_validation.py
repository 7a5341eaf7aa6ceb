"""The one structure validator (``check_structure``) and the entry points that run it.

Every case gets a one-line ``StructureError`` naming the problem and the fix, raised before
spglib or a featurizer's C code sees the structure (a NaN coordinate used to segfault spglib).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from xas_data.errors import StructureError, XASDataError
from xas_data.store import XASDataset
from xas_data.structures import (
    DEFAULT_MAX_ATOMS,
    check_structure,
    closest_pair,
    max_atoms_limit,
    read_structure,
)

FEO = Structure.from_spacegroup(
    "Fm-3m", Lattice.cubic(4.3), ["Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
)

POSCAR = """FeO
1.0
{a}
{b}
{c}
Fe O
1 1
Direct
0 0 0
{o}
"""


def poscar(tmp_path, name="POSCAR", a="4.3 0 0", b="0 4.3 0", c="0 0 4.3", o="0.5 0.5 0.5"):
    path = tmp_path / name
    path.write_text(POSCAR.format(a=a, b=b, c=c, o=o))
    return path


def raises_one_line(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(StructureError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_good_structure_passes(tmp_path):
    assert read_structure(poscar(tmp_path)).composition.reduced_formula == "FeO"
    assert check_structure(FEO, "FeO") is FEO


def test_nan_and_inf_coordinates(tmp_path):
    message = raises_one_line(
        "atom 1 \\(O\\) has a NaN or infinite coordinate",
        read_structure,
        poscar(tmp_path, o="nan 0.5 0.5"),
    )
    assert "give finite coordinates" in message
    raises_one_line("NaN or infinite coordinate", read_structure, poscar(tmp_path, o="inf 0 0"))


def test_non_finite_lattice():
    bad = Structure(Lattice([[np.inf, 0, 0], [0, 5, 0], [0, 0, 5]]), ["Fe"], [[0, 0, 0]])
    raises_one_line("lattice holds NaN or infinite", check_structure, bad, "inf")


def test_singular_and_nearly_singular_lattices(tmp_path):
    flat = poscar(tmp_path, c="4.3 4.3 0")  # c = a + b: zero volume
    raises_one_line("lattice is singular.*three independent", read_structure, flat)
    almost = Structure(Lattice([[4, 0, 0], [0, 4, 0], [4, 4, 0.004]]), ["Fe"], [[0, 0, 0]])
    raises_one_line("nearly singular.*almost coplanar", check_structure, almost, "almost")


def test_absurd_cells():
    huge = Structure(Lattice.cubic(1e5), ["Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    raises_one_line("Angstrom long.*length units", check_structure, huge, "huge")
    dense = Structure(Lattice.cubic(0.9), ["Fe"], [[0, 0, 0]])
    raises_one_line("per atom is far too dense", check_structure, dense, "dense")
    thin = Structure(Lattice([[0.3, 0, 0], [0, 5, 0], [0, 0, 5]]), ["Fe"], [[0, 0, 0]])
    raises_one_line("only 0.300 Angstrom thick", check_structure, thin, "thin")


def test_overlapping_atoms_and_periodic_images():
    same = Structure(Lattice.cubic(10), ["Fe", "O"], [[0, 0, 0], [0, 0, 0]])
    raises_one_line("atoms 0 and 1 are 0.000 Angstrom apart", check_structure, same, "same")
    across = Structure(Lattice.cubic(5), ["Fe", "O"], [[0, 0, 0], [0.98, 0, 0]])
    raises_one_line("0.100 Angstrom apart.*remove the duplicate", check_structure, across, "pbc")


def test_atom_count_limit_is_configurable(monkeypatch):
    big = FEO * (2, 2, 2)  # 64 atoms
    assert max_atoms_limit() == DEFAULT_MAX_ATOMS
    monkeypatch.setenv("XAS_MAX_ATOMS", "50")
    raises_one_line("64 atoms exceed the limit of 50.*XAS_MAX_ATOMS", check_structure, big, "big")
    assert check_structure(big, "big", max_atoms=100) is big
    monkeypatch.setenv("XAS_MAX_ATOMS", "lots")
    raises_one_line("XAS_MAX_ATOMS='lots' is not an integer", check_structure, big, "big")


def test_cif_cut_after_its_first_atom(tmp_path):
    full = tmp_path / "feo.cif"
    CifWriter(FEO, symprec=0.1).write_file(str(full))
    assert read_structure(full).composition.reduced_formula == "FeO"
    lines = full.read_text().rstrip("\n").splitlines()
    cut = tmp_path / "cut.cif"
    cut.write_text("\n".join(lines[:-1]) + "\n")  # the O site is gone
    message = raises_one_line(
        "atoms make Fe but _chemical_formula_sum says FeO", read_structure, cut
    )
    assert "complete the atom_site loop" in message


def test_overlap_search_is_linear_not_a_distance_matrix():
    big = FEO * (10, 10, 10)  # 8000 atoms: a distance matrix would need 512 MB
    start = time.perf_counter()
    assert closest_pair(big, 0.5) is None
    distance, _, _ = closest_pair(big, 2.2)
    assert distance == pytest.approx(2.15)
    assert time.perf_counter() - start < 10


def test_store_refuses_bad_structures_in_and_out(tmp_path):
    ds = XASDataset.create(tmp_path / "s.zarr", "s")
    nan = FEO.copy()
    nan.replace(1, "O", [np.nan, 0.5, 0.5])
    with pytest.raises(StructureError, match="material mp-nan: atom 1"):
        ds.add_materials(["mp-nan"], [nan], ["test"])
    assert ds.n_materials == 0
    # a store written before the check (structure given as JSON text) is refused on reading
    import json

    ds.add_materials(["mp-old"], [json.dumps(nan.as_dict())], ["test"])
    with pytest.raises(StructureError, match="material mp-old in .*NaN or infinite"):
        ds.structure("mp-old")


def test_ingest_measured_refuses_a_nan_cif(tmp_path):
    pytest.importorskip("larixite")
    from xas_data.experiment_ingest import ingest_measured_spectra
    from xas_data.measured import MeasuredSpectrum

    energy = np.concatenate([np.arange(8800.0, 8960.0, 4.0), np.arange(8960.0, 9500.0, 0.5)])
    mu = 0.3 + (0.5 + np.arctan((energy - 8980.0) / 1.5) / np.pi)
    spectrum = MeasuredSpectrum(energy, mu, "Cu", name="CuO a", formula="CuO")
    bad = poscar(tmp_path, "bad.vasp", o="nan 0.5 0.5").read_text().replace("Fe", "Cu")
    (tmp_path / "bad.vasp").write_text(bad)
    store = tmp_path / "s.zarr"
    try:
        report = ingest_measured_spectra(
            [spectrum], store, cif_map={"CuO a": tmp_path / "bad.vasp"}
        )
    except XASDataError as exc:
        assert "NaN or infinite coordinate" in str(exc)
    else:
        assert not any(r.status.startswith("stored") for r in report.rows)
        assert "NaN or infinite coordinate" in report.table()
