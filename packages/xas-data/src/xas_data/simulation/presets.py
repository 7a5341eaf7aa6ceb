"""Named FEFF10 fidelity presets.

Radii are in Angstrom. Timings are measured on this project's 2-core development machine
(see the package README); ``omnixas`` reproduces the OmniXAS settings and is meant for clusters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from xas_data.errors import SimulationError


@dataclass(frozen=True)
class FeffPreset:
    """FEFF10 settings for one fidelity level.

    Attributes:
        name: preset name; the stored fidelity label is ``FEFF-<name>``.
        fms_radius: full multiple-scattering radius (Angstrom).
        scf_radius: self-consistent potential radius (Angstrom), ``None`` for non-SCF potentials.
        cluster_padding: atoms are included up to ``fms_radius + cluster_padding`` (Angstrom).
        xanes_kmax: upper end of the XANES card (1/Angstrom); 4.3 covers ~70 eV above FEFF's
            first energy (E = 3.81 k^2 eV), so a grid can reach >= 60 eV above the edge. FMS solves
            each energy on its own, so a larger ``xanes_kmax`` only extends the spectrum: the
            values on the common energies agree to 0.5 % (``test_simulation.py``).
        corehole: FEFF COREHOLE treatment (FSR = final-state rule, RPA).
        stage_timeout_s: wall-clock limit for any single FEFF stage (seconds).
    """

    name: str
    fms_radius: float
    scf_radius: float | None
    cluster_padding: float = 1.5
    xanes_kmax: float = 4.3
    corehole: str = "FSR"
    stage_timeout_s: float = 600.0

    @property
    def fidelity(self) -> str:
        """Fidelity label stored with every spectrum, e.g. ``FEFF-fast``."""
        return f"FEFF-{self.name}"

    def tags(self) -> dict:
        """FEFF cards that override pymatgen's MPXANESSet defaults."""
        tags: dict = {
            "FMS": [self.fms_radius, 0],
            "XANES": [self.xanes_kmax, 0.04, 0.1],
            "COREHOLE": self.corehole,
            "S02": 0.0,
        }
        if self.scf_radius is not None:
            tags["SCF"] = [self.scf_radius, 0, 30, 0.2, 1]
        return tags

    def to_dict(self) -> dict:
        return asdict(self) | {"fidelity": self.fidelity}


FEFF_PRESETS: dict[str, FeffPreset] = {
    # non-SCF potentials, FMS over ~30 atoms: ~5-30 s a site here
    "fast": FeffPreset("fast", fms_radius=4.5, scf_radius=None, stage_timeout_s=300.0),
    # SCF potentials (3.5 A) and a larger FMS cluster: ~30-90 s a site here
    "accurate": FeffPreset("accurate", fms_radius=5.0, scf_radius=3.5, stage_timeout_s=900.0),
    # the OmniXAS settings (SCF 7 A, FMS 9 A): > 15 min a site here, for clusters
    "omnixas": FeffPreset("omnixas", fms_radius=9.0, scf_radius=7.0, stage_timeout_s=14400.0),
}


def get_preset(name: str) -> FeffPreset:
    """Return the preset called ``name`` or raise a ``SimulationError`` listing the choices."""
    try:
        return FEFF_PRESETS[name]
    except KeyError:
        raise SimulationError(
            f"unknown FEFF preset {name!r}; choose one of {sorted(FEFF_PRESETS)}"
        ) from None
