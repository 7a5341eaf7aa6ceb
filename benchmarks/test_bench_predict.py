"""``xas_models.predict`` benchmarks with a zoo model (CHGNet features + XAS block):

* latency: one structure per call, warm (model and featurizer loaded), seconds per material;
* throughput: 1,000 structures in one batched call (symmetry analysis + featurization of
  every inequivalent Cu site + one forward pass), materials per second.

Both against OmniXAS's published 0.16 s per material. 1 torch thread.
Run: ``uv run pytest benchmarks/test_bench_predict.py -s``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL = "xasblock-chgnet-omnixas-cu-feff-expert"
ZOO = Path(__file__).resolve().parents[1] / "model-zoo"
OMNIXAS_S = 0.16


@pytest.fixture(scope="module")
def structures():
    from pymatgen.core import Lattice, Structure

    sg = Structure.from_spacegroup
    protos = [
        sg(
            "C2/c",
            Lattice.monoclinic(4.684, 3.423, 5.129, 99.54),
            ["Cu", "O"],
            [[0.25, 0.25, 0], [0, 0.4184, 0.25]],
        ),
        sg("Pn-3m", Lattice.cubic(4.27), ["Cu", "O"], [[0.25, 0.25, 0.25], [0, 0, 0]]),
        sg("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]]),
        sg("F-43m", Lattice.cubic(5.41), ["Cu", "Cl"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    ]
    out = []
    for i in range(1000):
        s = protos[i % len(protos)].copy()
        s.scale_lattice(s.volume * (0.97 + 0.06 * (i % 50) / 50))
        out.append(s)
    return out


@pytest.fixture(scope="module")
def model():
    from xas_models import load_pretrained

    torch.set_num_threads(1)
    return load_pretrained(MODEL, zoo=ZOO)


def test_predict_latency_one_structure(benchmark, structures, model):
    from xas_models import predict

    predict(structures[0], "Cu", model=model)  # warm: featurizer loaded
    one = structures[:20]
    t0 = time.perf_counter()
    for s in one:
        predict(s, "Cu", model=model)
    per = (time.perf_counter() - t0) / len(one)
    benchmark.pedantic(predict, args=(structures[1], "Cu"), kwargs={"model": model}, rounds=5)
    benchmark.extra_info.update({"seconds_per_material": per, "vs_omnixas": OMNIXAS_S / per})
    print(
        f"\nlatency: {per * 1000:.1f} ms per material, one per call "
        f"({OMNIXAS_S / per:.1f}x faster than OmniXAS's 160 ms)"
    )


def test_predict_throughput_1000_structures(benchmark, structures, model):
    from xas_models import predict

    predict(structures[:8], "Cu", model=model)
    t0 = time.perf_counter()
    result = predict(structures, "Cu", model=model)
    seconds = time.perf_counter() - t0
    assert len(result) == 1000
    benchmark.pedantic(predict, args=(structures[:100], "Cu"), kwargs={"model": model}, rounds=1)
    benchmark.extra_info.update({"materials_per_second": 1000 / seconds, "seconds": seconds})
    print(
        f"\nthroughput: 1000 structures in {seconds:.1f} s = {1000 / seconds:.0f} materials/s "
        f"= {seconds:.1f} ms per material (OmniXAS 160 ms)"
    )
