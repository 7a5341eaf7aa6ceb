"""Tabulated K-edge energies (eV) and look-ups used to validate measured spectra.

Values are the K-shell binding energies of the elements (X-ray Data Booklet / Bearden & Burr,
as tabulated by xraydb), in eV, for Z = 11 (Na) .. 50 (Sn). They place the expected edge of a
measured spectrum; chemical shifts and monochromator calibration move a measured E0 by up to
~20 eV from these values.
"""

from __future__ import annotations

from xas_data.errors import SpectrumError

__all__ = ["K_EDGE_EV", "k_edge_energy", "nearest_k_edge", "k_edges_in_range"]

#: K-edge energies in eV, keyed by element symbol (Z = 11 .. 50).
K_EDGE_EV: dict[str, float] = {
    "Na": 1070.8, "Mg": 1303.0, "Al": 1559.6, "Si": 1838.9, "P": 2145.5, "S": 2472.0,
    "Cl": 2822.4, "Ar": 3205.9, "K": 3608.4, "Ca": 4038.5, "Sc": 4492.8, "Ti": 4966.4,
    "V": 5465.1, "Cr": 5989.2, "Mn": 6539.0, "Fe": 7112.0, "Co": 7708.9, "Ni": 8332.8,
    "Cu": 8978.9, "Zn": 9658.6, "Ga": 10367.1, "Ge": 11103.1, "As": 11866.7, "Se": 12657.8,
    "Br": 13473.7, "Kr": 14325.6, "Rb": 15199.7, "Sr": 16104.6, "Y": 17038.4, "Zr": 17998.0,
    "Nb": 18985.6, "Mo": 19999.5, "Tc": 21044.0, "Ru": 22117.2, "Rh": 23219.9, "Pd": 24350.3,
    "Ag": 25514.0, "Cd": 26711.2, "In": 27939.9, "Sn": 29200.1,
}  # fmt: skip


def k_edge_energy(element: str) -> float:
    """Tabulated K-edge energy of ``element`` in eV.

    Raises:
        SpectrumError: the element is not in the table (Z outside 11..50).
    """
    symbol = str(element).strip()
    symbol = symbol[:1].upper() + symbol[1:].lower()
    if symbol not in K_EDGE_EV:
        raise SpectrumError(
            f"no tabulated K-edge energy for {element!r}; K edges are known for "
            f"{', '.join(K_EDGE_EV)} (Z = 11..50): check the element symbol"
        )
    return K_EDGE_EV[symbol]


def nearest_k_edge(energy_ev: float) -> tuple[str, float]:
    """The element whose tabulated K edge is closest to ``energy_ev`` (eV): (symbol, edge eV)."""
    symbol = min(K_EDGE_EV, key=lambda el: abs(K_EDGE_EV[el] - energy_ev))
    return symbol, K_EDGE_EV[symbol]


def k_edges_in_range(lo_ev: float, hi_ev: float) -> list[tuple[str, float]]:
    """(symbol, edge eV) of every tabulated K edge with ``lo_ev <= edge <= hi_ev``, by energy."""
    return sorted(
        ((el, e) for el, e in K_EDGE_EV.items() if lo_ev <= e <= hi_ev), key=lambda t: t[1]
    )
