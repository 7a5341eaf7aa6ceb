"""Lightshow inputs: the pymatgen alias, FEFF preset cards, VASP/XSpectra/OCEAN input folders."""

from __future__ import annotations

import importlib.metadata
import re

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner
from xas_testkit import DEADLINE_S

from xas_data.cli import app
from xas_data.simulation import get_preset
from xas_data.simulation._lightshow_compat import load_lightshow
from xas_data.simulation.feff_inputs import feff_input_text

runner = CliRunner()


def nio() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


@pytest.fixture()
def nio_folder(tmp_path):
    folder = tmp_path / "structures"
    folder.mkdir()
    nio().to(filename=str(folder / "nio.vasp"), fmt="poscar")
    return folder


def test_override_pair_matches_pydantic_pin():
    """The root [tool.uv] overrides replace pydantic's own pydantic-core pin: keep them a pair."""
    pins = [r for r in importlib.metadata.requires("pydantic") if r.startswith("pydantic-core")]
    assert pins == [f"pydantic-core=={importlib.metadata.version('pydantic-core')}"]


def test_alias_keeps_old_dictset_magmom():
    lightshow = load_lightshow()
    import pymatgen.io.vasp.sets as vasp_sets

    assert lightshow.VASPParameters and lightshow.XSpectraParameters and lightshow.OCEANParameters
    config = {"INCAR": {"MAGMOM": {"Ni": 5}}, "KPOINTS": {"reciprocal_density": 100}}
    incar = vasp_sets.DictSet(nio(), config).incar
    assert list(incar["MAGMOM"]) == [5, 0.6] and "ISPIN" not in incar


def _cards(text: str) -> tuple[list[str], str]:
    """(sorted card lines, everything from POTENTIALS on) of a feff.inp text."""
    head, _, tail = text.partition("POTENTIALS")
    cards = [ln for ln in head.splitlines() if re.match(r"^[A-Z]+ ", ln) and "TITLE" not in ln]
    return sorted(cards), tail


@pytest.mark.parametrize("name", ["fast", "accurate"])
def test_lightshow_feff_cards_equal_pymatgen_preset(name):
    preset = get_preset(name)
    ours = feff_input_text(nio(), 0, preset, backend="lightshow")
    theirs = feff_input_text(nio(), 0, preset, backend="pymatgen")
    assert _cards(ours) == _cards(theirs)  # same cards and cluster; only EDGE's line moves
    assert ("SCF 3.5 0 30 0.2 1" in ours) is (name == "accurate")
    assert "FMS " + str(preset.fms_radius) in ours and "COREHOLE FSR" in ours
    assert feff_input_text(nio(), 0, preset) == ours  # auto: lightshow when installed


def _write(tmp_path, nio_folder, code: str, *extra: str):
    workdir = tmp_path / "work"
    args = ["simulate", "--workdir", str(workdir), "--element", "Ni"]
    args += ["--structures", str(nio_folder), "--code", code, "--write-inputs", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return workdir / "nio"


def test_write_vasp_inputs(tmp_path, nio_folder):
    run = _write(tmp_path, nio_folder, "vasp") / "VASP" / "000_Ni"
    incar = (run / "INCAR").read_text()
    for setting in ("ICORELEVEL = 2", "CLN = 1", "CLL = 0", "CLZ = 1.0", "CH_LSPEC = True"):
        assert setting in incar
    poscar = (run / "POSCAR").read_text().splitlines()
    assert poscar[5].split()[:2] == ["Ni", "Ni"] and poscar[6].split()[0] == "1"  # absorber first
    assert (run / "KPOINTS").is_file()
    assert (run.parent.parent / "POSCAR").is_file()


def test_write_xspectra_inputs(tmp_path, nio_folder):
    run = _write(tmp_path, nio_folder, "xspectra") / "XSpectra" / "000_Ni"
    es_in = (run / "es.in").read_text()
    assert "Ni+" in es_in and "Ni.fch.upf" in es_in  # core-hole pseudopotential on the absorber
    xanes = (run / "dipole1" / "xanes.in").read_text()
    assert "edge = 'K'" in xanes and "calculation = 'xanes_dipole'" in xanes
    species = sorted(["Ni", "O", "Ni+"])
    assert f"xiabs = {species.index('Ni+') + 1}" in xanes
    assert sorted(p.name for p in run.glob("dipole*")) == ["dipole1", "dipole2", "dipole3"]


def test_write_ocean_and_feff_inputs(tmp_path, nio_folder):
    run = _write(tmp_path, nio_folder, "ocean") / "OCEAN" / "Ni"
    assert re.search(r"edges \{\s*1 1 0\s*\}", (run / "ocean.in").read_text())  # site 1, 1s
    assert (run / "photon1").read_text().startswith("dipole")
    feff = _write(tmp_path, nio_folder, "feff", "--preset", "fast") / "FEFF-fast" / "000_Ni"
    text = (feff / "feff.inp").read_text()
    assert "FMS 4.5 0" in text and "EDGE K" in text and "SCF" not in text


def test_cluster_codes_need_write_inputs(tmp_path, nio_folder):
    args = ["simulate", "--workdir", str(tmp_path), "--structures", str(nio_folder)]
    result = runner.invoke(app, [*args, "--element", "Ni", "--code", "vasp"])
    assert result.exit_code == 2 and "--write-inputs" in result.output
    result = runner.invoke(app, [*args, "--element", "Cu", "--code", "ocean", "--write-inputs"])
    assert result.exit_code == 2 and "no Cu site" in result.output


@pytest.mark.slow
def test_fast_spectra_equal_for_both_input_paths(tmp_path):
    """FEFF10 on the Lightshow-made and the pymatgen-made feff.inp: the same spectrum."""
    feff10 = pytest.importorskip("feff10")
    from xas_data.simulation import parse_xmu

    preset = get_preset("fast")
    mu = {}
    for backend in ("lightshow", "pymatgen"):
        run = tmp_path / backend
        run.mkdir()
        text = feff_input_text(nio(), 0, preset, backend=backend)
        config = feff10.FeffConfig(str(run), feff10.FeffInput.parse(text), stage_timeout=DEADLINE_S)
        feff10.FeffPipeline(config).run()
        xmu = parse_xmu(run / "xmu.dat")
        mu[backend] = (xmu.energy, xmu.mu)
    (e1, m1), (e2, m2) = mu.values()
    assert np.array_equal(e1, e2)
    assert np.max(np.abs(m1 - m2)) < 1e-6
