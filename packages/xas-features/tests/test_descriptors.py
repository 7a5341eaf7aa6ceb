"""Local structure descriptors on textbook crystals with hand-derived values."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xas_features import descriptors as D
from xas_features.descriptors import (
    DESCRIPTOR_KINDS,
    DESCRIPTOR_NAMES,
    POINT_GROUP_ORDERS,
    DescriptorFeaturizer,
    compute_site_descriptors,
    point_group_order,
)
from xas_features.errors import FeaturizerError
from xas_features.featurizers import get_featurizer
from xas_features.featurizers.base import SiteFeaturizer, feature_key

A_NIO = 4.177
A_RUT, C_RUT, X_RUT = 4.594, 2.959, 0.305
A_CU2O = 4.27


@pytest.fixture(scope="module")
def nio() -> Structure:
    """Rocksalt NiO, conventional cell (4 Ni at 0..3, 4 O at 4..7)."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(A_NIO), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


@pytest.fixture(scope="module")
def rutile() -> Structure:
    """Rutile TiO2 (Ti 2a, O 4f with x = 0.305)."""
    return Structure.from_spacegroup(
        "P4_2/mnm",
        Lattice.tetragonal(A_RUT, C_RUT),
        ["Ti", "O"],
        [[0, 0, 0], [X_RUT, X_RUT, 0]],
    )


@pytest.fixture(scope="module")
def cuprite() -> Structure:
    """Cu2O in Pn-3m; pymatgen uses origin choice 1 (O 2a at 000, Cu 4b at 1/4 1/4 1/4)."""
    return Structure.from_spacegroup(
        "Pn-3m", Lattice.cubic(A_CU2O), ["O", "Cu"], [[0, 0, 0], [0.25, 0.25, 0.25]]
    )


@pytest.fixture(scope="module")
def cuzn() -> Structure:
    """B2 (CsCl-type) CuZn: metallic, BVAnalyzer cannot assign valences."""
    return Structure(Lattice.cubic(2.95), ["Cu", "Zn"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def first(structure: Structure, element: str) -> int:
    return next(i for i, s in enumerate(structure) if s.specie.symbol == element)


def brute_shell(structure: Structure, site: int, r_max: float) -> list:
    """Neighbours within r_max by plain distance: an independent reference for the first shell."""
    return structure.get_neighbors(structure[site], r_max)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_structures_are_what_we_think(nio, rutile, cuprite):
    assert nio.composition.reduced_formula == "NiO" and len(nio) == 8
    assert rutile.composition.reduced_formula == "TiO2" and len(rutile) == 6
    assert cuprite.composition.reduced_formula == "Cu2O" and len(cuprite) == 6
    assert rutile.get_space_group_info()[1] == 136
    assert cuprite.get_space_group_info()[1] == 224
    cu = first(cuprite, "Cu")
    assert [n.specie.symbol for n in brute_shell(cuprite, cu, 2.0)] == ["O", "O"]


def test_nio_ni(nio):
    d = compute_site_descriptors(nio, first(nio, "Ni"))
    assert d["OS"] == 2
    assert d["CN"] == 6 and d["OCN"] == 6
    # 6 O neighbours each with 6 Ni: 12 Ni at a/sqrt(2) and 6 Ni at a (absorber excluded)
    assert d["CN2"] == 18
    assert d["NNRS"] == pytest.approx(0.0, abs=1e-6)
    # O-O edge of the regular octahedron with Ni-O = a/2
    assert d["MOOD"] == pytest.approx(A_NIO / 2 * math.sqrt(2), abs=1e-6)
    assert d["PSGO"] == 48  # m-3m
    assert d["NNOSM"] == -2


def test_nio_o_site_has_no_mood(nio):
    d = compute_site_descriptors(nio, first(nio, "O"))
    assert (d["OS"], d["CN"], d["OCN"], d["PSGO"], d["NNOSM"]) == (-2, 6, 0, 48, 2)
    assert math.isnan(d["MOOD"])


def test_rutile_ti(rutile):
    ti = first(rutile, "Ti")
    d = compute_site_descriptors(rutile, ti)
    assert d["OS"] == 4 and d["CN"] == 6 and d["OCN"] == 6
    assert d["PSGO"] == 8  # mmm
    assert d["NNOSM"] == -2
    # distorted octahedron: 2 apical Ti-O = sqrt(2) x a, 4 equatorial
    apical = math.sqrt(2) * X_RUT * A_RUT
    equatorial = math.sqrt(2 * ((0.5 - X_RUT) * A_RUT) ** 2 + (C_RUT / 2) ** 2)
    expected = np.std([apical] * 2 + [equatorial] * 4)
    assert d["NNRS"] > 0.01
    assert d["NNRS"] == pytest.approx(expected, abs=1e-6)
    # MOOD: the shortest O-O among the octahedron found by plain distance (shared edge)
    shell = brute_shell(rutile, ti, 2.1)
    assert len(shell) == 6
    mood = min(np.linalg.norm(a.coords - b.coords) for a, b in combinations(shell, 2))
    assert d["MOOD"] == pytest.approx(mood, abs=1e-6)
    assert d["MOOD"] < A_RUT / 2 * math.sqrt(2)  # the edge shared along c is short
    # Ti neighbours: 2 edge-sharing (along c) + 8 corner-sharing
    assert d["CN2"] == 10


def test_rutile_o(rutile):
    d = compute_site_descriptors(rutile, first(rutile, "O"))
    assert (d["OS"], d["CN"], d["OCN"], d["PSGO"], d["NNOSM"]) == (-2, 3, 0, 4, 4)  # mm2


def test_cuprite(cuprite):
    cu = first(cuprite, "Cu")
    d = compute_site_descriptors(cuprite, cu)
    assert d["OS"] == 1 and d["CN"] == 2 and d["OCN"] == 2
    # linear O-Cu-O with Cu-O = a sqrt(3)/4: the two O are a sqrt(3)/2 apart
    assert d["MOOD"] == pytest.approx(A_CU2O * math.sqrt(3) / 2, abs=1e-6)
    assert d["NNRS"] == pytest.approx(0.0, abs=1e-6)
    assert d["PSGO"] == 12  # -3m
    assert d["NNOSM"] == -2
    assert d["CN2"] == 6  # each O has 4 Cu: 3 others each
    o = compute_site_descriptors(cuprite, first(cuprite, "O"))
    assert (o["OS"], o["CN"], o["PSGO"], o["NNOSM"]) == (-2, 4, 24, 1)  # -43m


def test_bvanalyzer_failure_gives_nan_not_guess(cuzn):
    f = DescriptorFeaturizer()
    x = f.featurize([cuzn, cuzn], [0, 1])
    cols = {n: x[:, i] for i, n in enumerate(DESCRIPTOR_NAMES)}
    assert np.isnan(cols["OS"]).all() and np.isnan(cols["NNOSM"]).all()
    np.testing.assert_array_equal(cols["CN"], [8, 8])
    np.testing.assert_array_equal(cols["OCN"], [0, 0])
    np.testing.assert_array_equal(cols["CN2"], [26, 26])  # the 3x3x3 block of Cu/Zn minus self
    np.testing.assert_array_equal(cols["PSGO"], [48, 48])
    assert np.isnan(cols["MOOD"]).all()
    assert f.failures["OS"] == 2 and f.failures["NNOSM"] == 2
    assert f.failures["CN"] == 0 and f.failures["PSGO"] == 0
    assert f.errors and "BVAnalyzer" in f.errors[0]
    f.reset_failures()
    assert not f.failures and not f.errors


def test_crystalnn_failure_only_hits_dependent_descriptors(nio, monkeypatch):
    f = DescriptorFeaturizer()
    real = f._cnn.get_nn_info

    def flaky(structure, n):
        if n == 1:
            raise RuntimeError("boom")
        return real(structure, n)

    monkeypatch.setattr(f._cnn, "get_nn_info", flaky)
    x = f.featurize([nio, nio], [0, 1])
    ok, bad = (
        dict(zip(DESCRIPTOR_NAMES, x[0], strict=True)),
        dict(zip(DESCRIPTOR_NAMES, x[1], strict=True)),
    )
    assert ok["CN"] == 6 and ok["CN2"] == 18
    assert bad["OS"] == 2 and bad["PSGO"] == 48
    for n in ("CN", "OCN", "CN2", "NNRS", "MOOD", "NNOSM"):
        assert math.isnan(bad[n])
        assert f.failures[n] == 1
    assert "CrystalNN" in f.errors[0]


def test_work_is_done_once_per_structure(nio, monkeypatch):
    f = DescriptorFeaturizer()
    calls: list[int] = []
    real = f._cnn.get_nn_info
    bv_calls: list[int] = []
    real_bv = D.BVAnalyzer.get_valences

    def counting(structure, n):
        calls.append(n)
        return real(structure, n)

    def counting_bv(self, structure):
        bv_calls.append(1)
        return real_bv(self, structure)

    monkeypatch.setattr(f._cnn, "get_nn_info", counting)
    monkeypatch.setattr(D.BVAnalyzer, "get_valences", counting_bv)
    x = f.featurize([nio] * 6, [0, 0, 1, 0, 1, 0])
    assert len(calls) == len(set(calls))  # each site (absorbers and their neighbours) once
    assert {0, 1} <= set(calls) and set(calls) <= set(range(8))
    assert len(bv_calls) == 1
    assert np.isfinite(x).all()


def test_shape_dtype_protocol_and_config(nio, rutile):
    f = DescriptorFeaturizer()
    assert isinstance(f, SiteFeaturizer)
    assert (f.name, f.version, f.dim) == ("descriptors", "1", 8)
    x = f.featurize([nio, rutile, nio], [0, 0, 4])
    assert x.dtype == np.float32 and x.shape == (3, 8)
    assert f.featurize([], []).shape == (0, 8)
    cfg = f.config()
    json.dumps(cfg)
    assert cfg["names"] == list(DESCRIPTOR_NAMES) and "crystalnn" in cfg
    assert feature_key(f).startswith("descriptors-v1-")
    assert feature_key(DescriptorFeaturizer(search_cutoff=6.0)) != feature_key(f)
    assert isinstance(get_featurizer("descriptors"), DescriptorFeaturizer)


def test_subset_of_names_keeps_order(nio):
    full = DescriptorFeaturizer().featurize([nio], [0])[0]
    sub = DescriptorFeaturizer(names=("PSGO", "OS")).featurize([nio], [0])
    assert sub.shape == (1, 2)
    np.testing.assert_array_equal(sub[0], [full[6], full[0]])
    assert DescriptorFeaturizer(names=("MOOD", "CN")).kinds == ["regression", "classification"]
    for bad in (("XX",), (), ("CN", "CN")):
        with pytest.raises(FeaturizerError):
            DescriptorFeaturizer(names=bad)


def test_bad_sites_are_errors(nio):
    f = DescriptorFeaturizer()
    with pytest.raises(FeaturizerError, match="out of range"):
        f.featurize([nio], [8])
    with pytest.raises(FeaturizerError, match="out of range"):
        f.featurize([nio], [-1])
    with pytest.raises(FeaturizerError):
        f.featurize([nio, nio], [0])
    with pytest.raises(FeaturizerError):
        compute_site_descriptors(nio, 99)


def test_deterministic_and_consistent(rutile, cuprite):
    f = DescriptorFeaturizer()
    structures = [rutile, cuprite, rutile, cuprite]
    sites = [0, 2, 3, 0]
    a = f.featurize(structures, sites)
    b = DescriptorFeaturizer().featurize([s.copy() for s in structures], sites)
    np.testing.assert_array_equal(a, b)  # NaNs compare equal here
    row = compute_site_descriptors(cuprite, 2)
    np.testing.assert_array_equal(a[1], np.array([row[n] for n in DESCRIPTOR_NAMES], np.float32))


def test_psgo_in_supercell_and_table(nio, rutile):
    sc = nio * (2, 1, 1)
    assert compute_site_descriptors(sc, 0)["PSGO"] == 48
    assert compute_site_descriptors(rutile * (1, 1, 2), 0)["PSGO"] == 8
    # 1x1x2 cuprite: the tetragonal supercell lattice keeps only 16 of the 48 rotations
    # as integer matrices; PSGO must still be that of the cubic crystal
    cu2o = Structure.from_spacegroup(
        "Pn-3m", Lattice.cubic(A_CU2O), ["O", "Cu"], [[0, 0, 0], [0.25, 0.25, 0.25]]
    ) * (1, 1, 2)
    f = DescriptorFeaturizer(names=("PSGO",))
    np.testing.assert_array_equal(f.featurize([cu2o] * 2, [first(cu2o, "Cu"), 0])[:, 0], [12, 24])
    canonical = {
        "1": 1, "-1": 2, "2": 2, "m": 2, "2/m": 4, "222": 4, "mm2": 4, "mmm": 8,
        "4": 4, "-4": 4, "4/m": 8, "422": 8, "4mm": 8, "-42m": 8, "4/mmm": 16,
        "3": 3, "-3": 6, "32": 6, "3m": 6, "-3m": 12,
        "6": 6, "-6": 6, "6/m": 12, "622": 12, "6mm": 12, "-6m2": 12, "6/mmm": 24,
        "23": 12, "m-3": 24, "432": 24, "-43m": 24, "m-3m": 48,
    }  # fmt: skip
    assert len(canonical) == 32
    for symbol, order in canonical.items():
        assert POINT_GROUP_ORDERS[symbol] == order, symbol
    assert point_group_order("m.mm") == 8 and point_group_order(".-3m") == 12
    assert point_group_order("nonsense") is None


def test_kinds():
    assert set(DESCRIPTOR_KINDS) == set(DESCRIPTOR_NAMES)
    assert {n for n, k in DESCRIPTOR_KINDS.items() if k == "classification"} == {
        "OS", "CN", "OCN", "CN2", "PSGO"
    }  # fmt: skip
