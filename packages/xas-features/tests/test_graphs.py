"""Crystal graphs: neighbour lists, truncation, edge geometry, invariance, node features."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from xas_features.errors import FeaturizerError
from xas_features.graphs import (
    CrystalGraphConfig,
    build_crystal_graph,
    collate_graphs,
    node_feature_names,
)

pytest.importorskip("torch_geometric")

A_NIO = 4.177
NIO = Structure.from_spacegroup(
    "Fm-3m", Lattice.cubic(A_NIO), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
)
# a low-symmetry crystal (monoclinic cell, distorted rutile-like sites, three species)
LOWSYM = Structure(
    Lattice.from_parameters(4.7, 4.5, 3.1, 90, 97, 90),
    ["Ti", "Fe", "O", "O", "O", "O"],
    [
        [0.01, 0.02, 0.0],
        [0.49, 0.51, 0.52],
        [0.31, 0.29, 0.03],
        [0.70, 0.69, 0.01],
        [0.81, 0.21, 0.49],
        [0.19, 0.80, 0.51],
    ],
)


def _signatures(graph, species=True, decimals=4) -> Counter:
    """Multiset over nodes of (own Z, sorted incoming (neighbour Z, distance)) tuples."""
    src, dst = graph.edge_index.numpy()
    z = graph.z.numpy()
    dist = np.round(graph.edge_dist.numpy().astype(np.float64), decimals)
    out = Counter()
    for i in range(graph.num_nodes):
        sel = dst == i
        items = zip(z[src[sel]], dist[sel], strict=True) if species else zip(dist[sel])
        out[(int(z[i]), tuple(sorted(tuple(map(float, t)) for t in items)))] += 1
    return out


def test_rocksalt_nio_six_neighbours_at_half_a():
    # a / sqrt(2) = 2.954 A < 3.0 A: at a 3.0 A cutoff the 12 Ni-Ni / O-O neighbours are in too
    wider = build_crystal_graph(NIO, config=CrystalGraphConfig(cutoff=3.0, max_neighbors=None))
    assert np.bincount(wider.edge_index[1].numpy()).tolist() == [18] * 8
    graph = build_crystal_graph(NIO, config=CrystalGraphConfig(cutoff=2.5))
    src, dst = graph.edge_index.numpy()
    assert graph.num_nodes == len(NIO) == 8
    assert np.bincount(dst, minlength=8).tolist() == [6] * 8
    np.testing.assert_allclose(graph.edge_dist.numpy(), A_NIO / 2, rtol=1e-6)
    z = graph.z.numpy()
    assert (z[src] != z[dst]).all()  # Ni-O only
    assert graph.edge_index.dtype.is_floating_point is False and graph.x.shape == (8, 111)
    assert not graph.absorber_mask.any()


def test_max_neighbors_truncation_and_ties():
    full = build_crystal_graph(NIO, config=CrystalGraphConfig(cutoff=4.0, max_neighbors=None))
    cut = build_crystal_graph(NIO, config=CrystalGraphConfig(cutoff=4.0, max_neighbors=10))
    ties = build_crystal_graph(
        NIO, config=CrystalGraphConfig(cutoff=4.0, max_neighbors=10, include_ties=True)
    )
    # shells: 6 at a/2, 12 at a/sqrt(2), 8 at a sqrt(3)/2
    assert np.bincount(full.edge_index[1].numpy()).tolist() == [26] * 8
    assert np.bincount(cut.edge_index[1].numpy()).tolist() == [10] * 8
    assert np.bincount(ties.edge_index[1].numpy()).tolist() == [18] * 8
    d = cut.edge_dist.numpy().reshape(8, 10)  # sorted by target, then distance
    np.testing.assert_allclose(d[:, :6], A_NIO / 2, rtol=1e-6)
    np.testing.assert_allclose(d[:, 6:], A_NIO / np.sqrt(2), rtol=1e-6)
    # deterministic: same input, same edges
    again = build_crystal_graph(NIO, config=CrystalGraphConfig(cutoff=4.0, max_neighbors=10))
    assert (again.edge_index == cut.edge_index).all() and (again.edge_image == cut.edge_image).all()


def test_edge_vectors_follow_the_shift_convention():
    graph = build_crystal_graph(LOWSYM, absorber_sites=[1], config=CrystalGraphConfig(cutoff=6.0))
    src, dst = graph.edge_index
    shift = graph.edge_image.double() @ graph.cell[0].double()
    np.testing.assert_allclose(graph.edge_shift.numpy(), shift.numpy(), atol=1e-5)
    vec = graph.pos[src] + graph.edge_shift - graph.pos[dst]
    np.testing.assert_allclose(graph.edge_vec.numpy(), vec.numpy(), atol=1e-4)
    np.testing.assert_allclose(graph.edge_dist.numpy(), vec.norm(dim=1).numpy(), atol=1e-4)
    assert graph.edge_dist.max() <= 6.0 and graph.edge_dist.min() > 0.5
    assert graph.absorber_mask.tolist() == [False, True, False, False, False, False]
    assert graph.edge_vec.dtype == graph.pos.dtype == graph.edge_dist.dtype
    assert graph.cell.shape == (1, 3, 3)


def _rotated(s: Structure) -> Structure:
    op = SymmOp.from_axis_angle_and_translation((1.0, 2.0, 3.0), 37.0, translation_vec=(0, 0, 0))
    return s.copy().apply_operation(op)


def _translated(s: Structure) -> Structure:
    out = s.copy()
    out.translate_sites(
        list(range(len(s))), [0.37, -1.21, 2.9], frac_coords=False, to_unit_cell=False
    )
    return out


def _permuted(s: Structure) -> Structure:
    order = np.random.default_rng(0).permutation(len(s))
    return Structure.from_sites([s[int(i)] for i in order])


def _supercell(s: Structure) -> Structure:
    return s.make_supercell([[1, 1, 0], [0, 2, 0], [0, 0, 1]], in_place=False)  # det 2


@pytest.mark.parametrize("transform", [_rotated, _translated, _permuted, _supercell])
def test_graph_is_invariant(transform):
    other = transform(LOWSYM)
    factor = len(other) // len(LOWSYM)
    configs = {
        "all within cutoff": (CrystalGraphConfig(cutoff=5.0, max_neighbors=None), True),
        "12 nearest, ties kept": (CrystalGraphConfig(cutoff=6.0, include_ties=True), True),
        "12 nearest (default)": (CrystalGraphConfig(), False),  # distances only
    }
    for label, (config, species) in configs.items():
        ref = _signatures(build_crystal_graph(LOWSYM, config=config), species)
        got = _signatures(build_crystal_graph(other, config=config), species)
        assert got == Counter({k: v * factor for k, v in ref.items()}), label


def test_isolated_atom_names_site_and_cutoff():
    # Fe is 7.8 A from the O pair and 9 A from its own images
    lonely = Structure(
        Lattice.cubic(9.0), ["Fe", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.7]]
    )
    with pytest.raises(FeaturizerError, match=r"site 0 \(Fe\).*cutoff 3.0 A; raise"):
        build_crystal_graph(lonely, config=CrystalGraphConfig(cutoff=3.0))
    with pytest.raises(FeaturizerError, match="out of range"):
        build_crystal_graph(NIO, absorber_sites=[8])


def test_node_features_period_and_valence():
    feo = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.33), ["Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    graph = build_crystal_graph(feo, config=CrystalGraphConfig(cutoff=3.5))
    names = node_feature_names()
    x = {name: graph.x[:, k].numpy() for k, name in enumerate(names)}
    fe, o = feo.indices_from_symbol("Fe")[0], feo.indices_from_symbol("O")[0]
    assert x["Z=26"][fe] == 1 and graph.x[fe, :100].sum() == 1
    assert x["period=4"][fe] == 1 and graph.x[fe, 100:107].sum() == 1
    assert (x["valence_s"][fe], x["valence_p"][fe], x["valence_d"][fe]) == (2, 0, 6)
    assert (x["valence_s"][o], x["valence_p"][o], x["valence_d"][o]) == (2, 4, 0)
    assert x["period=2"][o] == 1 and x["valence_f"].sum() == 0
    assert graph.x.dtype == graph.pos.dtype and len(names) == CrystalGraphConfig().node_dim


def test_self_loops_and_batch_sizes():
    a = build_crystal_graph(NIO, [0, 1], CrystalGraphConfig(cutoff=2.5, self_loops=True))
    assert a.edge_index.shape[1] == 8 * 7 and int((a.edge_dist == 0).sum()) == 8
    b = build_crystal_graph(LOWSYM, [0], CrystalGraphConfig(cutoff=3.0))
    batch = collate_graphs([a, b])
    assert batch.num_graphs == 2 and batch.num_nodes == 14
    assert batch.x.shape == (14, 111) and batch.cell.shape == (2, 3, 3)
    assert batch.edge_index.shape[1] == a.edge_index.shape[1] + b.edge_index.shape[1]
    assert batch.edge_index[:, a.edge_index.shape[1] :].min() >= 8  # offset by graph a
    assert int(batch.absorber_mask.sum()) == 3 and batch.batch.tolist() == [0] * 8 + [1] * 6
    with pytest.raises(FeaturizerError, match="at least one"):
        collate_graphs([])


def test_module_import_does_not_pull_torch():
    code = "import sys, xas_features.graphs; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _same_graph(a, b) -> None:
    assert set(a.keys()) == set(b.keys()) and a.num_nodes == b.num_nodes
    for key in a.keys():
        va, vb = a[key], b[key]
        if not hasattr(va, "dtype"):  # num_nodes
            assert va == vb, key
            continue
        assert va.dtype == vb.dtype and bool((va == vb).all()), key


def test_site_graphs_equal_one_build_per_site():
    from xas_features.graphs import build_site_graphs

    config = CrystalGraphConfig(cutoff=5.0, max_neighbors=8)
    sites = [1, 0, 4]
    graphs = build_site_graphs(LOWSYM, sites, config)
    assert len(graphs) == 3
    for site, graph in zip(sites, graphs, strict=True):
        _same_graph(graph, build_crystal_graph(LOWSYM, [site], config))
        assert graph.absorber_mask.nonzero().flatten().tolist() == [site]
    with pytest.raises(FeaturizerError, match="out of range"):
        build_site_graphs(LOWSYM, [6], config)


def test_material_edges_parallel_and_cached_equal_serial(tmp_path, monkeypatch):
    import xas_features.graphs as graphs

    config = CrystalGraphConfig(cutoff=5.0, max_neighbors=12)
    structures = [LOWSYM, NIO, _permuted(LOWSYM), NIO.copy()] * 3
    monkeypatch.setattr(graphs, "PARALLEL_MIN_STRUCTURES", 2)
    serial = graphs.material_edges(structures, config, workers=1, cache_dir=None)
    parallel = graphs.material_edges(structures, config, workers=2, cache_dir=tmp_path)
    for a, b in zip(serial, parallel, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    # one file per distinct (settings, structure): NIO and its copy share one
    assert len(list(tmp_path.glob("*.npz"))) == 3

    def no_search(*_args, **_kwargs):
        raise AssertionError("neighbour search despite a cached result")

    monkeypatch.setattr(graphs, "neighbor_edges", no_search)
    cached = graphs.material_edges(structures, config, workers=1, cache_dir=tmp_path)
    for a, b in zip(serial, cached, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    # other settings are other keys: computed, not read
    with pytest.raises(AssertionError, match="neighbour search"):
        graphs.material_edges([NIO], CrystalGraphConfig(cutoff=6.0), 1, tmp_path)


def test_damaged_cache_entry_is_recomputed(tmp_path):
    import xas_features.graphs as graphs

    config = CrystalGraphConfig(cutoff=5.0)
    (expected,) = graphs.material_edges([NIO], config, workers=1, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(b"not an npz")
    (again,) = graphs.material_edges([NIO], config, workers=1, cache_dir=tmp_path)
    for x, y in zip(expected, again, strict=True):
        np.testing.assert_array_equal(x, y)
    assert graphs._read_cached(entry) is not None  # rewritten


def test_cache_folder_from_environment(monkeypatch, tmp_path):
    from xas_features.graphs import default_cache_dir

    monkeypatch.setenv("XAS_GRAPH_CACHE", "off")
    assert default_cache_dir() is None
    monkeypatch.setenv("XAS_GRAPH_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("XAS_GRAPH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "xas-features" / "graphs"
