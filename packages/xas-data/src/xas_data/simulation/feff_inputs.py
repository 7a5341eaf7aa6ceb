"""FEFF10 input (feff.inp) for one absorbing site, built with pymatgen's FEFF sets."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from pymatgen.core import Structure

from xas_data.errors import StructureError
from xas_data.simulation.presets import FeffPreset


def feff_input_text(
    structure: Structure, site_index: int, preset: FeffPreset, edge: str = "K", title: str = ""
) -> str:
    """Return the feff.inp text for absorbing site ``site_index`` of ``structure``.

    The cluster holds all atoms within ``preset.fms_radius + preset.cluster_padding`` Angstrom.
    Raises ``StructureError`` for a site index out of range.
    """
    from pymatgen.io.feff.sets import MPXANESSet

    if not 0 <= site_index < len(structure):
        raise StructureError(
            f"absorbing site index {site_index} is out of range for a structure of "
            f"{len(structure)} atoms; use an index in 0..{len(structure) - 1}"
        )
    tags = preset.tags()
    delete = ["LDOS"] if preset.scf_radius is not None else ["LDOS", "SCF"]
    settings = tags | {"_del": delete}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feff_set = MPXANESSet(
            site_index,
            structure,
            edge=edge,
            radius=preset.fms_radius + preset.cluster_padding,
            user_tag_settings=settings,
        )
        with tempfile.TemporaryDirectory() as tmp:
            feff_set.write_input(tmp)
            text = (Path(tmp) / "feff.inp").read_text()
    if title:
        text = f"TITLE {title}\n" + text
    return text
