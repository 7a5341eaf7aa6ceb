"""Tests of the measured-spectrum readers (XAS Data Library JSON, XDI, two-column text)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xas_data.errors import SpectrumError
from xas_data.measured import (
    MeasuredSpectrum,
    read_two_column,
    read_xaslib_json,
    read_xdi,
)


@pytest.fixture
def shared_dir(shared_data: Path) -> Path:
    return shared_data


# --------------------------------------------------------------------------- real data


def test_read_xaslib_json(shared_dir: Path) -> None:
    spectra = read_xaslib_json(shared_dir / "experiment" / "xaslib" / "xaslib_K_edge.json")
    assert len(spectra) >= 80
    for spectrum in spectra:
        assert isinstance(spectrum, MeasuredSpectrum)
        assert spectrum.element in {"V", "Cr", "Ni", "Cu", "Zn"}
        assert spectrum.edge == "K"
        assert spectrum.energy.shape == spectrum.mu.shape
        assert len(spectrum) > 50
        assert np.all(np.diff(spectrum.energy) > 0)
        assert np.all(np.isfinite(spectrum.mu))
        assert 4000.0 < spectrum.energy[0] < 12000.0  # K edges of V..Zn, in eV
        assert spectrum.name
        assert "beamline" in spectrum.metadata
    cu = [s for s in spectra if s.element == "Cu"]
    assert cu and all(8500.0 < s.energy.min() < 9100.0 for s in cu)


def test_read_two_column_anatase(shared_dir: Path) -> None:
    path = shared_dir / "experiment" / "lightshow-anatase" / "anatase_exp.txt"
    spectrum = read_two_column(path, element="Ti")
    assert spectrum.element == "Ti" and spectrum.edge == "K"
    assert spectrum.name == "anatase_exp"
    assert 4955.0 < spectrum.energy.min() < 4990.0
    assert 4990.0 < spectrum.energy.max() < 5060.0
    assert np.all(np.diff(spectrum.energy) > 0)
    assert np.all(np.isfinite(spectrum.mu))


# --------------------------------------------------------------------------- xaslib JSON


def test_xaslib_json_sorts_dedups_and_names_bad_record(tmp_path: Path) -> None:
    records = [
        {
            "file": "data/Cu/a.xdi",
            "element": "Cu",
            "edge": "K",
            "sample": "Cu2O",
            "formula": "Cu2O",
            "beamline": "X",
            "energy": [8990.0, 8980.0, 8985.0, 8985.0],
            "mu_raw": [3.0, 1.0, 2.0, 9.0],
        },
        {"file": "data/Cu/broken.xdi", "element": "Cu", "energy": [1.0, 2.0]},
    ]
    path = tmp_path / "lib.json"
    path.write_text(json.dumps(records[:1]))
    (spectrum,) = read_xaslib_json(path)
    np.testing.assert_allclose(spectrum.energy, [8980.0, 8985.0, 8990.0])
    np.testing.assert_allclose(spectrum.mu, [1.0, 2.0, 3.0])  # first of the duplicates kept
    assert spectrum.formula == "Cu2O" and spectrum.metadata["beamline"] == "X"

    path.write_text(json.dumps(records))
    with pytest.raises(SpectrumError, match=r"record 1.*broken\.xdi.*mu_raw"):
        read_xaslib_json(path)


# --------------------------------------------------------------------------- XDI


def _write_xdi(path: Path, energies_kev: bool = False, columns: str = "i0 itrans") -> None:
    energy = np.linspace(8950.0, 9050.0, 21)
    i0 = np.full_like(energy, 1.0e5) * (1.0 + 0.01 * np.arange(energy.size))
    mu = 0.5 + 1.0 / (1.0 + np.exp(-(energy - 8990.0)))
    it = i0 * np.exp(-mu)
    e_col = energy / 1000.0 if energies_kev else energy
    unit = "keV" if energies_kev else "eV"
    lines = [
        "# XDI/1.0 GSE/1.0",
        "# Element.symbol: Cu",
        "# Element.edge: K",
        f"# Column.1: energy {unit}",
        "# Column.2: i0",
        "# Column.3: itrans" if columns == "i0 itrans" else "# Column.3: ifluor",
        "# Facility.name: APS",
        "# Beamline.name: 13-BM-D",
        "# Sample.name: copper(I) oxide",
        "# Sample.formula: Cu2O",
        "# Sample.temperature: 300 K",
        "# ///",
        "# synthetic test spectrum",
        "#----",
        "# energy i0 itrans",
    ]
    lines += [f"{e:.6f} {a:.6f} {b:.6f}" for e, a, b in zip(e_col, i0, it, strict=True)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("kev", [False, True])
def test_read_xdi_transmission(tmp_path: Path, kev: bool) -> None:
    path = tmp_path / "cu2o.xdi"
    _write_xdi(path, energies_kev=kev)
    spectrum = read_xdi(path)
    table = np.loadtxt(path)
    expected_e = table[:, 0] * (1000.0 if kev else 1.0)
    np.testing.assert_allclose(spectrum.energy, expected_e, rtol=1e-12)
    np.testing.assert_allclose(spectrum.mu, np.log(table[:, 1] / table[:, 2]), rtol=1e-12)
    assert 8900.0 < spectrum.energy[0] < 9000.0
    assert spectrum.element == "Cu" and spectrum.edge == "K"
    assert spectrum.name == "copper(I) oxide" and spectrum.formula == "Cu2O"
    assert spectrum.metadata["beamline"] == "13-BM-D"
    assert spectrum.metadata["facility"] == "APS"
    assert spectrum.metadata["temperature"] == "300 K"
    assert spectrum.metadata["mu_source"] == "ln(i0/itrans)"
    assert spectrum.metadata["comments"] == ["synthetic test spectrum"]


def test_read_xdi_fluorescence_and_mu_column(tmp_path: Path) -> None:
    path = tmp_path / "fluor.xdi"
    _write_xdi(path, columns="i0 ifluor")
    table = np.loadtxt(path)
    spectrum = read_xdi(path)
    np.testing.assert_allclose(spectrum.mu, table[:, 2] / table[:, 1], rtol=1e-12)

    text = path.read_text().replace("# Column.3: ifluor", "# Column.3: mutrans")
    path.write_text(text)
    spectrum = read_xdi(path)
    np.testing.assert_allclose(spectrum.mu, table[:, 2], rtol=1e-12)


def test_read_xdi_label_line_without_column_fields(tmp_path: Path) -> None:
    path = tmp_path / "labels.xdi"
    path.write_text(
        "# XDI/1.0\n# Element.symbol: Zn\n#----\n# energy i0 itrans\n"
        "9650 10 5\n9660 10 4\n9670 10 2\n"
    )
    spectrum = read_xdi(path)
    np.testing.assert_allclose(spectrum.mu, np.log([2.0, 2.5, 5.0]))
    assert spectrum.element == "Zn" and spectrum.name == "labels"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("9650 10 5\n9660 10 4\n", "not an XDI file"),
        (
            "# XDI/1.0\n# Element.symbol: Cu\n# Column.1: angle deg\n# Column.2: i0\n"
            "# Column.3: itrans\n#----\n10 1 2\n11 1 2\n",
            "no energy column",
        ),
        (
            "# XDI/1.0\n# Element.symbol: Cu\n# Column.1: energy eV\n# Column.2: irefer\n"
            "#----\n8980 1\n8990 2\n",
            "no usable intensity columns",
        ),
        (
            "# XDI/1.0\n# Element.symbol: Cu\n# Column.1: energy eV\n# Column.2: mu\n"
            "#----\n8980 1\n8990 abc\n",
            "not numeric",
        ),
        (
            "# XDI/1.0\n# Column.1: energy eV\n# Column.2: mu\n#----\n8980 1\n8990 2\n",
            "Element.symbol",
        ),
        (
            "# XDI/1.0\n# Element.symbol: Cu\n# Column.1: energy eV\n# Column.2: i0\n"
            "# Column.3: itrans\n#----\n8980 1 0\n8990 1 2\n",
            "itrans <= 0",
        ),
    ],
)
def test_malformed_xdi_errors_name_file(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "malformed_spectrum.xdi"
    path.write_text(text)
    with pytest.raises(SpectrumError, match=match) as info:
        read_xdi(path)
    assert "malformed_spectrum.xdi" in str(info.value)


# --------------------------------------------------------------------------- two columns


def test_read_two_column_header_commas_and_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "spec.csv"
    path.write_text("# comment\nenergy,mu,err\n4.97,0.1,0.0\n4.96,0.0,0.0\n4.98,0.5,0.0\n")
    spectrum = read_two_column(path, element="ti", name="anatase")
    np.testing.assert_allclose(spectrum.energy, [4960.0, 4970.0, 4980.0])  # keV -> eV
    np.testing.assert_allclose(spectrum.mu, [0.0, 0.1, 0.5])
    assert spectrum.element == "Ti" and spectrum.name == "anatase"
    assert spectrum.metadata["n_columns"] == 3
    assert spectrum.metadata["header"] == ["energy,mu,err"]


def test_read_two_column_errors_name_file(tmp_path: Path) -> None:
    path = tmp_path / "one_col.txt"
    path.write_text("4960\n4970\n")
    with pytest.raises(SpectrumError, match="one_col.txt"):
        read_two_column(path, element="Ti")
    path = tmp_path / "nan.txt"
    path.write_text("4960 0.1\n4970 nan\n")
    with pytest.raises(SpectrumError, match=r"nan\.txt.*NaN"):
        read_two_column(path, element="Ti")
    with pytest.raises(SpectrumError, match="element"):
        read_two_column(path, element="Tix")


# --------------------------------------------------------------------------- Athena, .nor


def _larch_data(shared_dir: Path) -> Path:
    return shared_dir / "experiment" / "larch-xafsdata"


def test_read_athena_project_every_group_labelled(shared_dir: Path) -> None:
    from xas_data.measured import read_athena_project

    spectra = read_athena_project(_larch_data(shared_dir) / "AthenaProjectFiles" / "Mn.prj")
    assert len(spectra) == 14
    assert {s.element for s in spectra} == {"Mn"}
    names = [s.name for s in spectra]
    assert "Pyrolusite" in names and "g-MnOOH" in names and len(set(names)) == 14
    for s in spectra:
        assert np.all(np.diff(s.energy) > 0) and np.all(np.isfinite(s.mu))
        assert s.metadata["athena_group"] and s.metadata["source_file"].endswith("Mn.prj")


def test_athena_bad_groups_named_rest_read(shared_dir: Path) -> None:
    from xas_data.measured import read_athena_project

    path = _larch_data(shared_dir) / "AthenaProjectFiles" / "cuybco.prj"
    problems: list[str] = []
    spectra = read_athena_project(path, element="Cu", problems=problems)
    assert spectra and len(problems) == 4
    assert all("cuybco.prj, group 'cu" in p and "energies must be positive" in p for p in problems)
    with pytest.raises(SpectrumError, match="cuybco.prj, group"):
        read_athena_project(path, element="Cu")


def test_athena_project_without_groups(tmp_path: Path) -> None:
    from xas_data.measured import read_athena_project

    path = tmp_path / "empty.prj"
    path.write_text("# Athena project file -- Demeter version 0.9.26\n\n@journal = ();\n")
    with pytest.raises(SpectrumError, match=r"empty\.prj.*(no groups|not a readable Athena)"):
        read_athena_project(path)


def test_athena_group_with_nan_energies(shared_dir: Path, tmp_path: Path) -> None:
    import gzip

    from xas_data.measured import read_athena_project

    text = gzip.decompress(
        (_larch_data(shared_dir) / "AthenaProjectFiles" / "FeO.prj").read_bytes()
    ).decode()
    marker = "@x = ('6911.7671'"
    assert marker in text
    path = tmp_path / "nan.prj"
    path.write_text(text.replace(marker, "@x = ('nan'", 1))
    problems: list[str] = []
    spectra = read_athena_project(path, problems=problems)
    assert spectra == [] and len(problems) == 1
    assert "nan.prj, group 'FeO'" in problems[0] and "NaN" in problems[0]


def test_nor_and_decimal_comma_files(shared_dir: Path) -> None:
    from xas_data.measured import looks_normalized

    pyfitit = shared_dir / "experiment" / "pyfitit"
    nor = read_two_column(pyfitit / "Ti" / "LC08_Anatase.nor", element="Ti")
    assert nor.metadata["normalized"] and "norm" in nor.metadata["mu_source"]
    mn = read_two_column(pyfitit / "Mn" / "003_Mn2O3.dat", element="Mn")
    assert mn.metadata["decimal_comma"] and 6519 < mn.energy[0] < 6521
    assert mn.metadata["normalized"]
    raw = read_two_column(_larch_data(shared_dir) / "cu_rt01.xmu", element="Cu")
    assert "normalized" not in raw.metadata and raw.metadata["mu_source"] == "column 'mu'"
    assert not looks_normalized(raw.energy, raw.mu)
