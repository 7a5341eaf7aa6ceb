"""xas-data benchmarks.

* random mini-batch reads (batch 256) from a Zarr store vs the same rows of an in-memory
  numpy array (ratio = zarr time / numpy time, same run);
* FEFF10 ``fast`` seconds per site on a real oxide (NiO rocksalt).

Run: ``uv run pytest benchmarks --benchmark-json=benchmarks/results.json``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xas_data.store import XASDataset
from xas_data.structures import MaterialRecord

N_ROWS, N_POINTS, BATCH = 20_000, 141, 256


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.zarr"
    ds = XASDataset.create(path, "bench")
    structure = Structure(Lattice.cubic(4.2), ["Cu", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ids = [f"m{i}" for i in range(N_ROWS)]
    ds.add_materials(ids, [structure] * N_ROWS, ["bench"] * N_ROWS)
    values = np.random.default_rng(0).random((N_ROWS, N_POINTS), dtype=np.float32)
    ds.append_spectra("Cu", "FEFF", 8983.0 + 0.25 * np.arange(N_POINTS), ids, [0] * N_ROWS, values)
    return XASDataset.open(path), values


def _time_per_call(fn, repeats: int) -> float:
    start = time.perf_counter()
    for i in range(repeats):
        fn(i)
    return (time.perf_counter() - start) / repeats


def test_random_batch_read_vs_numpy(benchmark, store):
    ds, in_memory = store
    selection = ds.select("Cu", "FEFF")
    rng = np.random.default_rng(1)
    batches = [rng.choice(N_ROWS, BATCH, replace=False) for _ in range(64)]

    def zarr_read(i):
        return selection.intensities(batches[i % len(batches)])

    def numpy_read(i):
        return in_memory[batches[i % len(batches)]]

    np.testing.assert_array_equal(zarr_read(0), numpy_read(0))
    result = benchmark.pedantic(zarr_read, args=(0,), rounds=20, iterations=1)
    assert result.shape == (BATCH, N_POINTS)
    zarr_s = _time_per_call(zarr_read, 20)
    numpy_s = _time_per_call(numpy_read, 200)
    ratio = zarr_s / numpy_s
    benchmark.extra_info.update(
        {"zarr_ms_per_batch": zarr_s * 1e3, "numpy_ms_per_batch": numpy_s * 1e3, "ratio": ratio}
    )
    print(
        f"\nbatch {BATCH} random rows: zarr {zarr_s * 1e3:.2f} ms, numpy {numpy_s * 1e3:.3f} ms, ratio {ratio:.0f}x"
    )
    # a regression guard, not a target: reading from compressed chunks on disk costs more
    assert ratio < 5000
    # the in-memory path of iter_batches: one read of the selection, then numpy indexing
    start = time.perf_counter()
    n = sum(len(b.site_rows) for b in selection.iter_batches(BATCH, shuffle=True, in_memory=True))
    epoch_s = time.perf_counter() - start
    assert n == N_ROWS
    per_batch = epoch_s / (N_ROWS / BATCH)
    benchmark.extra_info["in_memory_epoch_ms_per_batch"] = per_batch * 1e3
    print(f"in-memory shuffled epoch: {per_batch * 1e3:.2f} ms per batch (load included)")


def test_feff_fast_seconds_per_site(benchmark, tmp_path):
    pytest.importorskip("feff10")
    from xas_data.simulation import plan_tasks, run_simulations

    nio = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    tasks = plan_tasks(
        [MaterialRecord("nio", nio.get_primitive_structure(), "bench")], "Ni", tmp_path
    )

    def run():
        for path in tmp_path.glob("fast/results/*"):
            path.unlink()
        return run_simulations(tasks, tmp_path, "fast", workers=1, progress=False)

    report = benchmark.pedantic(run, rounds=1, iterations=1)
    assert report.done == 1
    benchmark.extra_info["seconds_per_site"] = report.site_seconds[0]
    print(f"\nFEFF fast: {report.site_seconds[0]:.1f} s per site (NiO)")
