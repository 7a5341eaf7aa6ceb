"""The shipped default dataset: counts, coverage, fidelity pairing, splits, size."""

from __future__ import annotations

import numpy as np

import xas_data
from xas_data.cli import default_dataset_path


def test_counts_and_coverage():
    ds = xas_data.open_default_dataset()
    cols = ds.sites(columns=("element", "fidelity"))
    fast = cols["fidelity"] == "FEFF-fast"
    accurate = cols["fidelity"] == "FEFF-accurate"
    assert fast.sum() >= 400
    assert accurate.sum() >= 100
    assert len(set(cols["element"][fast]) & {"Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu"}) >= 6


def test_accurate_sites_are_a_subset_of_fast_sites():
    ds = xas_data.open_default_dataset()
    cols = ds.sites(columns=("material", "index", "fidelity"))
    keys = {f: set() for f in ("FEFF-fast", "FEFF-accurate")}
    for m, i, f in zip(cols["material"], cols["index"], cols["fidelity"], strict=True):
        keys[str(f)].add((int(m), int(i)))
    overlap = keys["FEFF-accurate"] & keys["FEFF-fast"]
    # curation may drop the fast twin of a few sites; the rest are shared
    assert len(overlap) >= 0.9 * len(keys["FEFF-accurate"])


def test_splits_by_material_and_spectra_valid():
    ds = xas_data.open_default_dataset()
    cols = ds.sites(columns=("material", "split"))
    split_of: dict[int, str] = {}
    for m, s in zip(cols["material"], cols["split"], strict=True):
        assert split_of.setdefault(int(m), str(s)) == str(s)
    assert set(split_of.values()) == {"train", "val", "test"}
    for selection in ds.iter_selections():
        y = selection.intensities()
        assert np.isfinite(y).all() and (y >= 0).all()
        assert selection.energy.size == 141
    steps = [p["step"] for p in ds.provenance]
    for step in ("source", "omnixas_label_scale", "outlier_removal", "duplicate_removal", "split"):
        assert step in steps


def test_size_within_budget():
    total = sum(p.stat().st_size for p in default_dataset_path().rglob("*") if p.is_file())
    assert total < 15 * 1024 * 1024
