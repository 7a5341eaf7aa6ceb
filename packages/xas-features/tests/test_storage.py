"""Storing features in a dataset: keys, skip-if-present, --force, sharded ranks."""

from __future__ import annotations

import numpy as np
import pytest

from xas_data.store import XASDataset
from xas_features.errors import FeaturizerError
from xas_features.featurizers.base import check_sites, feature_key
from xas_features.storage import featurize_dataset, find_features


class NeighbourDistances:
    """A small real featurizer: the 6 shortest distances (Angstrom) from the site."""

    name = "nndist"
    version = "1"
    dim = 6

    def __init__(self, cutoff: float = 6.0) -> None:
        self.cutoff = cutoff
        self.calls = 0

    def config(self):
        return {"cutoff": self.cutoff}

    def featurize(self, structures, sites):
        check_sites(structures, sites)
        self.calls += 1
        out = []
        for structure, site in zip(structures, sites, strict=True):
            d = sorted(n.nn_distance for n in structure.get_neighbors(structure[site], self.cutoff))
            out.append(d[:6])
        return np.asarray(out, dtype=np.float32)


def test_features_in_row_order_and_skip(small_store):
    featurizer = NeighbourDistances()
    key = featurize_dataset(small_store.path, featurizer, progress=False)
    assert key == feature_key(featurizer) and key.startswith("nndist-v1-")
    ds = XASDataset.open(small_store.path)
    values = ds.read_features(key)
    assert values.shape == (ds.n_sites, 6) and not np.isnan(values).any()
    # row order: the NiO rows hold a/2 six times
    nio = ds.select("Ni", "FEFF")
    np.testing.assert_allclose(nio.features(key), 4.177 / 2, rtol=1e-5)
    attrs = ds.feature_attrs(key)
    assert attrs["complete"] and attrs["config"] == {"cutoff": 6.0}
    assert ds.provenance[-1]["step"] == "featurize"
    calls = featurizer.calls
    featurize_dataset(small_store.path, featurizer, progress=False)
    assert featurizer.calls == calls  # skipped: already present
    featurize_dataset(small_store.path, featurizer, force=True, progress=False)
    assert featurizer.calls > calls
    # another config is another key
    other = featurize_dataset(small_store.path, NeighbourDistances(cutoff=5.0), progress=False)
    assert other != key
    assert find_features(XASDataset.open(small_store.path), "nndist") in (key, other)


def test_missing_features_error_names_the_command(small_store):
    with pytest.raises(FeaturizerError, match="xas-features featurize"):
        find_features(small_store, "chgnet")


def test_shards_written_by_two_ranks_equal_one(small_store, tmp_path, monkeypatch):
    """Ranks run one after the other here (no process group needed for disjoint writes)."""
    import shutil

    single = tmp_path / "single.zarr"
    shutil.copytree(small_store.path, single)
    key = featurize_dataset(single, NeighbourDistances(), progress=False)
    ds = XASDataset.open(small_store.path, mode="a")
    featurizer = NeighbourDistances()
    ds.create_features(feature_key(featurizer), 6, {"featurizer": "nndist"})
    for rank in (1, 0):
        lo, hi = ds.shard_rows(2, rank)
        cols = ds.sites(np.arange(lo, hi), ("material", "index"))
        structures = [ds.structure(int(m)) for m in cols["material"]]
        ds.write_rows(
            f"features/{key}/values", lo, featurizer.featurize(structures, cols["index"].tolist())
        )
    np.testing.assert_array_equal(ds.read_features(key), XASDataset.open(single).read_features(key))


def test_bad_site_index_error():
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(4), ["Cu"], [[0, 0, 0]])
    with pytest.raises(FeaturizerError, match="out of range"):
        check_sites([s], [3])


def test_soap_pca_fitted_on_train_and_state_saved(small_store):
    pytest.importorskip("dscribe")
    from xas_features.featurizers.dscribe_pca import SOAPFeaturizer
    from xas_features.storage import load_state

    featurizer = SOAPFeaturizer(n_max=4, l_max=3)
    key = featurize_dataset(small_store.path, featurizer, progress=False)
    ds = XASDataset.open(small_store.path)
    values = ds.read_features(key)
    assert values.shape == (ds.n_sites, featurizer.dim) and np.isfinite(values).all()
    state = load_state(ds, key)
    # every element of the store is a species (Cu only occurs in the val split)
    assert set(state["species"]) == {"O", "Ti", "Co", "Ni", "Cu"}
    rebuilt = SOAPFeaturizer.from_state(featurizer.config(), state)
    cols = ds.sites(columns=("material", "index"))
    structures = [ds.structure(int(m)) for m in cols["material"]]
    np.testing.assert_allclose(
        rebuilt.featurize(structures, cols["index"].tolist()), values, rtol=1e-4, atol=1e-4
    )
    # the PCA mean is the mean of the raw descriptors of the training rows only
    train = np.flatnonzero(ds.sites(columns=("split",))["split"] == "train")
    raw = featurizer.raw_descriptors([structures[i] for i in train], cols["index"][train].tolist())
    np.testing.assert_allclose(state["mean"], raw.mean(axis=0), rtol=1e-4, atol=1e-5)
