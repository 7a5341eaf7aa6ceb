"""Damaged stores are refused, naming the array: a flipped byte fails its chunk checksum, a
missing chunk is an error (never zeros), and ``xas-data verify`` checks everything."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from xas_data.cli import app, default_dataset_path
from xas_data.errors import StoreError
from xas_data.store import XASDataset
from xas_data.verify import quick_check, verify_store

runner = CliRunner()
INTENSITY = "spectra/Cu/FEFF/intensity"


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> Path:
    """Cu FEFF spectra in chunks of 4 rows; every site index 0 (all-zero chunks of
    ``sites/index`` must still be written) and features with a chunk never computed."""
    path = tmp_path_factory.mktemp("good") / "s.zarr"
    ds = XASDataset.create(path, "s", chunk_rows=4)
    ids = [f"mp-{i}" for i in range(10)]
    cu = Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    ds.add_materials(ids, [cu] * 10, ["test"] * 10)
    energy = 8980.0 + np.arange(6.0)
    rng = np.random.default_rng(0)
    ds.append_spectra("Cu", "FEFF", energy, ids, [0] * 10, 1 + rng.random((10, 6)))
    values = ds.create_features("toy", 3)
    values[:4] = 1.0
    return path


@pytest.fixture
def store(good_store, tmp_path) -> Path:
    dest = tmp_path / "s.zarr"
    shutil.copytree(good_store, dest)
    return dest


def _flip_byte(chunk: Path) -> None:
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))


def test_a_new_store_is_checksummed_and_writes_every_chunk(good_store):
    report = verify_store(good_store)
    assert report.ok and not report.findings, report.lines()
    assert "crc32c" in (good_store / INTENSITY / "zarr.json").read_text()
    assert (good_store / "sites/index/c/2").is_file()  # all zeros, written all the same
    assert (good_store / "features/toy/values/c/2/0").is_file()  # NaN = not computed, written


def test_flipped_byte_fails_verify_and_reads_naming_the_array(store):
    _flip_byte(store / INTENSITY / "c/1/0")
    report = verify_store(store)
    assert not report.ok and report.errors[0].array == INTENSITY
    assert "checksum mismatch" in str(report.errors[0])
    result = runner.invoke(app, ["verify", str(store)])
    assert result.exit_code == 2 and INTENSITY in result.output
    ds = XASDataset.open(store)  # the quick check lists chunks; it does not read them
    with pytest.raises(StoreError, match=f"{INTENSITY}: a chunk fails its checksum"):
        ds.select("Cu", "FEFF").intensities()


def test_flipped_byte_in_a_string_array_is_caught(store):
    _flip_byte(store / "materials/id/c/0")
    result = runner.invoke(app, ["verify", str(store)])
    assert result.exit_code == 2 and "materials/id" in result.output


def test_missing_chunk_is_an_error_not_zeros(store):
    (store / INTENSITY / "c/1/0").unlink()
    with pytest.raises(StoreError, match=f"damaged: {INTENSITY}: 1 of 3 chunks missing"):
        XASDataset.open(store)
    result = runner.invoke(app, ["info", str(store)])
    assert result.exit_code == 2 and INTENSITY in result.output
    result = runner.invoke(app, ["verify", str(store)])
    assert result.exit_code == 2 and "chunks missing" in result.output
    # writers (mode 'a') may open it, and reads still refuse the zeros
    ds = XASDataset.open(store, mode="a")
    with pytest.raises(StoreError, match="read as all zeros"):
        ds.select("Cu", "FEFF").intensities()


def test_per_site_arrays_of_unequal_length(store):
    zarr.open_array(str(store / "sites/split"), mode="r+").resize((7,))
    with pytest.raises(StoreError, match="sites/split: 7 rows, but the store has 10"):
        XASDataset.open(store)


def test_appends_and_feature_growth_keep_every_chunk(store):
    ds = XASDataset.open(store, mode="a")
    cu = Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    ids = [f"mp-new{i}" for i in range(5)]
    ds.add_materials(ids, [cu] * 5, ["test"] * 5)
    ds.append_spectra("Cu", "FEFF", 8980.0 + np.arange(6.0), ids, [0] * 5, np.ones((5, 6)))
    assert ds.read_features("toy").shape == (15, 3)
    assert verify_store(store).ok


def test_default_store_passes_without_checksums_and_rewrites_identically(tmp_path):
    default = default_dataset_path()
    report = verify_store(default)
    assert report.ok, report.lines()
    assert any("carry no chunk checksums" in str(w) for w in report.warnings)
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0 and "integrity: " in result.output
    copy = tmp_path / "checksummed.zarr"
    result = runner.invoke(app, ["verify", str(default), "--rewrite", str(copy)])
    assert result.exit_code == 0, result.output
    assert not verify_store(copy).findings
    old, new = XASDataset.open(default), XASDataset.open(copy)
    for element, fidelity in old.groups():
        a, b = old.select(element, fidelity), new.select(element, fidelity)
        np.testing.assert_array_equal(a.intensities(), b.intensities())
    assert old.summary() | {"path": ""} == new.summary() | {"path": ""}


def test_legacy_store_missing_chunk_reads_as_zeros_is_refused(tmp_path):
    """The reported case: the default store (no checksums) without its Fe FEFF-fast chunk
    served 82 all-zero Fe spectra to info and the trainer."""
    legacy = tmp_path / "legacy.zarr"
    shutil.copytree(default_dataset_path(), legacy)
    (legacy / "spectra/Fe/FEFF-fast/intensity/c/0/0").unlink()
    with pytest.raises(StoreError, match="spectra/Fe/FEFF-fast/intensity.*serve them as zeros"):
        XASDataset.open(legacy)
    result = runner.invoke(app, ["verify", str(legacy)])
    assert result.exit_code == 2
    assert "82 spectra are all zeros" in result.output
    ds = XASDataset.open(legacy, check=False)
    assert any("Fe/FEFF-fast" in f.array for f in quick_check(ds).errors)
