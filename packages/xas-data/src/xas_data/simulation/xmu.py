"""Parse FEFF's xmu.dat, including the edge-step normalisation constant of its header."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xas_data.errors import SimulationError

_XSEDGE = re.compile(r"xsedge\+\s*\d+,\s*used to normalize mu\s+([-+0-9.Ee]+)")


@dataclass(frozen=True)
class XmuData:
    """Columns of xmu.dat.

    Attributes:
        energy: absolute photon energy omega (eV), shape [n].
        relative_energy: e = omega - E_edge (eV), shape [n].
        k: photo-electron wave number (1/Angstrom), shape [n].
        mu: normalised absorption mu(E) (column 4), shape [n].
        mu0: embedded-atom background mu0(E), shape [n].
        chi: fine structure, shape [n].
        xsedge_norm: the constant FEFF divided mu by ("xsedge+ 50"), in Angstrom^2 units of FEFF.
    """

    energy: np.ndarray
    relative_energy: np.ndarray
    k: np.ndarray
    mu: np.ndarray
    mu0: np.ndarray
    chi: np.ndarray
    xsedge_norm: float


def parse_xmu(path: str | Path) -> XmuData:
    """Read ``xmu.dat``; raise ``SimulationError`` naming the file if it is absent or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise SimulationError(f"{path}: FEFF wrote no xmu.dat; see feff.log in the same folder")
    text = path.read_text(errors="replace")
    match = _XSEDGE.search(text)
    if match is None:
        raise SimulationError(f"{path}: the header lacks the 'xsedge+ 50' normalisation line")
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError as exc:
        raise SimulationError(f"{path}: unreadable data rows ({exc})") from exc
    if table.ndim != 2 or table.shape[1] < 6 or table.shape[0] < 10:
        raise SimulationError(f"{path}: expected >= 10 rows of 6 columns, got {table.shape}")
    if not np.all(np.isfinite(table)):
        raise SimulationError(f"{path}: non-finite values; the FEFF run diverged")
    return XmuData(
        energy=table[:, 0],
        relative_energy=table[:, 1],
        k=table[:, 2],
        mu=table[:, 3],
        mu0=table[:, 4],
        chi=table[:, 5],
        xsedge_norm=float(match.group(1)),
    )
