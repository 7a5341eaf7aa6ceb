"""CHGNet featurizer: shapes, determinism, batched == per-structure CHGNet path, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xas_features.errors import FeaturizerError, MissingExtraError


def nio() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def cu2o() -> Structure:
    return Structure.from_spacegroup(
        "Pn-3m", Lattice.cubic(4.27), ["Cu", "O"], [[0.25, 0.25, 0.25], [0, 0, 0]]
    )  # cuprite, origin choice 1: Cu4 O2


def cuo() -> Structure:
    return Structure.from_spacegroup(
        "C2/c",
        Lattice.monoclinic(4.684, 3.423, 5.129, 99.54),
        ["Cu", "O"],
        [[0.25, 0.25, 0], [0, 0.4184, 0.25]],
    )


@pytest.fixture(scope="module")
def featurizer():
    from xas_features.featurizers.chgnet import CHGNetFeaturizer

    return CHGNetFeaturizer(batch_size=2)


@pytest.fixture(scope="module")
def inputs():
    a, b, c = nio(), cu2o(), cuo()
    structures = [a, a, b, b, b, c, c]
    sites = [0, 3, 0, 3, 5, 1, 7]  # Ni Ni | Cu Cu O | Cu O
    return structures, sites


def test_shape_dtype_determinism_and_reference(featurizer, inputs):
    structures, sites = inputs
    first = featurizer.featurize(structures, sites)
    assert first.shape == (len(sites), 64) and featurizer.dim == 64
    assert first.dtype == np.float32
    assert np.isfinite(first).all() and np.abs(first).max() > 0
    np.testing.assert_array_equal(featurizer.featurize(structures, sites), first)
    reference = featurizer.per_structure_reference(structures, sites)
    np.testing.assert_allclose(first, reference, atol=1e-5, rtol=0)
    # symmetry-equivalent sites (Ni of rocksalt, Cu of cuprite) get the same features
    np.testing.assert_allclose(first[0], first[1], atol=1e-5)
    np.testing.assert_allclose(first[2], first[3], atol=1e-5)
    assert np.abs(first[0] - first[2]).max() > 1e-2
    one = copy.copy(featurizer)
    one.batch_size = 1
    np.testing.assert_allclose(one.featurize(structures, sites), first, atol=1e-5, rtol=0)


def test_reference_matches_predict_structure(featurizer):
    import torch

    structure = cuo()
    with torch.no_grad():
        expected = featurizer.model.predict_structure(structure, task="e", return_atom_feas=True)
    got = featurizer.featurize([structure] * 2, [1, 7])
    np.testing.assert_allclose(got, expected["atom_fea"][[1, 7]], atol=1e-5, rtol=0)


def test_identity_and_config(featurizer, capsys):
    import chgnet

    from xas_features.featurizers.chgnet import CHGNetFeaturizer

    assert featurizer.name == "chgnet"
    assert featurizer.version == f"{chgnet.__version__}-model0.3.0"
    assert featurizer.config()["model"] == "0.3.0"
    assert featurizer.featurize([], []).shape == (0, 64)
    quiet = CHGNetFeaturizer()
    assert quiet.model is not None
    assert capsys.readouterr().out == ""  # CHGNet's load messages are silenced
    with pytest.raises(FeaturizerError, match="unknown CHGNet model 'nope'"):
        CHGNetFeaturizer(model_name="nope")


def test_site_out_of_range(featurizer):
    with pytest.raises(FeaturizerError, match="site index 6 is out of range"):
        featurizer.featurize([cu2o()], [6])
    with pytest.raises(FeaturizerError, match="2 structures but 1 site"):
        featurizer.featurize([cu2o(), nio()], [0])


def test_isolated_absorber(featurizer):
    lone = Structure(Lattice.cubic(30.0), ["Cu"], [[0, 0, 0]])
    with pytest.raises(FeaturizerError, match=r"site 0 \(Cu\).*cutoff of 6 A"):
        featurizer.featurize([nio(), lone], [0, 0])
    with pytest.raises(FeaturizerError, match="no neighbour"):
        featurizer.per_structure_reference([lone], [0])


def test_unknown_element(featurizer):
    americium = Structure(Lattice.cubic(3.6), ["Am"], [[0, 0, 0]])
    with pytest.raises(FeaturizerError, match=r"element Am \(Z=95\) of Am"):
        featurizer.featurize([americium], [0])


def test_missing_extra(monkeypatch):
    import importlib.util

    from xas_features.featurizers import chgnet

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "chgnet" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"xas-features\[chgnet\]"):
        chgnet.CHGNetFeaturizer()
