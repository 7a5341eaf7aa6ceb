"""M3GNet featurizer: shapes, determinism, batched == per-structure matgl path, errors."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xas_features.errors import FeaturizerError, MissingExtraError

os.environ["HF_HUB_OFFLINE"] = "1"  # matgl would otherwise spend ~45 s on DNS look-ups

MODEL = "M3GNet-MP-2021.2.8-PES"


def _model_dir() -> Path:
    env = os.environ.get("XAS_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[4].parent / "shared" / "data"
    path = root / "m3gnet" / MODEL
    if not (path / "model.pt").is_file():
        message = f"M3GNet weights not found at {path}: set XAS_SHARED_DATA"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


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
    from xas_features.featurizers.m3gnet import M3GNetFeaturizer

    return M3GNetFeaturizer(model_path=_model_dir(), batch_size=2)


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
    # another batch composition gives the same features up to rounding
    one = copy.copy(featurizer)
    one.batch_size = 1
    np.testing.assert_allclose(one.featurize(structures, sites), first, atol=1e-5, rtol=0)


def test_pruned_blocks_match_reference(featurizer):
    """A Cu chain (2.5 A spacing, 40 A period): each block reaches two more atoms along the
    chain, so every block of the batched forward is pruned to a different bond subset."""
    chain = Structure(
        Lattice.orthorhombic(40.0, 12.0, 12.0),
        ["Cu"] * 16,
        [[i / 16, 0.5, 0.5] for i in range(16)],
    )
    sites = [0, 5]
    batched = featurizer.featurize([chain, chain, nio()], [*sites, 0])
    reference = featurizer.per_structure_reference([chain, chain, nio()], [*sites, 0])
    np.testing.assert_allclose(batched, reference, atol=1e-5, rtol=0)


def test_config_is_independent_of_weight_location(featurizer, monkeypatch):
    from xas_features.featurizers.m3gnet import M3GNetFeaturizer

    config = featurizer.config()
    assert config["model"] == MODEL and "batch_size" not in config
    assert str(_model_dir()) not in str(config)
    monkeypatch.setenv("XAS_M3GNET_MODEL", str(_model_dir()))
    from_env = M3GNetFeaturizer(batch_size=2)
    assert from_env.model_path == _model_dir() and from_env.config() == config
    assert featurizer.name == "m3gnet" and featurizer.version.startswith("matgl")
    assert featurizer.featurize([], []).shape == (0, 64)


def test_site_out_of_range(featurizer):
    with pytest.raises(FeaturizerError, match="out of range"):
        featurizer.featurize([nio()], [8])


def test_isolated_absorber(featurizer):
    lone = Structure(Lattice.cubic(30.0), ["Cu"], [[0, 0, 0]])
    with pytest.raises(FeaturizerError, match=r"site 0 \(Cu\).*cutoff of 5 A"):
        featurizer.featurize([lone], [0])
    with pytest.raises(FeaturizerError, match="no neighbour"):
        featurizer.per_structure_reference([lone], [0])


def test_unknown_element(featurizer):
    polonium = Structure(Lattice.cubic(3.359), ["Po"], [[0, 0, 0]])  # alpha-Po
    assert "Po" not in featurizer.model.element_types
    with pytest.raises(FeaturizerError, match="element Po of Po"):
        featurizer.featurize([nio(), polonium], [0, 0])


def test_missing_model_folder(tmp_path, monkeypatch):
    from xas_features.featurizers.m3gnet import M3GNetFeaturizer

    missing = tmp_path / "nowhere"
    with pytest.raises(FeaturizerError, match=f"{missing}.*does not exist.*XAS_M3GNET_MODEL"):
        M3GNetFeaturizer(model_path=missing)
    monkeypatch.setenv("XAS_M3GNET_MODEL", str(tmp_path))
    with pytest.raises(FeaturizerError, match=r"\$XAS_M3GNET_MODEL\) lacks model.json"):
        M3GNetFeaturizer()


def test_missing_extra(monkeypatch):
    import importlib.util

    from xas_features.featurizers import m3gnet

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matgl" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"xas-features\[m3gnet\]"):
        m3gnet.M3GNetFeaturizer()


def test_module_import_is_light():
    code = (
        "import sys, xas_features.featurizers.m3gnet, xas_features.featurizers.chgnet;"
        "print(sorted(m for m in ('torch', 'matgl', 'chgnet') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
