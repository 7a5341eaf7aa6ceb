"""Core types: energy grids, spectra, fidelities and per-element default grids.

Energies are in eV. A spectrum is intensity on a strictly increasing, finite energy grid with
non-negative, finite intensity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from xas_data.errors import SpectrumError

SCHEMA_VERSION = 1
"""Version of the on-disk store layout (see SCHEMA.md); bumped on incompatible changes."""

EDGES = ("K", "L1", "L2", "L3", "M4", "M5")
BASE_FIDELITIES = ("FEFF", "VASP", "FDMNES", "EXP", "OCEAN", "XSPECTRA")
_FIDELITY = re.compile(r"^(?P<base>[A-Z][A-Z0-9]*)(-(?P<preset>[a-z0-9][a-z0-9_.]*))?$")

OMNIXAS_N_POINTS = 141
OMNIXAS_STEP_EV = 0.25

# Tabulated K-edge energies (eV; Bearden & Burr / Deslattes et al.), used to place grids.
K_EDGE_EV: dict[str, float] = {
    "Sc": 4492.0, "Ti": 4966.0, "V": 5465.0, "Cr": 5989.0, "Mn": 6539.0, "Fe": 7112.0,
    "Co": 7709.0, "Ni": 8333.0, "Cu": 8979.0, "Zn": 9659.0,
}  # fmt: skip

# Cu's start is OmniXAS's own (verified against its released labels to ~0.3 %); for the other
# elements the grid starts at the same offset above the tabulated K edge (+4.173 eV).
OMNIXAS_CU_START_EV = 8983.173
_START_OFFSET_EV = OMNIXAS_CU_START_EV - K_EDGE_EV["Cu"]
DEFAULT_GRID_START_EV: dict[str, float] = {
    el: (OMNIXAS_CU_START_EV if el == "Cu" else round(e + _START_OFFSET_EV, 3))
    for el, e in K_EDGE_EV.items()
}


def parse_fidelity(fidelity: str) -> tuple[str, str | None]:
    """Split ``"FEFF-fast"`` into ``("FEFF", "fast")``; raise ``SpectrumError`` if malformed."""
    match = _FIDELITY.fullmatch(fidelity or "")
    if match is None:
        raise SpectrumError(
            f"fidelity {fidelity!r} is not valid: use one of {list(BASE_FIDELITIES)} or "
            "'<BASE>-<preset>' such as 'FEFF-fast' (preset in lower case)"
        )
    return match.group("base"), match.group("preset")


def check_element(element: str) -> str:
    """Return the canonical symbol of ``element`` or raise ``SpectrumError``."""
    from pymatgen.core import Element

    try:
        return Element(element).symbol
    except ValueError:
        raise SpectrumError(f"{element!r} is not a chemical element symbol (e.g. 'Cu')") from None


@dataclass(frozen=True)
class EnergyGrid:
    """A uniform energy grid ``start + step * k``, k = 0..n_points-1 (eV)."""

    start: float
    step: float = OMNIXAS_STEP_EV
    n_points: int = OMNIXAS_N_POINTS

    def __post_init__(self) -> None:
        if not (np.isfinite(self.start) and self.step > 0 and self.n_points >= 2):
            raise SpectrumError(
                f"invalid grid start={self.start} step={self.step} n={self.n_points}: "
                "need a finite start, step > 0 eV and at least 2 points"
            )

    @property
    def energies(self) -> np.ndarray:
        """Grid energies (eV), shape [n_points], float64."""
        return self.start + self.step * np.arange(self.n_points, dtype=np.float64)

    @property
    def stop(self) -> float:
        return self.start + self.step * (self.n_points - 1)

    def to_dict(self) -> dict:
        return {"start": self.start, "step": self.step, "n_points": self.n_points}


def default_grid(
    element: str,
    starts: dict[str, float] | None = None,
    step: float = OMNIXAS_STEP_EV,
    n_points: int = OMNIXAS_N_POINTS,
) -> EnergyGrid:
    """OmniXAS-style grid for ``element`` (141 points, 0.25 eV); ``starts`` overrides starts."""
    symbol = check_element(element)
    table = DEFAULT_GRID_START_EV | (starts or {})
    if symbol not in table:
        raise SpectrumError(
            f"no default grid start for {symbol}; pass starts={{'{symbol}': <eV>}} "
            f"(known: {sorted(table)})"
        )
    return EnergyGrid(table[symbol], step, n_points)


EDGE_MARGIN_EV = 5.0
"""An edge (E0) counts as inside a grid when it sits at least this far above the grid's start."""


def edges_inside(e0: np.ndarray, grid: EnergyGrid, margin_ev: float = EDGE_MARGIN_EV) -> np.ndarray:
    """Mask [n]: E0 (eV, [n]) at least ``margin_ev`` inside both ends of ``grid``."""
    e0 = np.asarray(e0, dtype=np.float64)
    return (e0 >= grid.start + margin_ev) & (e0 <= grid.stop - margin_ev)


def fit_edge_grid(
    e0: np.ndarray,
    below_ev: float = EDGE_MARGIN_EV,
    above_ev: float = 60.0,
    coverage: float = 0.99,
    step: float = OMNIXAS_STEP_EV,
    max_points: int = 256,
    reach_ev: float | None = None,
) -> EnergyGrid:
    """An edge-anchored uniform grid for spectra with edge energies ``e0`` (eV, [n]).

    The grid starts ``below_ev`` below the lowest E0 once the lowest ``1 - coverage`` share is
    set aside (so at least ``coverage`` of the edges sit ``below_ev`` inside it) and reaches
    ``above_ev`` above the median E0 (and at least to ``reach_ev``, e.g. for a second fidelity
    whose edges sit higher). The step is ``step`` unless that needs more than
    ``max_points`` points; then it grows in 0.05 eV increments. Start and step are rounded to
    0.05 eV so that grids are readable and reproducible.
    """
    e0 = np.asarray(e0, dtype=np.float64)
    e0 = e0[np.isfinite(e0)]
    if e0.size == 0:
        raise SpectrumError("fit_edge_grid: no finite edge energies; check the spectra")
    if not (0.5 <= coverage <= 1.0 and below_ev >= 0 and above_ev > 0 and max_points >= 2):
        raise SpectrumError(
            f"fit_edge_grid: coverage={coverage} (0.5..1), below_ev={below_ev} (>= 0), "
            f"above_ev={above_ev} (> 0), max_points={max_points} (>= 2) out of range"
        )
    low = float(np.quantile(e0, 1.0 - coverage, method="lower"))
    start = np.floor((low - below_ev) / 0.05) * 0.05
    span = max(float(np.median(e0)) + above_ev, reach_ev or -np.inf) - start
    if np.ceil(span / step) + 1 > max_points:
        step = float(np.ceil(span / (max_points - 1) / 0.05) * 0.05)
    n_points = int(np.ceil(round(span / step, 6))) + 1
    return EnergyGrid(round(float(start), 3), round(float(step), 3), n_points)


def check_energy(energy: np.ndarray, name: str = "spectrum") -> np.ndarray:
    """Return ``energy`` as float64 [n] or raise ``SpectrumError`` naming the first bad point."""
    energy = np.asarray(energy, dtype=np.float64)
    if energy.ndim != 1 or energy.size < 2:
        raise SpectrumError(f"{name}: energy must be 1-D with >= 2 points, got {energy.shape}")
    bad = np.flatnonzero(~np.isfinite(energy))
    if bad.size:
        raise SpectrumError(f"{name}: energy[{bad[0]}] is {energy[bad[0]]}; remove NaN/inf points")
    steps = np.diff(energy)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise SpectrumError(
            f"{name}: energies not strictly increasing at index {i} "
            f"({energy[i - 1]} -> {energy[i]} eV); sort them and drop repeated points"
        )
    return energy


@dataclass(frozen=True)
class Spectrum:
    """One site (or sample) spectrum.

    Attributes:
        energy: strictly increasing energies (eV), shape [n].
        intensity: absorption, finite and >= 0, shape [n].
        element: absorbing element symbol.
        edge: absorption edge, one of ``EDGES``.
        fidelity: ``FEFF``, ``VASP``, ``FDMNES``, ``EXP`` or ``<BASE>-<preset>``.
        metadata: free-form JSON-serialisable metadata.
    """

    energy: np.ndarray
    intensity: np.ndarray
    element: str
    edge: str = "K"
    fidelity: str = "FEFF"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        name = f"{self.element} {self.edge} {self.fidelity} spectrum"
        energy = check_energy(self.energy, name)
        intensity = np.asarray(self.intensity, dtype=np.float64)
        if intensity.shape != energy.shape:
            raise SpectrumError(
                f"{name}: intensity shape {intensity.shape} != energy shape {energy.shape}"
            )
        if not np.all(np.isfinite(intensity)):
            raise SpectrumError(f"{name}: intensity has NaN/inf values; remove or fix them")
        if np.any(intensity < 0):
            raise SpectrumError(
                f"{name}: intensity has negative values (min {intensity.min():.3g}); "
                "absorption must be >= 0: check the background subtraction"
            )
        if self.edge not in EDGES:
            raise SpectrumError(f"{name}: unknown edge {self.edge!r}; use one of {EDGES}")
        parse_fidelity(self.fidelity)
        object.__setattr__(self, "element", check_element(self.element))
        object.__setattr__(self, "energy", energy)
        object.__setattr__(self, "intensity", intensity)
