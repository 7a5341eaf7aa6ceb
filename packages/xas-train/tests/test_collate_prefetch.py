"""Graph batches collated one step ahead in a background thread equal direct collation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from xas_train.data import SplitArrays
from xas_train.trainer import ModelInputs

pytest.importorskip("torch_geometric")


def _split(n: int) -> SplitArrays:
    from xas_features.graphs import CrystalGraphConfig, build_crystal_graph

    config = CrystalGraphConfig(cutoff=4.0, max_neighbors=8)
    graphs = [
        build_crystal_graph(
            Structure(Lattice.cubic(3.5 + 0.05 * i), ["Cu", "O"], [[0, 0, 0], [0.5] * 3]),
            [i % 2],
            config,
        )
        for i in range(n)
    ]
    y = np.zeros((n, 4), np.float32)
    return SplitArrays(np.zeros((n, 0), np.float32), y, np.full(n, "Cu"), np.arange(n), graphs)


def test_prefetched_batches_equal_direct_ones_in_order():
    inputs = ModelInputs(_split(12), torch.device("cpu"), torch.float32)
    rows = [torch.tensor(r) for r in ([0, 3, 5], [11, 2], [7, 7, 1, 4], [9, 8])]
    threads: set[str] = set()
    original = ModelInputs.__call__

    def spy(self, r):
        threads.add(threading.current_thread().name)
        return original(self, r)

    ModelInputs.__call__ = spy
    try:
        got = list(inputs.prefetch(rows))
    finally:
        ModelInputs.__call__ = original
    assert len(got) == len(rows)
    assert any(name.startswith("xas-collate") for name in threads)  # off the main thread
    for batch, r in zip(got, rows, strict=True):
        expected = inputs(r)
        assert batch.num_graphs == len(r)
        for key in ("x", "edge_index", "edge_vec", "absorber_mask", "batch"):
            assert torch.equal(batch[key], expected[key]), key


def test_prefetch_of_features_is_plain_indexing():
    split = SplitArrays(
        np.arange(12, dtype=np.float32).reshape(6, 2),
        np.zeros((6, 3), np.float32),
        np.full(6, "Cu"),
        np.arange(6),
    )
    inputs = ModelInputs(split, torch.device("cpu"), torch.float32)
    rows = [torch.tensor([1, 2]), torch.tensor([5])]
    for batch, r in zip(inputs.prefetch(rows), rows, strict=True):
        assert torch.equal(batch, inputs.x[r])
