"""Featurizers validate their structures (``check_structure``) before any C code sees them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xas_data.errors import StructureError
from xas_data.store import XASDataset
from xas_features import get_featurizer
from xas_features.storage import featurize_dataset

NIO = Structure(Lattice.cubic(4.2), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _nan_structure() -> Structure:
    bad = NIO.copy()
    bad.replace(1, "O", [np.nan, 0.5, 0.5])
    return bad


def test_featurize_refuses_a_nan_coordinate():
    featurizer = get_featurizer("descriptors")
    assert featurizer.featurize([NIO], [0]).shape[0] == 1
    with pytest.raises(StructureError, match="item 0 \\(NiO\\): atom 1 \\(O\\) has a NaN"):
        featurizer.featurize([_nan_structure()], [0])


def test_featurize_dataset_refuses_a_stored_bad_structure(tmp_path):
    ds = XASDataset.create(tmp_path / "s.zarr", "s")
    ds.add_materials(["mp-old"], [json.dumps(_nan_structure().as_dict())], ["old store"])
    energy = 8333.0 + np.arange(5.0)
    ds.append_spectra("Ni", "FEFF", energy, ["mp-old"], [0], np.ones((1, 5)))
    with pytest.raises(StructureError, match="material mp-old in .*NaN or infinite"):
        featurize_dataset(ds.path, get_featurizer("descriptors"), progress=False)
