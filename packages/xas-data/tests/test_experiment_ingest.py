"""Ingest of measured spectra as fidelity EXP: structure links, report, atomic appends, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xas_data.cli import app
from xas_data.errors import StoreError, XASDataError
from xas_data.experiment_ingest import (
    UNMATCHED,
    StructureLinker,
    ingest_measured_spectra,
    read_measured_sources,
    sample_composition,
)
from xas_data.measured import MeasuredSpectrum
from xas_data.store import XASDataset

pytest.importorskip("larixite")

XASLIB = "experiment/xaslib/xaslib_K_edge.json"
ANATASE = "experiment/lightshow-anatase"


def _spectrum(name: str, formula: str, element: str, **meta) -> MeasuredSpectrum:
    energy = np.linspace(8000.0, 9000.0, 10)
    return MeasuredSpectrum(
        energy, np.zeros(10), element, name=name, formula=formula, metadata=meta
    )


def _synthetic_cu(name: str, e0: float = 8980.0) -> MeasuredSpectrum:
    energy = np.concatenate([np.arange(8800.0, 8960.0, 4.0), np.arange(8960.0, 9500.0, 0.5)])
    mu = 0.3 + (0.5 + np.arctan((energy - e0) / 1.5) / np.pi)
    return MeasuredSpectrum(
        energy, mu, "Cu", name=name, formula="CuO", metadata={"source_file": f"{name}.txt"}
    )


@pytest.fixture(scope="module")
def xaslib_store(shared_data: Path, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("exp") / "xaslib.zarr"
    spectra = read_measured_sources([shared_data / XASLIB])
    return out, ingest_measured_spectra(spectra, out)


# --------------------------------------------------------------------------- linking


def test_sample_compositions() -> None:
    assert sample_composition(_spectrum("CuO copper oxide", "CuO", "Cu")).reduced_formula == "CuO"
    ni = sample_composition(_spectrum("Ni(OH)2   nickel hydroxide", "Ni_OH_2", "Ni"))
    assert ni.reduced_formula == "Ni(HO)2"  # from the name: "Ni_OH_2" is ambiguous
    hydrate = sample_composition(_spectrum("hopeite", "Zn3(PO4)2·4H2O", "Zn"))
    assert hydrate["H"] == 8 and hydrate["Zn"] == 3
    assert sample_composition(_spectrum("Cu foil", "", "Cu")).reduced_formula == "Cu"
    assert sample_composition(_spectrum("unknown powder", "", "Cu")) is None


def test_standards_link_to_their_minerals() -> None:
    linker = StructureLinker()
    expected = {
        ("CuO", "Cu"): "Tenorite",
        ("Cu2O", "Cu"): "Cuprite",
        ("Cr2O3", "Cr"): "Eskolaite",
        ("NiO", "Ni"): "Bunsenite",
        ("V2O5", "V"): "Shcherbinaite",
        ("V2O3", "V"): "Karelianite",
        ("ZnO", "Zn"): "Zincite",
    }
    for (formula, element), mineral in expected.items():
        link = linker.link(_spectrum(formula, formula, element))
        assert link.linked and link.mineral == mineral, (formula, link)
        assert link.structure.composition.reduced_formula == formula
        assert link.structure[link.site_index].specie.symbol == element
    foil = linker.link(_spectrum("Cu foil", "", "Cu"))
    assert foil.mineral == "Copper" and foil.method == "formula"
    # a mineral name in the sample name wins, but only with the right composition
    named = linker.link(_spectrum("zinc sulfide sphalerite", "ZnS", "Zn"))
    assert named.mineral == "Sphalerite" and named.method == "mineral-name"
    copper_word = linker.link(_spectrum("CuO copper oxide", "CuO", "Cu"))
    assert copper_word.mineral == "Tenorite"
    # deterministic
    assert (
        linker.link(_spectrum("CuO", "CuO", "Cu")).amcsd_id
        == StructureLinker().link(_spectrum("CuO", "CuO", "Cu")).amcsd_id
    )
    none = linker.link(_spectrum("CrO2", "CrO2", "Cr"))
    assert not none.linked and none.label == UNMATCHED and "--cif" in none.reason


# --------------------------------------------------------------------------- real data


def test_ingest_all_of_xaslib(xaslib_store) -> None:
    out, report = xaslib_store
    assert len(report.rows) == 88 and not report.failed
    ds = XASDataset.open(out)
    stored = {el: len(ds.select(el, "EXP")) for el, _ in ds.groups()}
    assert stored == report.counts
    assert stored == {"Cr": 16, "Cu": 6, "Ni": 5, "V": 4, "Zn": 16}
    assert ds.n_sites == len(report.linked) == 47
    # unmatched spectra are listed, with the reason, and named in the table and provenance
    unmatched = {" ".join(r.name.split()) for r in report.unmatched}
    assert {"CrO2", "Cr2S3", "Na2CrO4", "Ni2O3", "hopeite"} <= unmatched
    assert len(report.unmatched) == 41
    assert all("CIF" in r.message for r in report.unmatched)
    table = report.table()
    assert table.count(UNMATCHED) >= 41 and "47 linked, 41 unmatched" in table
    assert len(ds.provenance[-1]["unmatched"]) == 41
    # links of the standards
    by_file = {Path(r.source_file).stem: r for r in report.rows}
    assert by_file["CuO_tenorite_13K_01"].structure.startswith("tenorite")
    assert all(r.structure.startswith("eskolaite") for r in report.rows if r.formula == "Cr2O3")
    assert by_file["Cu_Foil_rt_2016Foils"].structure.startswith("copper")
    assert by_file["Ni_metal_rt_01"].structure.startswith("nickel")
    # E0 of the Cu standards near the Cu K edge (8979 eV); azurite (Cu2+) sits higher
    for r in report.rows:
        if r.element == "Cu":
            limit = 15.0 if "azurite" in r.name else 10.0
            assert abs(r.e0 - 8979.0) < limit, (r.name, r.e0)


def test_store_keeps_metadata_and_sites(xaslib_store) -> None:
    out, _ = xaslib_store
    ds = XASDataset.open(out)
    selection = ds.select("Cu", "EXP")
    assert selection.intensities().shape == (6, 141)
    assert np.all(np.isfinite(selection.extra("e0")))
    assert np.all(selection.extra("edge_step") > 0)
    sites = selection.sites()
    for row, material in enumerate(sites["material"]):
        source = json.loads(str(ds.root["materials/source"][material]))
        assert source["site_average"] is True
        assert source["beamline"] and source["source_file"].endswith("xaslib_K_edge.json")
        assert "temperature" in source and source["sample"]
        structure = ds.structure(int(material))
        index = int(sites["index"][row])
        assert structure[index].specie.symbol == "Cu"
        assert index == min(i for i, s in enumerate(structure) if s.specie.symbol == "Cu")
        assert int(sites["multiplicity"][row]) == int(structure.composition["Cu"])
    assert set(sites["split"].tolist()) == {""}


def test_append_is_idempotent_and_keeps_data(xaslib_store, shared_data, tmp_path) -> None:
    out, _ = xaslib_store
    store = tmp_path / "copy.zarr"
    shutil.copytree(out, store)
    before = XASDataset.open(store)
    n_before, cu_before = before.n_sites, before.select("Cu", "EXP").intensities()
    spectra = read_measured_sources([shared_data / XASLIB])[:8]
    again = ingest_measured_spectra(spectra, store)
    assert sum(again.counts.values()) == 0
    assert {r.status for r in again.rows} <= {"already stored", "unmatched (not stored)"}
    anatase = read_measured_sources([shared_data / ANATASE / "anatase_exp.txt"], element="Ti")
    poscar = shared_data / ANATASE / "mp-390_anatase_POSCAR"
    added = ingest_measured_spectra(anatase, store, cif_map={"anatase_exp": poscar})
    assert added.counts == {"Ti": 1} and added.rows[0].link_method == "cif"
    after = XASDataset.open(store)
    assert after.n_sites == n_before + 1
    np.testing.assert_array_equal(after.select("Cu", "EXP").intensities(), cu_before)
    assert [p.name for p in tmp_path.glob(".copy.zarr.*")] == [".copy.zarr.lock"]  # writer lock


def test_failures_leave_the_store_untouched(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    first = ingest_measured_spectra([_synthetic_cu("CuO a")], store)
    assert first.counts == {"Cu": 1}
    with pytest.raises(XASDataError, match="match no sample"):
        ingest_measured_spectra([_synthetic_cu("CuO b")], store, cif_map={"nope": "x.cif"})
    with pytest.raises(StoreError, match="grid differs"):
        ingest_measured_spectra(
            [_synthetic_cu("CuO c")], store, grids={"Cu": np.linspace(8990, 9010, 21)}
        )
    assert XASDataset.open(store).n_sites == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".s.zarr.lock", "s.zarr"]


def test_bad_spectra_are_reported_not_dropped(tmp_path: Path) -> None:
    good, bad = _synthetic_cu("CuO good"), _synthetic_cu("CuO bad", e0=9300.0)
    report = ingest_measured_spectra([good, bad], tmp_path / "s.zarr")
    assert [r.status for r in report.rows] == ["stored", "failed"]
    assert "not a Cu K-edge spectrum" in report.rows[1].message
    assert "FAILED CuO bad" in report.table()
    with pytest.raises(XASDataError, match="not a Cu K-edge"):
        ingest_measured_spectra([bad], tmp_path / "t.zarr", strict=True)


def test_kev_and_reversed_files_are_reported_as_notes(tmp_path: Path) -> None:
    s = _synthetic_cu("CuO")
    kev, rev = tmp_path / "kev.txt", tmp_path / "rev.txt"
    np.savetxt(kev, np.c_[s.energy / 1000.0, s.mu], header="energy mu")
    np.savetxt(rev, np.c_[s.energy[::-1], s.mu[::-1]], header="energy mu")
    spectra = read_measured_sources([kev, rev], "Cu")
    for sp in spectra:
        sp.formula = "CuO"
    report = ingest_measured_spectra(spectra, tmp_path / "s.zarr")
    assert [r.status for r in report.rows] == ["stored", "stored"]
    assert any("keV" in n for n in report.rows[0].notes)
    assert any("sorted" in n for n in report.rows[1].notes)
    table = report.table()
    assert "NOTE kev: energies converted from keV" in table and "NOTE rev:" in table
    np.testing.assert_allclose(report.rows[0].e0, report.rows[1].e0, atol=0.05)


def test_keep_unmatched_stores_without_structure(tmp_path: Path) -> None:
    spectrum = _synthetic_cu("mystery")
    spectrum.formula = ""
    report = ingest_measured_spectra([spectrum], tmp_path / "s.zarr", keep_unmatched=True)
    assert report.rows[0].status == "stored without structure"
    ds = XASDataset.open(tmp_path / "s.zarr")
    assert ds.n_sites == 1 and str(ds.root["materials/structure"][0]) == ""


# --------------------------------------------------------------------------- CLI


def test_cli_ingest_measured(shared_data: Path, tmp_path: Path) -> None:
    energy = np.arange(4900.0, 5200.0, 0.5)
    mu = 0.2 + 0.5 + np.arctan((energy - 4982.0) / 1.5) / np.pi
    other = tmp_path / "ti_unknown.txt"
    other.write_text(
        "# energy mu\n" + "\n".join(f"{e} {m}" for e, m in zip(energy, mu, strict=True))
    )
    store = tmp_path / "cli.zarr"
    poscar = shared_data / ANATASE / "mp-390_anatase_POSCAR"
    args = [
        "ingest-measured",
        str(shared_data / ANATASE / "anatase_exp.txt"),
        str(other),
        "--out",
        str(store),
        "--element",
        "Ti",
        "--cif",
        f"anatase_exp={poscar}",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for text in ("sample", "E0 (eV)", "anatase_exp", "mp-390_anatase_POSCAR", "ti_unknown"):
        assert text in result.output
    assert "UNMATCHED ti_unknown" in result.output
    assert XASDataset.open(store).n_sites == 1
    bad = CliRunner().invoke(app, ["ingest-measured", str(other), "--out", str(store)])
    assert bad.exit_code == 2 and "--element" in bad.output


def test_athena_projects_bad_groups_named_rest_ingested(shared_data: Path, tmp_path: Path) -> None:
    from xas_data.measured import read_athena_project

    prj = shared_data / "experiment" / "larch-xafsdata" / "AthenaProjectFiles"
    problems: list[str] = []
    spectra = read_measured_sources([prj / "cuybco.prj", prj / "FeS2.prj"], problems=problems)
    assert len(problems) == 4 and all("cuybco.prj, group" in p for p in problems)
    wrong = read_athena_project(prj / "FeO.prj", element="Mn")  # an Fe group in a Mn project
    report = ingest_measured_spectra(
        [*spectra, *wrong],
        tmp_path / "s.zarr",
        keep_unmatched=True,
        link_minerals=False,
        read_problems=problems,
    )
    failed = [r.message for r in report.failed]
    assert len(failed) == 5
    assert any("FeO" in m and "Mn K edge" in m and "Fe (7112 eV)" in m for m in failed)
    assert report.counts.get("Cu", 0) == len(spectra) - 1 and report.counts["Fe"] == 1
    assert report.table().count("FAILED") == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Fe2O3 0.5(H2O)", "Fe2 O3.5 H1"),
        ("Fe4(OH)8Cl n(H2O)", "Fe4 O8 H8 Cl1"),
        ("MnO2-pyr", "Mn1 O2"),
        ("FeO.001", "Fe1 O1"),
        ("CuSO4.5H2O", "Cu1 S1 O9 H10"),
        ("Zn3(PO4)2·4H2O", "Zn3 P2 O12 H8"),
        ("Ni(OH)2", "Ni1 O2 H2"),
    ],
)
def test_hydrate_adduct_and_tagged_formulas_parse(text, expected):
    from pymatgen.core import Composition

    from xas_data.experiment_ingest import _parse_formula

    assert _parse_formula(text).almost_equals(Composition(expected))


@pytest.mark.parametrize("text", ["Ni_OH_2", "foil", "hello world", "Fe2O3 n(NaCl)", ""])
def test_text_that_is_not_a_formula_gives_none(text):
    from xas_data.experiment_ingest import _parse_formula

    assert _parse_formula(text) is None
