"""The ``xas`` command line: predict, models, errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from xas_models.cli import app, edge_energy, headline_metric

runner = CliRunner()


@pytest.fixture(scope="module")
def cif_files(structures, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifs")
    paths = []
    for name in ("cuo", "spinel"):
        path = folder / f"{name}.cif"
        structures[name].to(filename=str(path))
        paths.append(path)
    return paths


def test_predict_writes_csv_and_plot_and_prints_a_table(cif_files, tiny_zoo_source, tmp_path):
    out = tmp_path / "results.csv"
    png = tmp_path / "spectra.png"
    args = ["predict", *map(str, cif_files), "--model", "tiny-cuni", "--zoo", str(tiny_zoo_source)]
    result = runner.invoke(app, [*args, "--out", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "cuo.cif (CuO), Cu K-edge, model tiny-cuni 0.10.0" in text
    assert "spinel.cif (Ni3O4), Ni K-edge" in text
    assert "E0 (eV)" in text and "max mu" in text
    assert text.count("average") == 2
    rows = list(csv.DictReader(out.open()))
    assert {r["site"] for r in rows if r["formula"] == "Ni3O4"} == {"0", "2", "average"}
    assert len([r for r in rows if r["site"] == "average"]) == 80
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_predict_json_with_element_and_version(cif_files, tiny_zoo_source, tmp_path):
    out = tmp_path / "results.json"
    result = runner.invoke(
        app,
        [
            "predict",
            str(cif_files[1]),
            "-m",
            "tiny-cuni",
            "--version",
            "0.9.0",
            "--element",
            "Ni",
            "--zoo",
            str(tiny_zoo_source),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    [pred] = json.loads(out.read_text())["predictions"]
    assert pred["model_version"] == "0.9.0" and pred["element"] == "Ni"
    assert [s["multiplicity"] for s in pred["sites"]] == [2, 4]


def test_models_lists_the_zoo(tiny_zoo_source):
    result = runner.invoke(app, ["models", "--zoo", str(tiny_zoo_source)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "version", "elements", "fidelity", "featurizer", "metric"]
    assert lines[-1].split()[:5] == ["tiny-cuni", "0.10.0", "Cu,Ni", "FEFF", "chgnet"]
    assert "median_pearson=0.85 (mean of 2)" in lines[-1]
    assert len(lines) == 5


def test_bad_model_name_exits_2_with_a_helpful_message(cif_files, tiny_zoo_source):
    result = runner.invoke(
        app, ["predict", str(cif_files[0]), "--model", "nope", "--zoo", str(tiny_zoo_source)]
    )
    assert result.exit_code == 2
    assert "unknown model 'nope'" in result.stderr and "tiny-cuni (0.9.0, 0.10.0)" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--element", "Fe"], "predicts ['Cu', 'Ni'], not Fe"),
        (["--out", "x.txt"], "must end in .csv or .json"),
        (["--model", "tiny-badkey"], "featurizer mismatch"),
    ],
)
def test_user_errors_exit_2(cif_files, tiny_zoo_source, extra, message):
    args = ["predict", str(cif_files[0]), "--model", "tiny-cuni", "--zoo", str(tiny_zoo_source)]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 2
    assert message in result.stderr


def test_missing_file_and_empty_zoo_exit_2(tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path / "no.cif"), "--model", "x"])
    assert result.exit_code == 2 and "no such file" in result.stderr
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 2 and "no models found" in result.stderr


def test_edge_energy_and_headline_metric():
    energy = np.linspace(0.0, 10.0, 101)
    mu = 1.0 / (1.0 + np.exp(-(energy - 3.0) * 4))
    assert edge_energy(energy, mu) == pytest.approx(3.0)
    assert headline_metric({"Cu/median_pearson": 0.9, "Ni/median_pearson": 0.7}).startswith(
        "median_pearson=0.8"
    )
    assert headline_metric({"mse": 0.01}) == "mse=0.01"
    inverse = {"OS/all/mae": 0.2, "OS/all/f1_macro": 0.5927, "CN/all/f1_macro": 0.6}
    assert headline_metric(inverse) == "OS_f1=0.593"
    assert headline_metric({"OS_accuracy": 0.8, "OS_f1_macro": 0.51}) == "OS_f1=0.51"
    assert headline_metric({}) == "-"


def test_help_does_not_import_torch():
    code = "import sys, xas_models.cli; print('torch' in sys.modules, 'pymatgen' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_python_dash_m_sees_every_command(tmp_path):
    """``python -m xas_models.cli`` must register every command before it runs the app (the
    ``__main__`` guard once sat above ``describe`` and ``serve``: "No such command")."""
    proc = subprocess.run(
        [sys.executable, "-m", "xas_models.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("predict", "describe", "models", "serve"):
        assert command in proc.stdout, f"{command} missing from python -m help"
