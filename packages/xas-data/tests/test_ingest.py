"""Ingest of real public data: OmniXAS Cu FEFF (labels exact), ML arrays, measured spectra."""

from __future__ import annotations

import numpy as np
import pytest

from xas_data.errors import StoreError, XASDataError
from xas_data.ingest import (
    OMNIXAS_FEATURES,
    compare_with_omnixas_arrays,
    ingest_measured,
    ingest_omnixas_cu_feff,
    ingest_omnixas_ml_arrays,
)
from xas_data.store import XASDataset


@pytest.fixture(scope="module")
def cu_store(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cu") / "cu.zarr"
    return ingest_omnixas_cu_feff(shared_data / "omnixas-cu-feff", out)


def test_cu_labels_match_released_omnixas_arrays(cu_store, shared_data):
    n, max_rel, median_rel = compare_with_omnixas_arrays(
        cu_store, shared_data / "omnixas-ml-arrays" / "val_test_arrays.npz"
    )
    assert n == 416  # every released Cu val spectrum is found
    assert max_rel < 1e-4


def test_cu_official_splits_and_structures(cu_store, shared_data):
    counts = cu_store.summary()["counts"]["Cu"]["FEFF"]
    listed = {
        split: sum(
            1
            for line in open(shared_data / f"omnixas-cu-feff/splits/Cu_FEFF_{split}.txt")
            if line.strip()
        )
        for split in ("train", "val")
    }
    assert counts == listed
    train, val = (set(cu_store.select("Cu", "FEFF", s).material_ids()) for s in ("train", "val"))
    assert not train & val
    sel = cu_store.select("Cu", "FEFF", "val")
    sites = sel.sites()
    structure = cu_store.structure(str(sel.material_ids()[0]))
    assert structure[int(sites["index"][0])].specie.symbol == "Cu"


def test_cu_all_sites_curated_by_outlier_removal(shared_data, tmp_path):
    ds = ingest_omnixas_cu_feff(
        shared_data / "omnixas-cu-feff", tmp_path / "all.zarr", only_listed=False
    )
    steps = {p["step"]: p for p in ds.provenance}
    outliers = steps["outlier_removal"]
    assert outliers["n_in"] == 4831
    assert outliers["n_out"] < outliers["n_in"]  # the envelope removes spectra
    assert ds.n_sites == steps["duplicate_removal"]["n_out"]


def test_ml_arrays_with_features(shared_data, tmp_path):
    npz = shared_data / "omnixas-ml-arrays" / "val_test_arrays.npz"
    ds = ingest_omnixas_ml_arrays(npz, tmp_path / "ml.zarr")
    ref = np.load(npz)
    sel = ds.select("Ti", "VASP", "test")
    assert len(sel) == ref["Ti_VASP_test_y"].shape[0]
    np.testing.assert_array_equal(sel.intensities(), ref["Ti_VASP_test_y"])
    np.testing.assert_array_equal(sel.features(OMNIXAS_FEATURES), ref["Ti_VASP_test_X"])
    assert {e for e, _ in ds.groups()} == {"Ti", "V", "Cr", "Co", "Ni", "Cu"}


def test_measured_xaslib_normalised(shared_data, tmp_path):
    ds = ingest_measured(
        shared_data / "experiment/xaslib/xaslib_K_edge.json", tmp_path / "exp.zarr"
    )
    assert ds.n_sites == 88
    sel = ds.select("Cu", "EXP")
    y = sel.intensities()
    # normalised: the post-edge sits near 1, the window ends above the edge
    assert np.all(np.abs(np.median(y[:, -20:], axis=1) - 1.0) < 0.35)
    assert np.all(y >= 0)
    assert np.all(np.isfinite(sel.extra("e0")))


def test_missing_folder_names_the_file(tmp_path):
    with pytest.raises(XASDataError, match="spectra.npz"):
        ingest_omnixas_cu_feff(tmp_path, tmp_path / "x.zarr")


def test_existing_output_is_kept(cu_store, shared_data):
    before = XASDataset.open(cu_store.path).n_sites
    with pytest.raises(StoreError, match="exists"):
        ingest_omnixas_cu_feff(shared_data / "omnixas-cu-feff", cu_store.path)
    assert XASDataset.open(cu_store.path).n_sites == before
