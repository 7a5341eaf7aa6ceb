"""``predict`` / ``xas predict`` refuse broken structures with one line (exit 2), before
spglib or a featurizer sees them: a NaN coordinate used to segfault spglib (exit 139) and a
singular lattice to end in a LinAlgError traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from typer.testing import CliRunner
from xas_testkit import DEADLINE_S

from xas_data.errors import StructureError
from xas_models.cli import app
from xas_models.predict import predict

POSCAR = "NiO\n1.0\n4.2 0 0\n0 4.2 0\n{c}\nNi O\n1 1\nDirect\n0 0 0\n{o}\n"
NIO = Structure.from_spacegroup(
    "Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
)


def _poscar(folder, name, c="0 0 4.2", o="0.5 0.5 0.5"):
    path = folder / name
    path.write_text(POSCAR.format(c=c, o=o))
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """name -> (path, expected message fragment)."""
    folder = tmp_path_factory.mktemp("bad")
    cif = folder / "nio.cif"
    CifWriter(NIO, symprec=0.1).write_file(str(cif))
    cut = folder / "cut.cif"
    cut.write_text("\n".join(cif.read_text().rstrip("\n").splitlines()[:-1]) + "\n")
    dup = folder / "dup.vasp"
    dup.write_text(POSCAR.format(c="0 0 4.2", o="0.01 0 0"))
    return {
        "nan": (_poscar(folder, "nan.vasp", o="nan 0.5 0.5"), "NaN or infinite coordinate"),
        "singular": (_poscar(folder, "flat.vasp", c="4.2 4.2 0"), "lattice is singular"),
        "overlap": (dup, "Angstrom apart"),
        "cut_cif": (cut, "_chemical_formula_sum says NiO"),
    }


@pytest.mark.parametrize("case", ["nan", "singular", "overlap", "cut_cif"])
def test_python_api_raises_structure_error(bad_files, tiny_zoo_source, case):
    path, message = bad_files[case]
    with pytest.raises(StructureError, match=message):
        predict(str(path), model="tiny-cuni", zoo=tiny_zoo_source)


def test_python_api_atom_limit(tiny_zoo_source, monkeypatch):
    monkeypatch.setenv("XAS_MAX_ATOMS", "10")
    with pytest.raises(StructureError, match="exceed the limit of 10"):
        predict(NIO * (2, 2, 2), model="tiny-cuni", zoo=tiny_zoo_source)


@pytest.mark.parametrize("case", ["singular", "overlap", "cut_cif"])
def test_cli_exits_2_with_one_line(bad_files, tiny_zoo_source, case):
    path, message = bad_files[case]
    args = ["predict", str(path), "--model", "tiny-cuni", "--zoo", str(tiny_zoo_source)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_nan_coordinate_exits_2_not_139(bad_files, tiny_zoo_source):
    """In a subprocess: before the fix spglib segfaulted (exit 139)."""
    path, message = bad_files["nan"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "xas_models.cli", "predict", str(path), "-m", "tiny-cuni"]
    proc = subprocess.run(
        [*cmd, "--zoo", str(tiny_zoo_source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=DEADLINE_S,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
