"""Forward-ensemble prediction time against one member, in the same run.

The ensemble is five copies of the published OmniXAS Cu CHGNet expert (800-800-800 XAS
blocks, the architecture of the published ensemble; timing does not depend on the weights).
``predict`` featurizes once for all members, so the ensemble should cost at most 1.5x one
member (issue 15):

* per material: one structure per call (warm), 20 structures;
* batched: 200 structures in one call.

1 torch thread. Run: ``uv run pytest benchmarks/test_bench_ensemble.py -s``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MEMBER = "xasblock-chgnet-omnixas-cu-feff-expert"
ZOO = Path(__file__).resolve().parents[1] / "model-zoo"
N_MEMBERS = 5
GOAL = 1.5


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
    ]
    out = []
    for i in range(200):
        s = protos[i % len(protos)].copy()
        s.scale_lattice(s.volume * (0.97 + 0.06 * (i % 50) / 50))
        out.append(s)
    return out


@pytest.fixture(scope="module")
def models():
    """``(one member, ensemble of N_MEMBERS)`` as ``(module, meta)`` pairs."""
    from xas_models import load_pretrained
    from xas_models.forward_ensemble import ForwardEnsemble

    torch.set_num_threads(1)
    member, meta = load_pretrained(MEMBER, zoo=ZOO)
    ensemble = ForwardEnsemble.from_members([member] * N_MEMBERS, member=meta.architecture)
    return (member, meta), (ensemble, meta)


def _seconds(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _report(benchmark, kind: str, one: float, ens: float, per: int) -> None:
    ratio = ens / one
    benchmark.extra_info.update(
        {f"{kind}_member_s": one / per, f"{kind}_ensemble_s": ens / per, f"{kind}_ratio": ratio}
    )
    print(
        f"\n{kind}: one member {one / per * 1000:.1f} ms/material, {N_MEMBERS}-member ensemble "
        f"{ens / per * 1000:.1f} ms/material: {ratio:.2f}x (goal <= {GOAL}x)"
    )
    assert ratio <= GOAL


def test_ensemble_per_material_vs_one_member(benchmark, structures, models):
    from xas_models import predict

    member, ensemble = models
    predict(structures[0], "Cu", model=member)  # warm: featurizer loaded
    few = structures[:20]
    one = _seconds(lambda: [predict(s, "Cu", model=member) for s in few], 2)
    ens = _seconds(lambda: [predict(s, "Cu", model=ensemble) for s in few], 2)
    benchmark.pedantic(predict, args=(structures[1], "Cu"), kwargs={"model": ensemble}, rounds=3)
    _report(benchmark, "per_material", one, ens, len(few))


def test_ensemble_batched_vs_one_member(benchmark, structures, models):
    from xas_models import predict

    member, ensemble = models
    predict(structures[:4], "Cu", model=member)
    one = _seconds(lambda: predict(structures, "Cu", model=member))
    ens = _seconds(lambda: predict(structures, "Cu", model=ensemble))
    benchmark.pedantic(predict, args=(structures[:20], "Cu"), kwargs={"model": ensemble}, rounds=1)
    _report(benchmark, "batched", one, ens, len(structures))
