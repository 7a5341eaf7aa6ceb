"""Theory spectra of VASP / XSpectra / OCEAN read back into stores (own grids, one-line errors)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from xas_data.cli import app
from xas_data.errors import SpectrumError, XASDataError
from xas_data.store import XASDataset
from xas_data.theory_ingest import ingest_theory, read_vasp, read_xspectra

runner = CliRunner()
ENERGY = np.linspace(4960.0, 5000.0, 9)  # eV


def nio() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


def outcar_text(energy: np.ndarray, eps2: np.ndarray) -> str:
    """A core-hole OUTCAR tail as VASP writes it: IMAGINARY, then REAL dielectric block."""
    dashes = "  " + "-" * 110
    head = "     E(ev)      X         Y         Z        XY        YZ        ZX"
    rows = [
        f"  {e:12.6f}" + f"{y:12.6f}" * 3 + f"{0.0:12.6f}" * 3
        for e, y in zip(energy, eps2, strict=True)
    ]
    lines = [
        " volume of cell :       36.43",
        "  frequency dependent IMAGINARY DIELECTRIC FUNCTION (independent particle, no local "
        "field effects) density-density",
        head,
        dashes,
        *rows,
        "",
        "  frequency dependent      REAL DIELECTRIC FUNCTION (independent particle, no local "
        "field effects) density-density",
        head,
        dashes,
        *rows,
    ]
    return "\n".join(lines) + "\n"


def xanes_dat_text(energy: np.ndarray, sigma: np.ndarray, polarisation: str) -> str:
    """An XSpectra xanes.dat: '#' header, then 'energy sigma_tot'."""
    head = [
        "# final state broadening (eV)=    0.890",
        "# absorbing atom type:    1",
        f"# dipole approx. with polarisation vector: {polarisation}",
        "#  Energy (eV)     sigma_tot",
    ]
    return (
        "\n".join(head + [f"{e:14.8f} {y:14.8E}" for e, y in zip(energy, sigma, strict=True)])
        + "\n"
    )


def test_vasp_outcar_and_xspectra_folder(tmp_path):
    eps2 = np.linspace(0.0, 2.0, ENERGY.size)
    (tmp_path / "OUTCAR").write_text(outcar_text(ENERGY, eps2))
    energy, spectrum = read_vasp(tmp_path)
    assert np.allclose(energy, ENERGY) and np.allclose(spectrum, eps2, atol=1e-6)
    for k, pol in enumerate(("1 0 0", "0 1 0", "0 0 1"), start=1):
        (tmp_path / f"dipole{k}").mkdir()
        sigma = np.full(ENERGY.size, float(k))
        (tmp_path / f"dipole{k}" / "xanes.dat").write_text(xanes_dat_text(ENERGY, sigma, pol))
    energy, spectrum = read_xspectra(tmp_path)
    assert np.allclose(spectrum, 2.0)  # mean of the three polarisations


def test_roundtrip_through_lightshow_tree(tmp_path):
    """simulate --write-inputs, fake the cluster's outputs, ingest the tree into one store."""
    folder = tmp_path / "structures"
    folder.mkdir()
    nio().to(filename=str(folder / "nio.vasp"), fmt="poscar")
    work, store = tmp_path / "work", tmp_path / "theory.zarr"
    for code in ("vasp", "xspectra", "ocean"):
        args = ["simulate", "--workdir", str(work), "--element", "Ni", "--structures"]
        result = runner.invoke(app, [*args, str(folder), "--code", code, "--write-inputs"])
        assert result.exit_code == 0, result.output
    run = work / "nio" / "VASP" / "000_Ni"
    (run / "OUTCAR").write_text(outcar_text(ENERGY + 3400, np.linspace(0, 1, ENERGY.size)))
    for k in (1, 2, 3):
        dat = work / "nio" / "XSpectra" / "000_Ni" / f"dipole{k}" / "xanes.dat"
        dat.write_text(xanes_dat_text(ENERGY - 4980, np.linspace(0, 1, ENERGY.size), "1 0 0"))
    ocean = work / "nio" / "OCEAN" / "Ni" / "CNBSE"
    ocean.mkdir()
    for k in (1, 2, 3):
        rows = [f"{e:.4f} 0.0 {0.5 * k:.4f} 0.0" for e in ENERGY - 4980]
        (ocean / f"absspct_Ni_.0001_1s_0{k}").write_text(
            "#  omega  eps1  eps2  n\n" + "\n".join(rows)
        )
    for k, code in enumerate(("vasp", "xspectra", "ocean")):
        extra = ["--append"] if k else []
        result = runner.invoke(app, ["ingest", code, str(work), "--out", str(store), *extra])
        assert result.exit_code == 0, result.output
    ds = XASDataset.open(store)
    assert ds.groups() == [("Ni", "OCEAN"), ("Ni", "VASP"), ("Ni", "XSPECTRA")]
    assert np.allclose(ds.select("Ni", "VASP").energy, ENERGY + 3400)  # own grid, no shift
    assert np.allclose(ds.select("Ni", "XSPECTRA").energy, ENERGY - 4980)
    assert np.allclose(ds.select("Ni", "OCEAN").intensities(), 1.0)  # mean of 0.5, 1.0, 1.5
    assert ds.sites()["index"].tolist() == [0, 0, 0] and ds.material_ids.tolist() == ["nio"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "OUTCAR",
            "  frequency dependent IMAGINARY DIELECTRIC FUNCTION\n  1.0 0 0 0\n",
            "truncated",
        ),
        ("OUTCAR", " volume of cell : 36.4\n", "CH_LSPEC"),
        ("spec.txt", "4960 0.1\n4961 0.2\n4962\n", "line 3 has 1 columns"),
        ("spec.txt", "4960\n4961\n", r"1 column\(s\)"),
        ("spec.txt", "energy,mu\n4960,0.1\n", "line 1 is not numbers"),
    ],
)
def test_bad_files_name_file_and_fix(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpectrumError, match=message) as info:
        read_vasp(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert ";" in str(info.value)  # the problem, then the fix


def test_single_file_needs_structure(tmp_path):
    path = tmp_path / "spec.txt"
    path.write_text("4960 0.1\n4961 0.2\n")
    with pytest.raises(XASDataError, match="--structure"):
        ingest_theory(path, tmp_path / "s.zarr", "vasp")


@pytest.mark.shared
def test_shared_anatase_vasp_and_xspectra(shared_data, tmp_path):
    """Lightshow's published anatase Ti K-edge spectra (BSD-3) as VASP and XSPECTRA."""
    folder = shared_data / "experiment" / "lightshow-anatase"
    poscar, store = folder / "mp-390_anatase_POSCAR", tmp_path / "anatase.zarr"
    for k, (code, name) in enumerate(
        (("vasp", "anatase_theory_VASP.txt"), ("xspectra", "anatase_xspectra.txt"))
    ):
        ingest_theory(
            folder / name, store, code, poscar, "Ti", "mp-390", append=bool(k), license="BSD-3"
        )
    ds = XASDataset.open(store)
    vasp, xspectra = ds.select("Ti", "VASP"), ds.select("Ti", "XSPECTRA")
    assert vasp.energy.size == 40000 and 4377 < vasp.energy[0] < vasp.energy[-1] < 5028
    assert xspectra.energy.size == 400 and xspectra.energy[0] == -15.0
    assert xspectra.energy[-1] == 70.0
    raw = np.loadtxt(folder / name)
    assert np.allclose(xspectra.intensities()[0], raw[:, 1], rtol=1e-6)
    assert vasp.intensities().max() > 0 and ds.structure("mp-390").composition.reduced_formula == (
        "TiO2"
    )
    assert ds.sites()["multiplicity"].tolist() == [2, 2]  # the two Ti of the primitive cell
