"""The datasets this project ships in ``datasets/``: intact, edge-anchored, split by material,
with their licences and raw spectra."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xas_data.campaign import CAMPAIGN_NAME, grid_coverage
from xas_data.store import XASDataset
from xas_data.verify import verify_store

STORE = Path(__file__).parents[1] / "datasets" / CAMPAIGN_NAME / f"{CAMPAIGN_NAME}.zarr"


@pytest.fixture(scope="module")
def campaign_store() -> XASDataset:
    assert STORE.is_dir(), f"{STORE} is missing: build it with `xas-data campaign-build`"
    return XASDataset.open(STORE)


def test_campaign_store_is_intact(campaign_store):
    report = verify_store(STORE)
    assert report.ok, [str(f) for f in report.errors]
    assert not [w for w in report.warnings if "checksum" in str(w)]


def test_every_grid_holds_99_percent_of_its_edges_5_ev_inside(campaign_store):
    rows = grid_coverage(campaign_store)
    assert {r["element"] for r in rows} == {"Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu"}
    for row in rows:
        assert row["edges_inside"] >= 0.99, row
    for selection in campaign_store.iter_selections():
        energy = selection.energy
        assert energy[-1] >= np.median(selection.extra("e0")) + 60 and energy.size <= 256
        raw = selection.extra("raw_energy")
        assert raw.shape[0] == len(selection) and np.isfinite(raw[:, 0]).all()


def test_split_by_material_with_sources_and_licences(campaign_store):
    sites = campaign_store.sites(columns=("material", "split"))
    per_material = {}
    for material, split in zip(sites["material"], sites["split"], strict=True):
        per_material.setdefault(int(material), set()).add(str(split))
    assert all(len(s) == 1 for s in per_material.values())
    assert {"train", "val", "test"} <= set(sites["split"].tolist())
    license = campaign_store.attrs["license"]
    assert "CC-BY-4.0" in license and "Materials Project" in license and "AMCSD" in license
    sources = {str(s).split(":")[0] for s in campaign_store.root["materials/source"][:]}
    assert sources == {"materials-project", "amcsd"}
