"""Graph-model benchmarks (CGXAS, XANE(3)) on CPU, 1 torch thread.

* training throughput: forward + backward + Adam step at batch 16, graphs per second;
* inference throughput: forward only (no grad) at batch 64, graphs per second;
* parameter counts, next to the XANE(3) paper's 1.19 M.

Graphs are real crystal graphs of the shipped default dataset (FEFF-fast, all elements; 8 A /
12 neighbours for CGXAS as in Lin et al., 5 A / 12 neighbours for XANE(3) as its r_max). The
reference measured in the same run is the XAS-block MLP (64 -> 400 -> 400 -> 141) on per-site
features at the same batch size: the ratio says how much an end-to-end graph network costs
against a transfer-feature MLP (whose features are computed once, outside the loop).
Run: ``uv run pytest benchmarks/test_bench_graph.py -s``.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BATCH, INFER_BATCH, PAPER_XANE3_PARAMS = 16, 64, 1.19e6
MODELS = {
    "cgxas": ({"cutoff": 8.0, "max_neighbors": 12}, "cgxas", {}),
    "xane3-paper": ({"cutoff": 5.0, "max_neighbors": 12}, "xane3", {}),
    "xane3-cpu": (
        {"cutoff": 5.0, "max_neighbors": 12},
        "xane3",
        {
            "n_layers": 3,
            "irreps_hidden": "16x0e+8x1o+4x2e",
            "radial_hidden": 32,
            "readout_hidden": 128,
        },
    ),
}


def _data(graph: dict):
    from xas_train.config import DataConfig
    from xas_train.data import load_training_data

    cfg = DataConfig(dataset="default", features=["graph"], graph=graph, fidelity="FEFF-fast")
    return load_training_data(cfg)


def _rate(step, n_graphs: int, min_seconds: float = 3.0) -> float:
    step()  # warm-up
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        step()
        count += n_graphs
    return count / (time.perf_counter() - t0)


@pytest.fixture(scope="module")
def reference_rate() -> float:
    from xas_models import XASBlock

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = XASBlock.from_config({"input_dim": 64, "output_dim": 141, "hidden_widths": [400, 400]})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(BATCH, 64), torch.rand(BATCH, 141)

    def step():
        loss = torch.mean((model(x) - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _rate(step, BATCH)


@pytest.mark.parametrize("name", list(MODELS))
def test_graph_model_throughput(benchmark, reference_rate, name):
    import xas_models as xm
    from xas_features.graphs import collate_graphs
    from xas_train.trainer import graph_model_params

    torch.set_num_threads(1)
    graph, arch, user = MODELS[name]
    data = _data(graph)
    torch.manual_seed(0)
    model = xm.build_model(arch, graph_model_params(arch, user, data))
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    graphs = data.train.graphs
    train_batch = collate_graphs(graphs[:BATCH])
    y = torch.from_numpy(data.train.y[:BATCH])
    infer_batch = collate_graphs(graphs[BATCH : BATCH + INFER_BATCH])

    def spectrum(out):
        return out["spectrum"] if isinstance(out, dict) else out

    def train_step():
        loss = torch.mean((spectrum(model(train_batch)) - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer_step():
        with torch.no_grad():
            spectrum(model(infer_batch))

    train_rate = _rate(train_step, BATCH)
    model.eval()
    infer_rate = _rate(infer_step, INFER_BATCH)
    benchmark.pedantic(infer_step, rounds=3)
    atoms = sum(g.num_nodes for g in graphs[:BATCH]) / BATCH
    edges = sum(g.edge_index.shape[1] for g in graphs[:BATCH]) / BATCH
    info = {
        "parameters": n_params,
        "parameters_vs_paper_xane3": n_params / PAPER_XANE3_PARAMS,
        "train_graphs_per_s": train_rate,
        "infer_graphs_per_s": infer_rate,
        "xasblock_train_samples_per_s": reference_rate,
        "train_slowdown_vs_xasblock": reference_rate / train_rate,
        "atoms_per_graph": atoms,
        "edges_per_graph": edges,
    }
    benchmark.extra_info.update(info)
    print(
        f"\n{name}: {n_params / 1e6:.3f} M parameters (XANE(3) paper 1.19 M); train "
        f"{train_rate:.1f} graphs/s at batch {BATCH}, inference {infer_rate:.1f} graphs/s at "
        f"batch {INFER_BATCH}; XAS-block reference {reference_rate:.0f} samples/s "
        f"({reference_rate / train_rate:.0f}x); {atoms:.0f} atoms, {edges:.0f} edges per graph"
    )
    assert train_rate > 0 and infer_rate > train_rate
