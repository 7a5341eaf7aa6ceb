"""The zoo's inverse model on measured Cu standards (XAS Data Library), with and without SDM."""

from __future__ import annotations

from pathlib import Path

import pytest

from xas_eval.measured_descriptors import describe_standards, render_standards

ZOO = Path(__file__).resolve().parents[3] / "model-zoo"


@pytest.fixture(scope="module")
def exp_store(tmp_path_factory, shared_data) -> Path:
    shared = shared_data
    from xas_data.experiment_ingest import ingest_measured_spectra, read_measured_sources

    spectra = read_measured_sources([shared / "experiment/xaslib/xaslib_K_edge.json"])
    spectra = [s for s in spectra if s.element == "Cu"]
    out = tmp_path_factory.mktemp("exp") / "cu.zarr"
    ingest_measured_spectra(spectra, out, keep_unmatched=True)
    return out


def test_describe_cu_standards_raw_and_with_sdm(exp_store):
    result = describe_standards("spt-default-feff-fast", str(exp_store), "Cu", zoo=str(ZOO))
    rows = result["rows"]
    assert len(rows) == 7  # all measured Cu spectra, linked or not
    cuo = next(r for r in rows if r["formula"] == "CuO")
    assert cuo["known_OS"] == 2 and cuo["known_CN"] == 4  # tenorite: square-planar Cu(II)
    assert {"OS_raw", "OS_sdm", "CN_raw", "CN_sdm"} <= set(cuo)
    s = result["summary"]
    assert s["n_OS"] >= 3 and 0 <= s["OS_accuracy_raw"] <= 1 and 0 <= s["OS_accuracy_sdm"] <= 1
    # only OS the model can give a Cu site are scored: its Cu training sites are Cu(II) and
    # Cu(III), so the 3 Cu foils (OS 0) and Cu2S (Cu(I)) are not; covellite CuS (Cu 4/3 from
    # its S-S pairs) is mixed valence and scored with Cu(I) or Cu(II) accepted
    from xas_eval.oxidation import accepted_classes

    assert any(r["known_OS"] is not None and 1 < r["known_OS"] < 2 for r in rows)
    assert s["n_OS"] == sum(
        r["known_OS"] is not None and bool(accepted_classes(r["known_OS"]) & {2.0, 3.0})
        for r in rows
    )
    assert all(r["OS_raw"] in (2.0, 3.0) for r in rows)
    assert all(isinstance(r["in_domain_raw"], bool) for r in rows)
    assert "| CuO copper oxide tenorite | 2 |" in render_standards(result)
    with pytest.raises(ValueError, match="no EXP spectra of Ni"):
        describe_standards("spt-default-feff-fast", str(exp_store), "Ni", zoo=str(ZOO))
