"""``xas describe`` and predict_descriptors on measured standards with the zoo's inverse models:
element filter, failure summary and exit codes, chemically possible classes, domain warnings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xas_models.cli import app

ZOO = Path(__file__).resolve().parents[3] / "model-zoo"
SPT = "spt-default-feff-fast"
RANKAAE = "rankaae-omnixas-cu-feff"
runner = CliRunner()


@pytest.fixture(scope="module")
def xaslib(shared_data) -> Path:
    return shared_data / "experiment/xaslib/xaslib_K_edge.json"


@pytest.fixture(scope="module")
def mixed_json(xaslib, tmp_path_factory) -> Path:
    """An XAS Data Library export with the V and Cu standards and two Zn spectra."""
    records = json.loads(xaslib.read_text(encoding="utf-8"))
    zn = [r for r in records if r["element"] == "Zn"][:2]
    keep = [r for r in records if r["element"] in ("V", "Cu")] + zn
    path = tmp_path_factory.mktemp("describe") / "mixed.json"
    path.write_text(json.dumps(keep), encoding="utf-8")
    return path


def _describe(*args: str):
    return runner.invoke(app, ["describe", *args, "--zoo", str(ZOO)])


def _os_values(stdout: str) -> list[float]:
    return [float(line.split()[1]) for line in stdout.splitlines() if line.startswith("  OS ")]


def test_element_option_filters_a_multi_element_file(mixed_json):
    result = _describe(str(mixed_json), "-m", SPT, "-e", "v")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("(V K edge") == 5 and "(Cu K edge" not in result.stdout
    assert result.stdout.rstrip().endswith("described 5 of 5 spectra")
    assert set(_os_values(result.stdout)) <= {3.0, 4.0, 5.0}  # V's training classes, no OS 6
    assert "note: V predictions limited to the classes of V in the model's training data" in (
        result.stdout
    )


def test_spectra_that_cannot_be_described_are_summarised(mixed_json):
    result = _describe(str(mixed_json), "-m", SPT)
    assert result.exit_code == 0, result.output
    summary = result.stdout.split("described 12 of 14 spectra; 2 could not be described:")[1]
    lines = summary.strip().splitlines()
    assert len(lines) == 2 and all("not Zn; choose an inverse model for Zn" in ln for ln in lines)
    assert "--element" not in result.output
    strict = _describe(str(mixed_json), "-m", SPT, "--strict")
    assert strict.exit_code == 2


def test_nothing_to_describe_exits_2_with_one_line(mixed_json, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    result = _describe(str(empty), "-m", SPT)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "nothing to describe" in result.stderr
    assert "holds no spectra" in result.stderr
    result = _describe(str(mixed_json), "-m", SPT, "-e", "Cr")
    assert result.exit_code == 2 and "holds no Cr spectra (only Cu, V, Zn)" in result.stderr
    only_zn = _describe(str(mixed_json), "-m", SPT, "-e", "Zn")
    assert only_zn.exit_code == 2 and "described 0 of 2 spectra" in only_zn.stdout


def test_rankaae_on_raw_measured_cu_warns_and_clips(mixed_json):
    result = _describe(str(mixed_json), "-m", RANKAAE, "-e", "Cu")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("warning: OUTSIDE the training domain") == 7
    assert "clipped to" in result.stdout
    assert all(0.5 <= v <= 3.5 for v in _os_values(result.stdout))  # within half a class
    assert "(7 outside the training domain)" in result.stdout


def _measured(shared_data: Path, element: str, model: str):
    """``(name, OS prediction)`` of the measured standards of ``element`` (xaslib for V, Ni,
    Cu; Ti: pyfitit .nor files and the lightshow anatase spectrum)."""
    from xas_data.experiment_ingest import read_measured_sources
    from xas_data.experiment_processing import process_spectrum
    from xas_data.measured import read_two_column
    from xas_models.inverse import predict_descriptors
    from xas_models.predict import resolve_model

    exp = shared_data / "experiment"
    if element == "Ti":
        files = sorted((exp / "pyfitit/Ti").glob("LC*Anatase*.nor"))
        files += sorted((exp / "pyfitit/Ti").glob("LC*Rutile*.nor"))
        spectra = [read_two_column(f, element="Ti") for f in files]
        spectra += read_measured_sources([exp / "lightshow-anatase/anatase_exp.txt"], "Ti")
    else:
        spectra = read_measured_sources([exp / "xaslib/xaslib_K_edge.json"])
        spectra = [s for s in spectra if s.element == element]
    loaded = resolve_model(model, "latest", str(ZOO))
    grid = loaded.meta.grid_for(element)
    energy = grid.start + grid.step * np.arange(grid.n_points)
    out = []
    for s in spectra:
        mu = process_spectrum(s, energy).mu_norm
        out.append((s.name, predict_descriptors(mu, energy, element, (loaded.module, loaded.meta))))
    return out


@pytest.mark.parametrize(
    ("element", "possible"),
    [("V", {3.0, 4.0, 5.0}), ("Ni", {1.0, 2.0, 3.0, 4.0}), ("Ti", {2.0, 3.0, 4.0})],
)
def test_measured_standards_get_only_possible_oxidation_states(shared_data, element, possible):
    """Before: OS 6 for every V standard, OS 5 for NiS, OS 5-6 for Ti in anatase; now only
    the OS of the element's training sites (all chemically possible)."""
    rows = _measured(shared_data, element, SPT)
    assert len(rows) >= 3
    for name, pred in rows:
        os_ = pred["OS"]
        assert os_.value in possible, name
        assert set(os_.probabilities) <= possible
        assert sum(os_.probabilities.values()) == pytest.approx(1.0)
        assert os_.domain is not None and isinstance(os_.in_domain, bool)


def test_rankaae_api_flags_raw_measured_cu(shared_data):
    rows = _measured(shared_data, "Cu", RANKAAE)
    assert len(rows) == 7
    for _, pred in rows:
        assert pred["OS"].in_domain is False
        assert 0.5 <= pred["OS"].value <= 3.5 and 0.5 <= pred["CN"].value <= 12.5
