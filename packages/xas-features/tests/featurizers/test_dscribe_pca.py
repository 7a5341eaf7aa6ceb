"""ACSF/SOAP + PCA featurizers: PCA fitted on training sites only, state round trip, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xas_features.errors import FeaturizerError
from xas_features.featurizers import get_featurizer

dscribe_pca = pytest.importorskip("xas_features.featurizers.dscribe_pca")
pytest.importorskip("dscribe")


def _rocksalt(cation: str, a: float) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), [cation, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


NIO = _rocksalt("Ni", 4.177)
COO = _rocksalt("Co", 4.26)
RUTILE = Structure.from_spacegroup(
    "P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]
)
# Co3O4 spinel (origin choice 1: Co 8a and 16d, O 32e at x = 0.3875); the earlier "spinel" put
# O at 0.26 with Co at 1/8, which made atoms 0.23 A apart: the structure check now refuses it
SPINEL = Structure.from_spacegroup(
    "Fd-3m", Lattice.cubic(8.08), ["Co", "Co", "O"], [[0, 0, 0], [0.625] * 3, [0.3875] * 3]
).get_primitive_structure()
CUPRITE = Structure.from_spacegroup(
    "Pn-3m", Lattice.cubic(4.27), ["Cu", "O"], [[0, 0, 0], [0.75, 0.75, 0.75]]
)

# training rows: every site of NiO (conventional), rutile and CoO; held-out rows: spinel
TRAIN = [(s, i) for s in (NIO, RUTILE, COO) for i in range(len(s))]
HELD_OUT = [(SPINEL, i) for i in (0, 1, 5, 6, 13)]


def _split(rows):
    return [s for s, _ in rows], [i for _, i in rows]


@pytest.fixture(scope="module", params=["acsf", "soap"])
def fitted(request):
    featurizer = get_featurizer(request.param)
    return featurizer.fit(*_split(TRAIN))


def test_pca_reaches_explained_variance_and_dim(fitted):
    structures, sites = _split(TRAIN)
    state = fitted.state()
    assert sum(state["explained_variance_ratio"]) >= 0.99
    assert fitted.dim == state["n_components"] == len(state["components"])
    assert state["species"] == ["O", "Ti", "Co", "Ni"]  # training elements, sorted by Z
    assert state["raw_dim"] == fitted.raw_dim == len(state["mean"])
    features = fitted.featurize(structures, sites)
    assert features.shape == (len(sites), fitted.dim) and features.dtype == np.float32
    # the kept components really carry >= 99 % of the training variance
    raw = fitted.raw_descriptors(structures, sites)
    captured = features.astype(np.float64).var(axis=0).sum() / raw.var(axis=0).sum()
    assert captured >= 0.99 - 1e-5
    # one fewer component would not reach the threshold (fewest components kept)
    assert sum(state["explained_variance_ratio"][:-1]) < 0.99


def test_pca_mean_is_mean_of_training_descriptors_only(fitted):
    structures, sites = _split(TRAIN)
    mean = np.asarray(fitted.state()["mean"])
    np.testing.assert_allclose(mean, fitted.raw_descriptors(structures, sites).mean(axis=0))
    everything = _split(TRAIN + HELD_OUT)
    assert not np.allclose(mean, fitted.raw_descriptors(*everything).mean(axis=0))


def test_state_round_trip_gives_identical_features(fitted):
    config = json.loads(json.dumps(fitted.config()))
    state = json.loads(json.dumps(fitted.state()))
    rebuilt = type(fitted).from_state(config, state)
    assert rebuilt.dim == fitted.dim and rebuilt.config() == fitted.config()
    rows = _split(HELD_OUT + TRAIN[:3])
    np.testing.assert_array_equal(rebuilt.featurize(*rows), fitted.featurize(*rows))
    fresh = get_featurizer(fitted.name).load_state(state)
    np.testing.assert_array_equal(fresh.featurize(*rows), fitted.featurize(*rows))


def test_unseen_element_names_it_and_the_fix(fitted):
    with pytest.raises(FeaturizerError, match=r"\['Cu'\].*refit including"):
        fitted.featurize([NIO, CUPRITE], [0, 0])


def test_out_of_range_site_and_length_mismatch(fitted):
    with pytest.raises(FeaturizerError, match="out of range"):
        fitted.featurize([NIO], [len(NIO)])
    with pytest.raises(FeaturizerError, match="one site per structure"):
        fitted.featurize([NIO, NIO], [0])


@pytest.mark.parametrize("name", ["acsf", "soap"])
def test_featurize_before_fit_says_fit_on_training_split(name):
    featurizer = get_featurizer(name)
    with pytest.raises(FeaturizerError, match="fit.*training split first"):
        featurizer.featurize([NIO], [0])
    with pytest.raises(FeaturizerError, match="training split first"):
        _ = featurizer.dim
    with pytest.raises(FeaturizerError, match="training split first"):
        featurizer.state()


def test_explicit_species_raw_dims_and_max_components():
    acsf = get_featurizer("acsf", species=["O", "Ni"], max_components=1)
    soap = get_featurizer("soap", species=["Ni", "O"])
    # ACSF: S (1 + n_G2) + S (S + 1) / 2 n_G4 ; SOAP mu1nu1: S n_max^2 (l_max + 1)
    assert acsf.raw_dim == 2 * (1 + 8) + 3 * 4
    assert soap.raw_dim == 2 * 8**2 * 7
    assert acsf.config()["species"] == ["O", "Ni"]
    assert acsf.version.startswith("dscribe") and acsf.version.endswith("-pca")
    with pytest.raises(FeaturizerError, match=r"contain \['Ti'\]"):
        acsf.fit([RUTILE, NIO], [0, 0])  # species given explicitly: Ti is not among them
    acsf.fit([NIO, NIO, NIO], [0, 4, 1])
    assert acsf.dim == 1 and acsf.featurize([NIO], [5]).shape == (1, 1)


def test_module_import_is_lazy():
    code = (
        "import sys, xas_features.featurizers.dscribe_pca;"
        "assert 'dscribe' not in sys.modules and 'ase' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
