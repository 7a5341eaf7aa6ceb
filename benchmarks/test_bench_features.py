"""xas-features benchmarks: batched M3GNet / CHGNet featurization vs the per-structure loop.

For each featurizer, the same ~40 oxide structures (4 to 40 atoms, several absorbing sites
each) are featurized (a) by ``featurize`` (distinct structures collated into one graph per
forward pass) and (b) by ``per_structure_reference`` (one model call per structure, as
OmniXAS did). The ratio reference time / batched time is measured in the same run and saved
with seconds per material in ``benchmark.extra_info``. Model loading is not timed.

Both paths run with ``XAS_BENCH_TORCH_THREADS`` torch threads (default 1): on a CPU the
forward passes are compute-bound, and with several threads on a loaded machine the many
small per-structure ops mostly measure OpenMP oversubscription (tens of times slower),
not the featurizer. Set e.g. ``XAS_BENCH_TORCH_THREADS=2`` to measure that regime.

Run: ``uv run pytest benchmarks/test_bench_features.py --benchmark-json=benchmarks/results.json -s``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

os.environ.setdefault("HF_HUB_OFFLINE", "1")

N_MATERIALS = 40
SITES_PER_MATERIAL = 4
ROUNDS = 3
THREADS = int(os.environ.get("XAS_BENCH_TORCH_THREADS", "1"))


def _prototypes() -> list[Structure]:
    sg = Structure.from_spacegroup
    return [
        sg("Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        sg("Pn-3m", Lattice.cubic(4.27), ["Cu", "O"], [[0.25, 0.25, 0.25], [0, 0, 0]]),
        sg(
            "C2/c",
            Lattice.monoclinic(4.684, 3.423, 5.129, 99.54),
            ["Cu", "O"],
            [[0.25, 0.25, 0], [0, 0.4184, 0.25]],
        ),
        sg(
            "P4_2/mnm",
            Lattice.tetragonal(4.594, 2.959),
            ["Ti", "O"],
            [[0, 0, 0], [0.305, 0.305, 0]],
        ),
        sg(  # Co3O4 spinel, origin choice 1 (the structure check refuses overlapping atoms)
            "Fd-3m", Lattice.cubic(8.08), ["Co", "Co", "O"], [[0, 0, 0], [0.625] * 3, [0.3875] * 3]
        ).get_primitive_structure(),
        sg("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5] * 3, [0.5, 0.5, 0]]),
        sg(
            "P6_3mc",
            Lattice.hexagonal(3.25, 5.21),
            ["Zn", "O"],
            [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
        ),
        sg(
            "R-3c",
            Lattice.hexagonal(5.035, 13.75),
            ["Fe", "O"],
            [[0, 0, 0.3553], [0.3059, 0, 0.25]],
        ),
    ]


def make_workload() -> tuple[list[Structure], list[int]]:
    """40 distinct structures (prototypes, supercells, small random distortions) and the
    first ``SITES_PER_MATERIAL`` cation sites of each, one row per (structure, site)."""
    rng = np.random.default_rng(0)
    protos = _prototypes()
    structures, sites = [], []
    for i in range(N_MATERIALS):
        structure = protos[i % len(protos)].copy()
        if (i // len(protos)) % 2 == 1 and len(structure) < 20:
            structure.make_supercell([2, 1, 1])
        structure.perturb(0.02 + 0.01 * rng.random())
        cations = [j for j, site in enumerate(structure) if site.specie.symbol != "O"]
        for j in cations[:SITES_PER_MATERIAL]:
            structures.append(structure)
            sites.append(j)
    return structures, sites


@pytest.fixture(scope="module")
def workload() -> tuple[list[Structure], list[int]]:
    return make_workload()


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@pytest.fixture
def torch_threads():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield THREADS
    torch.set_num_threads(before)


def _compare(benchmark, featurizer, structures, sites) -> None:
    n_materials = len({id(s) for s in structures})
    batched = featurizer.featurize(structures, sites)  # warm-up (and the values to compare)
    reference = featurizer.per_structure_reference(structures, sites)
    np.testing.assert_allclose(batched, reference, atol=1e-4, rtol=0)
    result = benchmark.pedantic(featurizer.featurize, args=(structures, sites), rounds=2)
    assert result.shape == (len(sites), featurizer.dim)
    # interleaved best-of-ROUNDS, so slow drifts of the machine load hit both paths
    batched_times, reference_times = [], []
    for _ in range(ROUNDS):
        batched_times.append(_seconds(lambda: featurizer.featurize(structures, sites)))
        reference_times.append(
            _seconds(lambda: featurizer.per_structure_reference(structures, sites))
        )
    batched_s, reference_s = min(batched_times), min(reference_times)
    ratio = reference_s / batched_s
    benchmark.extra_info.update(
        {
            "n_materials": n_materials,
            "n_sites": len(sites),
            "batch_size": featurizer.batch_size,
            "torch_threads": THREADS,
            "batched_s_per_material": batched_s / n_materials,
            "reference_s_per_material": reference_s / n_materials,
            "batched_sites_per_s": len(sites) / batched_s,
            "reference_sites_per_s": len(sites) / reference_s,
            "ratio": ratio,
        }
    )
    print(
        f"\n{featurizer.name}: {n_materials} materials, {len(sites)} sites; batched "
        f"{batched_s / n_materials * 1e3:.1f} ms/material ({len(sites) / batched_s:.0f} sites/s), "
        f"per-structure {reference_s / n_materials * 1e3:.1f} ms/material "
        f"({len(sites) / reference_s:.0f} sites/s); ratio {ratio:.2f}x with {THREADS} torch "
        "thread(s) (target >= 3x)"
    )
    assert ratio > 1


def _m3gnet_dir() -> Path:
    env = os.environ.get("XAS_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    path = root / "m3gnet" / "M3GNet-MP-2021.2.8-PES"
    if not (path / "model.pt").is_file():
        message = f"M3GNet weights not found at {path}: set XAS_SHARED_DATA"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_m3gnet_batched_vs_per_structure(benchmark, workload, torch_threads):
    pytest.importorskip("matgl")
    from xas_features.featurizers.m3gnet import M3GNetFeaturizer

    featurizer = M3GNetFeaturizer(model_path=_m3gnet_dir())
    _compare(benchmark, featurizer, *workload)


def test_chgnet_batched_vs_per_structure(benchmark, workload, torch_threads):
    pytest.importorskip("chgnet")
    from xas_features.featurizers.chgnet import CHGNetFeaturizer

    _compare(benchmark, CHGNetFeaturizer(), *workload)
