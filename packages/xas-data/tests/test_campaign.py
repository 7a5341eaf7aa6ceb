"""The FEFF campaign: its plan (both structure sources, accurate subset of whole materials)
and its archive (pack, unpack, resume without re-running anything)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xas_data.campaign import (
    CampaignRecipe,
    grid_coverage,
    pack_campaign,
    plan_campaign,
    read_plan,
    simulation_costs,
    unpack_campaign,
)
from xas_data.simulation.presets import get_preset
from xas_data.simulation.runner import SimulationReport, SiteTask, _todo


def _fake_workdir(workdir: Path) -> list[SiteTask]:
    tasks = [SiteTask(f"m{i}", "Ni", i, 1, "synthetic") for i in range(5)]
    (workdir / "structures").mkdir(parents=True)
    plan = {"recipe": {}, "fast": [t.__dict__ for t in tasks], "accurate": []}
    (workdir / "campaign-plan.json").write_text(json.dumps(plan))
    for t in tasks:
        (workdir / "structures" / f"{t.material_id}.json").write_text('{"source": "x"}')
    results, failures = workdir / "fast" / "results", workdir / "fast" / "failures"
    results.mkdir(parents=True)
    failures.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in tasks[:4]:  # 4 done, with FEFF-like ragged point counts
        energy = np.sort(8330 + rng.random(100 + t.site_index) * 70)
        np.savez(
            results / f"{t.task_id}.npz",
            energy=energy,
            mu=rng.random(energy.size),
            mu0=rng.random(energy.size),
            chi=rng.random(energy.size),
            xsedge_norm=np.float64(1e-4 * (t.site_index + 1)),
        )
        (results / f"{t.task_id}.json").write_text(json.dumps(t.__dict__ | {"task_id": t.task_id}))
    failure = tasks[4].__dict__ | {"task_id": tasks[4].task_id, "error": "pot", "traceback": "..."}
    (failures / f"{tasks[4].task_id}.json").write_text(json.dumps(failure))
    return tasks


def test_pack_unpack_restores_results_and_failures(tmp_path):
    tasks = _fake_workdir(tmp_path / "a")
    counts = pack_campaign(tmp_path / "a", tmp_path / "c.npz")
    assert counts == {"fast": 4, "accurate": 0}
    assert unpack_campaign(tmp_path / "c.npz", tmp_path / "b") == {"fast": 4}
    for t in tasks[:4]:
        with np.load(tmp_path / f"a/fast/results/{t.task_id}.npz") as a:
            with np.load(tmp_path / f"b/fast/results/{t.task_id}.npz") as b:
                np.testing.assert_array_equal(a["energy"], b["energy"])
                np.testing.assert_array_equal(a["xsedge_norm"], b["xsedge_norm"])
                # float32 in the archive
                np.testing.assert_allclose(a["mu"], b["mu"], rtol=1e-6)
    assert read_plan(tmp_path / "b") == read_plan(tmp_path / "a")
    # a resumed run finds nothing to do: 4 done, 1 recorded failure
    report = SimulationReport()
    assert _todo(tasks, tmp_path / "b", get_preset("fast"), False, report) == []
    assert report.skipped == 5
    # unpacking again writes nothing and keeps what is there
    assert unpack_campaign(tmp_path / "c.npz", tmp_path / "b") == {"fast": 0}
    assert not list((tmp_path).glob(".c.npz*"))


def test_read_plan_without_a_plan_is_explained(tmp_path):
    from xas_data.errors import StructureError

    with pytest.raises(StructureError, match="campaign plan"):
        read_plan(tmp_path)


@pytest.mark.shared
@pytest.mark.slow
def test_plan_takes_both_sources_and_whole_materials_for_accurate(shared_data, tmp_path):
    recipe = CampaignRecipe(
        elements=("Ni", "Co"), fast_per_element=30, accurate_per_element=6, max_atoms=24
    )
    fast, accurate = plan_campaign(tmp_path, shared_data, recipe)
    sources = {t.source.split(":")[0] for t in fast}
    assert sources == {"materials-project", "amcsd"}
    for element in ("Ni", "Co"):
        mine = [t for t in fast if t.element == element]
        assert 0 < len(mine) <= 30
        acc = [t for t in accurate if t.element == element]
        assert 0 < len(acc) <= 6 and set(acc) <= set(mine)
    assert [t.element for t in fast[:2]] == ["Ni", "Co"]  # interleaved across elements
    assert all((tmp_path / "structures" / f"{t.material_id}.json").exists() for t in fast)
    again = plan_campaign(tmp_path, shared_data, recipe)
    assert again == (fast, accurate)


def test_costs_count_results_failures_and_cpu_time(tmp_path):
    _fake_workdir(tmp_path)
    meta = tmp_path / "fast" / "results" / "Ni_m0_000.json"
    meta.write_text(json.dumps(json.loads(meta.read_text()) | {"cpu_seconds": 7200.0}))
    (row,) = simulation_costs(tmp_path)
    assert (row["preset"], row["element"], row["results"], row["failures"]) == ("fast", "Ni", 4, 1)
    assert row["cpu_hours"] == pytest.approx(2.0) and row["wall_only"] == 3


def test_grid_coverage_reports_the_share_of_edges_inside(tmp_path):
    from pymatgen.core import Lattice, Structure

    from xas_data.schema import EnergyGrid
    from xas_data.store import XASDataset

    ds = XASDataset.create(tmp_path / "s.zarr", "s")
    ds.add_materials(["a", "b"], [Structure(Lattice.cubic(4), ["Ni"], [[0, 0, 0]])] * 2, ["x"] * 2)
    grid = EnergyGrid(8330.0, 0.5, 161)
    e0 = np.array([8340.0, 8332.0])  # the second edge is only 2 eV inside
    ds.append_spectra(
        "Ni", "FEFF-fast", grid.energies, ["a", "b"], [0, 0], np.ones((2, 161)), extras={"e0": e0}
    )
    (row,) = grid_coverage(ds)
    assert row["spectra"] == 2 and row["edges_inside"] == 0.5 and "161 pts" in row["grid"]
