"""Small FEFF test inputs and result readers shared by the executor and Slurm-array tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from xas_data.structures import MaterialRecord

RESULT_KEYS = ("energy", "mu", "mu0", "chi", "xsedge_norm")


def nio_records(n: int = 6) -> list[MaterialRecord]:
    """``n`` rock-salt NiO cells with different lattice constants: one Ni site each."""
    return [
        MaterialRecord(
            f"nio-{i}",
            Structure.from_spacegroup(
                "Fm-3m", Lattice.cubic(4.10 + 0.04 * i), ["Ni", "O"], [[0, 0, 0], [0.5] * 3]
            ).get_primitive_structure(),
            "test",
        )
        for i in range(n)
    ]


def stored_results(workdir: Path, preset: str = "fast") -> dict[str, dict[str, np.ndarray]]:
    """Every result npz of ``workdir/<preset>/results``: task id -> arrays."""
    results = {}
    for path in sorted((Path(workdir) / preset / "results").glob("*.npz")):
        with np.load(path) as r:
            results[path.stem] = {k: r[k] for k in RESULT_KEYS}
    return results
