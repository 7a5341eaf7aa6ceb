"""Building a curated store from FEFF results, and re-curating a store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xas_data.build import (
    CurationConfig,
    build_from_simulations,
    curate_store,
    omnixas_resample,
    regrid_store,
)
from xas_data.curation import BOHR_RADIUS_ANGSTROM
from xas_data.errors import StoreError
from xas_data.schema import default_grid
from xas_data.simulation.runner import SiteTask, save_structures
from xas_data.store import XASDataset
from xas_data.structures import MaterialRecord


def _fake_result(workdir, preset, task: SiteTask, energy, mu, xsedge=2.5e-4):
    results = workdir / preset / "results"
    results.mkdir(parents=True, exist_ok=True)
    np.savez(
        results / f"{task.task_id}.npz",
        energy=energy,
        mu=mu,
        mu0=mu,
        chi=mu * 0,
        xsedge_norm=xsedge,
    )
    meta = task.__dict__ | {"task_id": task.task_id}
    (results / f"{task.task_id}.json").write_text(json.dumps(meta))


@pytest.fixture
def sim_dir(tmp_path):
    """40 materials with one Cu site each on FEFF-like grids; one outlier, one duplicate."""
    rng = np.random.default_rng(0)
    records = [
        MaterialRecord(
            f"m{i:02d}",
            Structure(Lattice.cubic(4 + 0.01 * i), ["Cu", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
            "synthetic",
        )
        for i in range(40)
    ]
    save_structures(records, tmp_path)
    energy = np.linspace(8980.0, 9030.0, 170)
    previous = None
    for i, record in enumerate(records):
        edge = 8988 + rng.normal(0, 0.5)
        mu = (
            1
            + np.arctan((energy - edge) / 1.0) / np.pi
            + 0.02 * np.sin(energy / (3 + rng.random()))
        )
        if i == 7:
            mu = mu * 3.0  # an outlier
        if i == 9:  # an exact duplicate of material 8's spectrum
            mu = previous
        previous = mu
        _fake_result(tmp_path, "fast", SiteTask(record.material_id, "Cu", 0), energy, mu)
    return tmp_path


def test_build_curates_and_splits(sim_dir, tmp_path):
    ds = build_from_simulations(sim_dir, tmp_path / "out.zarr", presets=("fast",))
    steps = {p["step"]: p for p in ds.provenance}
    assert steps["outlier_removal"]["n_in"] == 40 and steps["outlier_removal"]["n_out"] == 39
    assert steps["duplicate_removal"]["n_out"] == 38
    assert ds.n_sites == 38 and ds.n_materials == 38
    sel = ds.select("Cu", "FEFF-fast")
    assert "m07" not in set(sel.material_ids()) and "m09" not in set(sel.material_ids())
    # the grid is edge-anchored: every edge >= 5 eV inside, >= 60 eV above the median E0
    grid = sel.energy
    e0 = sel.extra("e0")
    assert np.all(e0 >= grid[0] + 5) and grid[-1] >= np.median(e0) + 60 and grid.size <= 256
    np.testing.assert_allclose(e0, 8988, atol=2.5)  # the arctan edges were placed at 8988 +- 0.5
    # labels: 1000 * mu * xsedge / a0^2, cropped and clamped as OmniXAS; raw spectra kept beside
    row = list(sel.material_ids()).index("m00")
    with np.load(sim_dir / "fast/results/Cu_m00_000.npz") as r:
        expected = omnixas_resample(
            r["energy"], 1000 * r["mu"] * 2.5e-4 / BOHR_RADIUS_ANGSTROM**2, grid
        )
        np.testing.assert_array_equal(sel.extra("raw_energy")[row], r["energy"])
        np.testing.assert_allclose(sel.extra("raw_mu")[row], r["mu"], rtol=1e-6)
    np.testing.assert_allclose(sel.intensities()[row], expected, rtol=1e-6)
    # material-level splits, roughly 80/10/10
    splits = {
        s: set(ds.select("Cu", "FEFF-fast", s).material_ids()) for s in ("train", "val", "test")
    }
    assert not (splits["train"] & splits["val"]) and not (splits["train"] & splits["test"])
    assert len(splits["train"]) >= 28 and len(splits["val"]) >= 3 and len(splits["test"]) >= 3


def test_existing_store_untouched(sim_dir, tmp_path):
    out = tmp_path / "out.zarr"
    build_from_simulations(sim_dir, out, presets=("fast",))
    with pytest.raises(StoreError, match="exists"):
        build_from_simulations(sim_dir, out, presets=("fast",))
    assert XASDataset.open(out).n_sites == 38


def test_curate_store_keeps_source_and_splits(sim_dir, tmp_path):
    src = build_from_simulations(
        sim_dir,
        tmp_path / "raw.zarr",
        presets=("fast",),
        config=CurationConfig(remove_outliers=False, duplicate_rtol=0.0),
    )
    assert src.n_sites == 39  # only the exact duplicate dropped
    new = curate_store(
        src.path, tmp_path / "cur.zarr", CurationConfig(outlier_c=2.5), keep_splits=True
    )
    assert new.n_sites == 38
    assert XASDataset.open(src.path).n_sites == 39
    old = dict(zip(src.select("Cu").material_ids(), src.select("Cu").sites()["split"], strict=True))
    for mid, split in zip(
        new.select("Cu").material_ids(), new.select("Cu").sites()["split"], strict=True
    ):
        assert old[mid] == split


def test_omnixas_grid_that_cuts_edges_is_refused(sim_dir, tmp_path):
    """Edges at ~8988 eV sit < 5 eV above a grid starting at 8985 eV: curation names the group."""
    config = CurationConfig(grid="omnixas", grid_starts={"Cu": 8985.0})
    with pytest.raises(StoreError, match=r"Cu FEFF-fast: .* cuts the edge of \d+ of 40 spectra"):
        build_from_simulations(sim_dir, tmp_path / "cut.zarr", presets=("fast",), config=config)
    assert not (tmp_path / "cut.zarr").exists()
    ok = build_from_simulations(
        sim_dir,
        tmp_path / "low.zarr",
        presets=("fast",),
        config=CurationConfig(grid="omnixas", grid_starts={"Cu": 8975.0}),
    )
    np.testing.assert_allclose(ok.select("Cu").energy, default_grid("Cu", {"Cu": 8975.0}).energies)


def test_regrid_rederives_grids_from_raw_spectra_and_keeps_rows(sim_dir, tmp_path):
    src = build_from_simulations(sim_dir, tmp_path / "a.zarr", presets=("fast",))
    new = regrid_store(src.path, tmp_path / "b.zarr", CurationConfig(grid_above_ev=70.0))
    a, b = src.select("Cu"), new.select("Cu")
    assert list(a.material_ids()) == list(b.material_ids())
    assert list(a.sites()["split"]) == list(b.sites()["split"])
    assert b.energy[-1] >= np.median(b.extra("e0")) + 70 > a.energy[-1]
    # on the energies both grids share, the spectra agree (same raw spectra, same recipe)
    common = np.intersect1d(np.round(a.energy, 3), np.round(b.energy, 3))
    ia = np.searchsorted(np.round(a.energy, 3), common)
    ib = np.searchsorted(np.round(b.energy, 3), common)
    assert common.size >= 20  # the two steps (e.g. 0.30 and 0.35 eV) share every 2.1 eV
    np.testing.assert_allclose(a.intensities()[:, ia], b.intensities()[:, ib], rtol=1e-5)
    # in place: same content as a regrid into a new folder
    same = regrid_store(src.path, src.path, CurationConfig(grid_above_ev=70.0))
    np.testing.assert_array_equal(same.select("Cu").intensities(), b.intensities())


def test_regrid_refuses_a_store_without_raw_spectra(tmp_path):
    ds = XASDataset.create(tmp_path / "plain.zarr", "plain")
    ds.add_materials(["m"], [Structure(Lattice.cubic(4), ["Cu"], [[0, 0, 0]])], ["x"])
    ds.append_spectra("Cu", "FEFF-fast", default_grid("Cu").energies, ["m"], [0], np.ones((1, 141)))
    with pytest.raises(StoreError, match="keeps no raw spectra"):
        regrid_store(ds.path, tmp_path / "out.zarr")


def test_elements_share_one_grid_length_for_universal_models(sim_dir, tmp_path):
    """A second element with a wider spread of edges: each keeps its own start, all share the
    step and the number of points."""
    rng = np.random.default_rng(3)
    energy = np.linspace(8325.0, 8400.0, 180)
    for i in range(12):
        record = MaterialRecord(
            f"n{i:02d}",
            Structure(Lattice.cubic(4.2 + 0.01 * i), ["Ni", "O"], [[0, 0, 0], [0.5] * 3]),
            "x",
        )
        save_structures([record], sim_dir)
        mu = 1 + np.arctan((energy - 8340 - rng.normal(0, 4)) / 1.0) / np.pi
        _fake_result(sim_dir, "fast", SiteTask(record.material_id, "Ni", 0), energy, mu)
    ds = build_from_simulations(sim_dir, tmp_path / "two.zarr", presets=("fast",))
    cu, ni = ds.select("Cu").energy, ds.select("Ni").energy
    assert cu.size == ni.size and np.isclose(cu[1] - cu[0], ni[1] - ni[0])
    assert cu[0] != ni[0]
    for element in ("Cu", "Ni"):
        sel = ds.select(element)
        assert np.all(sel.extra("e0") >= sel.energy[0] + 5)
