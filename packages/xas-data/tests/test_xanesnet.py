"""XANESNET molecules: xyz parsing and checks, Molecule records in the store, both ingest
layouts (npz/json on real data, xyz/ + xanes/ folders), bad molecules skipped with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Molecule, Structure

from xas_data.errors import StructureError, XASDataError
from xas_data.molecules import as_periodic, boxed, parse_xyz, structure_kind
from xas_data.store import XASDataset
from xas_data.structures import check_structure
from xas_data.xanesnet import XANESNET_LICENSE, ingest_xanesnet

FECO5 = """6
Fe(CO)5-like fragment
Fe 0.0 0.0 0.0
C 1.8 0.0 0.0
C -1.8 0.0 0.0
C 0.0 1.8 0.0
O 2.95 0.0 0.0
O -2.95 0.0 0.0
"""


def test_parse_xyz_reads_symbols_and_atomic_numbers():
    by_symbol = parse_xyz(FECO5, "a", absorber="Fe")
    by_number = parse_xyz(FECO5.replace("Fe ", "26 ").replace("C ", "6 "), "b", absorber="Fe")
    assert isinstance(by_symbol, Molecule) and len(by_symbol) == 6
    assert [s.specie.symbol for s in by_number] == [s.specie.symbol for s in by_symbol]
    np.testing.assert_allclose(by_number.cart_coords, by_symbol.cart_coords)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (FECO5.replace("Fe 0.0", "Co 0.0"), "first atom is Co, not the absorber Fe"),
        (FECO5.replace("6\n", "7\n", 1), "says 7 atoms but 6 atom lines"),
        (FECO5.replace("C 1.8", "Xx 1.8"), "unknown element 'Xx'"),
        (FECO5.replace("C 1.8 0.0 0.0", "C 0.0 0.0 0.0"), "atoms 0 and 1 are 0.000 Angstrom"),
        (FECO5.replace("O 2.95", "O nan"), "NaN or infinite"),
    ],
)
def test_bad_xyz_is_a_clear_one_line_error(text, message):
    with pytest.raises(StructureError, match=message.replace("(", r"\(")) as info:
        parse_xyz(text, "bad.xyz", absorber="Fe")
    assert "\n" not in str(info.value) and "bad.xyz" in str(info.value)


def test_check_structure_on_molecules_skips_lattice_but_keeps_atom_limit():
    molecule = parse_xyz(FECO5, "m")
    assert check_structure(molecule, "m") is molecule
    with pytest.raises(StructureError, match="exceed the limit of 3"):
        check_structure(molecule, "m", max_atoms=3)


def test_boxed_keeps_order_and_leaves_vacuum():
    molecule = parse_xyz(FECO5, "m")
    box = boxed(molecule, vacuum=12.0)
    assert isinstance(box, Structure)
    assert [s.specie.symbol for s in box] == [s.specie.symbol for s in molecule]
    # every inter-atomic distance equals the molecule's: images are >= 12 A away
    np.testing.assert_allclose(box.distance_matrix, molecule.distance_matrix, atol=1e-8)
    assert box.lattice.a == pytest.approx(5.9 + 12.0)
    same = as_periodic([molecule, molecule, box])
    assert same[0] is same[1] and same[2] is box


def _write_folder(root, split, items):
    (root / split / "xyz").mkdir(parents=True)
    (root / split / "xanes").mkdir(parents=True)
    energy = np.linspace(7100, 7150, 11)
    for name, xyz in items.items():
        (root / split / "xyz" / f"{name}.xyz").write_text(xyz)
        mu = np.linspace(0, 1, 11) + len(name) * 0.01
        rows = "\n".join(f"{e:.3f} {m:.6f}" for e, m in zip(energy, mu, strict=True))
        (root / split / "xanes" / f"{name}.txt").write_text(f"FDMNES\nenergy <xanes>\n{rows}\n")


def test_folder_layout_with_bad_molecules_keeps_the_rest(tmp_path):
    good = {f"mol{i}": FECO5.replace("0.0 1.8", f"0.0 {1.8 + 0.01 * i:.2f}") for i in range(12)}
    bad = {
        "no_absorber": FECO5.replace("Fe 0.0", "Co 0.0"),
        "bad_count": FECO5.replace("6\n", "9\n", 1),
        "unknown": FECO5.replace("C 1.8", "Qq 1.8"),
        "overlap": FECO5.replace("C 1.8 0.0 0.0", "C 0.0 0.0 0.0"),
    }
    _write_folder(tmp_path / "in", "train", {**good, **bad})
    _write_folder(tmp_path / "in", "test", {"held": FECO5})
    (tmp_path / "in" / "train" / "xyz" / "no_spectrum.xyz").write_text(FECO5)
    ds, rejected = ingest_xanesnet(tmp_path / "in", tmp_path / "out.zarr")
    assert set(rejected) == {*bad, "no_spectrum"}
    assert "first atom is Co" in rejected["no_absorber"]
    assert "no spectrum" in rejected["no_spectrum"]
    assert ds.n_sites == 13
    sites = ds.sites(columns=("material", "split", "fidelity", "element", "index"))
    split_of = dict(zip(ds.material_ids[sites["material"]], sites["split"], strict=True))
    assert split_of.pop("held") == "test"
    assert set(split_of.values()) == {"train", "val"}
    assert set(sites["fidelity"]) == {"FDMNES"} and set(sites["element"]) == {"Fe"}
    assert np.all(sites["index"] == 0)
    assert ds.attrs["license"] == XANESNET_LICENSE
    step = next(p for p in ds.provenance if p["step"] == "read_xanesnet")
    assert set(step["params"]["rejected"]) == set(rejected)
    assert step["n_in"] == 18 and step["n_out"] == 13


def test_folder_without_xyz_is_an_error(tmp_path):
    with pytest.raises(XASDataError, match="no xyz/ folder"):
        ingest_xanesnet(tmp_path, tmp_path / "out.zarr")


@pytest.fixture(scope="module")
def small_npz(shared_data, tmp_path_factory):
    """The first 60 molecules of ../shared/data/xanesnet-fe, in the same npz/json form."""
    src = shared_data / "xanesnet-fe"
    data = np.load(src / "spectra.npz")
    texts = json.loads((src / "structures_xyz.json").read_text())
    out = tmp_path_factory.mktemp("xnet")
    arrays = {
        k: data[k][:60] if data[k].ndim and data[k].shape[0] == 4079 else data[k]
        for k in data.files
    }
    np.savez(out / "spectra.npz", **arrays)
    names = arrays["name"].astype(str)
    (out / "structures_xyz.json").write_text(json.dumps({n: texts[n] for n in names}))
    return out


def test_npz_form_of_real_data(small_npz, tmp_path):
    ds, rejected = ingest_xanesnet(small_npz, tmp_path / "fe.zarr")
    assert rejected == {}
    assert ds.n_materials == 60 and ds.n_sites == 60
    selection = ds.select("Fe", "FDMNES")
    assert selection.energy.size == 226
    assert selection.energy[0] == pytest.approx(7097.0) and selection.energy[-1] == pytest.approx(
        7172.0
    )
    assert selection.extra("mu_raw").shape == (60, 376)
    original = np.load(small_npz / "spectra.npz")
    row = int(np.flatnonzero(ds.material_ids == str(original["name"][0]))[0])
    stored = selection.intensities()[np.flatnonzero(selection.sites()["material"] == row)[0]]
    np.testing.assert_allclose(stored, original["mu_preconv"][0], rtol=1e-6)
    molecule = ds.structure(row)
    assert isinstance(molecule, Molecule) and molecule[0].specie.symbol == "Fe"
    assert ds.is_molecule(row)
    text = str(ds.root["materials/structure"][row])
    assert structure_kind(text) == "molecule" and "lattice" not in json.loads(text)
    splits = ds.sites(columns=("split",))["split"]
    assert {"train", "val"} == set(splits) and (splits == "val").sum() == 6


def test_mixed_store_holds_crystals_and_molecules(tmp_path):
    from pymatgen.core import Lattice

    ds = XASDataset.create(tmp_path / "mixed.zarr", "mixed")
    crystal = Structure(Lattice.cubic(4.2), ["Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ds.add_materials(["c", "m"], [crystal, parse_xyz(FECO5, "m")], ["x", "y"])
    assert isinstance(ds.structure("c"), Structure) and not ds.is_molecule("c")
    assert isinstance(ds.structure("m"), Molecule) and ds.is_molecule("m")


def test_cli_ingest_xanesnet_reports_skipped_molecules(tmp_path):
    from typer.testing import CliRunner

    from xas_data.cli import app

    _write_folder(tmp_path / "in", "train", {"a": FECO5, "b": FECO5.replace("Fe 0.0", "Co 0.0")})
    result = CliRunner().invoke(
        app, ["ingest", "xanesnet", str(tmp_path / "in"), "--out", str(tmp_path / "s.zarr")]
    )
    assert result.exit_code == 0, result.output
    assert "1 spectra of 1 materials" in result.output
    assert "skipped:" in result.output and "first atom is Co" in result.output
    bad = CliRunner().invoke(
        app, ["ingest", "xanesnet", str(tmp_path / "nothing"), "--out", str(tmp_path / "t.zarr")]
    )
    assert bad.exit_code != 0 and "no xyz/ folder" in bad.output
