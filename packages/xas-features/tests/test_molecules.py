"""Featurizers on non-periodic input (pymatgen ``Molecule``): ACSF without periodic images,
CHGNet and M3GNet on the molecule boxed in vacuum, unchanged when the box grows."""

from __future__ import annotations

import numpy as np
import pytest

from xas_data.molecules import boxed, parse_xyz
from xas_features.featurizers import get_featurizer

FECO5 = """11
Fe(CO)5
Fe 0.000 0.000 0.000
C 1.810 0.000 0.000
C -1.810 0.000 0.000
C 0.000 1.800 0.000
C -0.900 -1.560 0.000
C 0.000 0.000 1.830
O 2.960 0.000 0.000
O -2.960 0.000 0.000
O 0.000 2.950 0.000
O -1.475 -2.555 0.000
O 0.000 0.000 2.980
"""


@pytest.fixture(scope="module")
def molecules():
    first = parse_xyz(FECO5, "a", absorber="Fe")
    second = parse_xyz(FECO5.replace("C 0.000 1.800", "C 0.000 1.950"), "b", absorber="Fe")
    return [first, second]


def test_acsf_of_a_molecule_has_no_periodic_images(molecules):
    featurizer = get_featurizer("acsf", r_cut=6.0, max_components=2)
    featurizer.fit(molecules, [0, 0])
    raw = featurizer.raw_descriptors(molecules, [0, 0])
    assert np.all(np.isfinite(raw)) and not np.allclose(raw[0], raw[1])
    # a tight periodic box (images within r_cut) changes the descriptor; a molecule has none,
    # so it equals the periodic descriptor of a box with vacuum beyond r_cut
    loose = featurizer.raw_descriptors([boxed(m, 7.0) for m in molecules], [0, 0])
    tight = featurizer.raw_descriptors([boxed(m, 2.5) for m in molecules], [0, 0])
    np.testing.assert_allclose(raw, loose, rtol=1e-9, atol=1e-12)
    assert not np.allclose(raw, tight)
    assert featurizer.featurize(molecules, [0, 0]).shape == (2, featurizer.dim)


@pytest.mark.parametrize("name", ["chgnet", "m3gnet"])
def test_transfer_features_do_not_change_when_the_box_grows(name, molecules, shared_data):
    config = {}
    if name == "m3gnet":
        config["model_path"] = str(shared_data / "m3gnet" / "M3GNet-MP-2021.2.8-PES")
    featurizer = get_featurizer(name, **config)
    direct = featurizer.featurize(molecules, [0, 0])
    for vacuum in (10.0, 30.0):
        grown = featurizer.featurize([boxed(m, vacuum) for m in molecules], [0, 0])
        np.testing.assert_allclose(direct, grown, rtol=1e-4, atol=1e-5)
    assert not np.allclose(direct[0], direct[1])
