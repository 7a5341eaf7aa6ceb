"""Inverse-problem data loading from the shipped default store."""

from __future__ import annotations

import numpy as np
import pytest

from xas_eval.inverse_data import DESCRIPTOR_KINDS, InverseData, load_inverse_data


@pytest.fixture(scope="module")
def store():
    from xas_data import open_default_dataset

    return open_default_dataset()


@pytest.fixture(scope="module")
def data(store):
    return load_inverse_data(store)


def test_counts_per_split_equal_the_store(store, data):
    assert set(data) == {"train", "val", "test"}
    elements = sorted({e for e, f in store.groups() if f == "FEFF-fast"})
    assert data.elements == elements
    for split, d in data.items():
        assert isinstance(d, InverseData) and d.split == split
        expected = {e: len(store.select(e, "FEFF-fast", split)) for e in elements}
        assert len(d) == sum(expected.values())
        got = {e: int((d.element == e).sum()) for e in elements}
        assert got == expected
        assert d.spectra.shape == (len(d), 141) and d.spectra.dtype == np.float32
        assert len(set(d.site_ids.tolist())) == len(d)
        assert all(d.energy[e].shape == (141,) for e in d.elements)
    assert data["train"].energy_step == pytest.approx(0.25)


def test_labels_match_stored_descriptors_and_are_nan_where_missing(store, data):
    key = data.feature_key
    names = store.feature_attrs(key)["config"]["names"]
    assert data.names == names
    d = data["train"]
    stored = store.read_features(key, d.site_rows).astype(np.float64)
    for j, name in enumerate(names):
        np.testing.assert_array_equal(np.isnan(d.labels[name]), np.isnan(stored[:, j]))
        np.testing.assert_array_equal(d.labels[name], stored[:, j])
    assert np.isnan(d.labels["MOOD"]).any() and np.isnan(d.labels["OS"]).any()
    assert data.kinds == {n: DESCRIPTOR_KINDS[n] for n in names}
    os_train = d.labels["OS"]
    assert data.classes["OS"] == sorted(set(os_train[np.isfinite(os_train)].tolist()))
    assert set(data.classes) == {n for n in names if data.kinds[n] == "classification"}


def test_kinds_table_agrees_with_xas_features():
    from xas_features.descriptors import DESCRIPTOR_KINDS as reference

    assert DESCRIPTOR_KINDS == reference


def test_spectra_are_post_edge_normalised(store, data):
    d = data["test"]
    np.testing.assert_allclose(d.spectra[:, -20:].mean(axis=1), 1.0, rtol=1e-5)
    element = d.elements[0]
    raw = store.select(element, "FEFF-fast", "test").intensities().astype(np.float64)
    level = raw[:, -20:].mean(axis=1, keepdims=True)
    np.testing.assert_allclose(d.spectra[d.element == element], raw / level, rtol=1e-5)


def test_subsets_of_elements_descriptors_and_splits(store):
    d = load_inverse_data(store, elements=["Fe", "Cu"], descriptors=["OS", "NNRS"])
    assert d.names == ["OS", "NNRS"] and d.kinds == {"OS": "classification", "NNRS": "regression"}
    assert d["train"].elements == ["Cu", "Fe"] and set(d["train"].energy) == {"Cu", "Fe"}
    sub = d["train"].subset(d["train"].element == "Fe")
    assert sub.elements == ["Fe"] and len(sub) == len(store.select("Fe", "FEFF-fast", "train"))


def test_clear_errors(store, tmp_path):
    with pytest.raises(ValueError, match="unknown descriptor.*FOO"):
        load_inverse_data(store, descriptors=["OS", "FOO"])
    # Cr has no FEFF-fast test spectra in the default store
    with pytest.raises(ValueError, match="test split.*empty.*splits="):
        load_inverse_data(store, elements=["Cr"])
    d = load_inverse_data(store, elements=["Cr"], splits=["train", "val"])
    assert set(d) == {"train", "val"}
    with pytest.raises(ValueError, match="FEFF-nope"):
        load_inverse_data(store, fidelity="FEFF-nope")
    with pytest.raises(ValueError, match="Xx"):
        load_inverse_data(store, elements=["Xx"])


def test_store_without_descriptors_names_the_fix(tmp_path):
    from xas_data.store import XASDataset

    ds = XASDataset.create(tmp_path / "empty.zarr", name="empty")
    with pytest.raises(ValueError, match="xas-features featurize"):
        load_inverse_data(ds)
