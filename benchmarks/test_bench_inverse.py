"""Inverse-model benchmarks (spectrum -> descriptors) on CPU, 1 torch thread.

* latency: one spectrum per call through :func:`xas_models.predict_descriptors` with a 5-member
  SPT ensemble (interpolation, normalisation, forward), milliseconds per spectrum (the SPT
  paper claims millisecond latency);
* throughput: 10,000 spectra in batches of 1,000 through the ensemble, spectra per second;
* reference measured in the same run: a random-forest baseline (200 trees per descriptor, the
  ``xas_eval.inverse_baselines.TreeBaseline`` default) predicting the same 10,000 spectra.

Run: ``uv run pytest benchmarks/test_bench_inverse.py -s``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

K, N, BATCH, MEMBERS = 141, 10_000, 1_000, 5
TASKS = [
    {"name": "OS", "kind": "classification", "classes": [1, 2, 3, 4, 5, 6]},
    {"name": "CN", "kind": "classification", "classes": [2, 3, 4, 5, 6, 7, 8]},
    {"name": "CN2", "kind": "classification", "classes": list(range(4, 25))},
    {"name": "NNRS", "kind": "regression"},
    {"name": "MOOD", "kind": "regression"},
]


def _spectra(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = np.arange(K) * 0.25
    centre = rng.uniform(6, 14, (n, 1))
    edge = 1 / (1 + np.exp(-(e[None] - centre) / 0.8))
    peak = rng.uniform(0.2, 0.6, (n, 1)) * np.exp(-0.5 * ((e[None] - centre - 4) / 1.5) ** 2)
    return (edge + peak + 0.01 * rng.normal(size=(n, K))).astype(np.float32)


@pytest.fixture(scope="module")
def ensemble():
    from xas_models import CheckpointMeta, EnergyGrid, FeaturizerInfo
    from xas_models.inverse import InverseEnsemble
    from xas_models.registry import build_model

    torch.set_num_threads(1)
    members = []
    for seed in range(MEMBERS):
        torch.manual_seed(seed)
        members.append(build_model("spt", {"input_dim": K, "tasks": TASKS}).eval())
    meta = CheckpointMeta(
        energy_grid=EnergyGrid(start=8983.173, step=0.25, n_points=K),
        elements=["Cu"],
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="spectrum", version="post-edge-normalised", key=""),
    )
    return InverseEnsemble.from_members(members).eval(), meta


def test_latency_one_spectrum(benchmark, ensemble):
    from xas_models import predict_descriptors

    energy = 8983.173 + 0.25 * np.arange(K)
    x = _spectra(50)
    predict_descriptors(x[0], energy, "Cu", model=ensemble)
    t0 = time.perf_counter()
    for row in x:
        predict_descriptors(row, energy, "Cu", model=ensemble)
    per = (time.perf_counter() - t0) / len(x)
    benchmark.pedantic(
        predict_descriptors, args=(x[1], energy, "Cu"), kwargs={"model": ensemble}, rounds=5
    )
    benchmark.extra_info.update({"ms_per_spectrum": per * 1000, "members": MEMBERS})
    n_params = sum(p.numel() for p in ensemble[0].parameters())
    print(
        f"\nlatency: {per * 1000:.1f} ms per spectrum ({MEMBERS}-member SPT ensemble, {n_params} parameters)"
    )


def test_throughput_10000_spectra_vs_random_forest(benchmark, ensemble):
    from xas_eval.inverse_baselines import TreeBaseline

    module, _ = ensemble
    x = _spectra(N, seed=1)
    with torch.no_grad():
        module(torch.from_numpy(x[:BATCH]))
        t0 = time.perf_counter()
        for i in range(0, N, BATCH):
            module(torch.from_numpy(x[i : i + BATCH]))
        spt_s = time.perf_counter() - t0
    train = _spectra(400, seed=2)
    labels = {"OS": np.repeat([2.0, 3.0], 200), "NNRS": np.linspace(0.0, 0.1, 400)}
    kinds = {"OS": "classification", "NNRS": "regression"}
    rf = TreeBaseline("rf", seed=0).fit(train, labels, kinds)
    t0 = time.perf_counter()
    rf.predict(x)
    rf_s = time.perf_counter() - t0
    benchmark.pedantic(lambda: module(torch.from_numpy(x[:BATCH])), rounds=3)
    benchmark.extra_info.update(
        {"spt_spectra_per_s": N / spt_s, "rf_spectra_per_s": N / rf_s, "spt_vs_rf": rf_s / spt_s}
    )
    print(
        f"\nthroughput: 10,000 spectra in {spt_s:.2f} s = {N / spt_s:.0f} spectra/s "
        f"({MEMBERS}-member SPT ensemble, batches of {BATCH}); random forest (2 descriptors, "
        f"200 trees each) {rf_s:.2f} s = {N / rf_s:.0f} spectra/s"
    )
