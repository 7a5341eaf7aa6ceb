"""FEFF10 input (feff.inp) for one absorbing site.

Made through Lightshow's ``FEFFParameters`` (:mod:`xas_data.simulation.lightshow_inputs`) when
the ``lightshow`` extra is installed, else through pymatgen's ``MPXANESSet`` directly. Both
write the same cards, so the text (and the FEFF spectra) agree; lightshow stays optional
because its old pins only install beside this project's pymatgen through uv overrides.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from pymatgen.core import Structure

from xas_data.errors import StructureError
from xas_data.simulation.presets import FeffPreset

BACKENDS = ("auto", "lightshow", "pymatgen")


def feff_input_text(
    structure: Structure,
    site_index: int,
    preset: FeffPreset,
    edge: str = "K",
    title: str = "",
    backend: str = "auto",
) -> str:
    """Return the feff.inp text for absorbing site ``site_index`` of ``structure``.

    The cluster holds all atoms within ``preset.fms_radius + preset.cluster_padding`` Angstrom.
    ``backend``: ``lightshow``, ``pymatgen``, or ``auto`` (lightshow when installed).
    Raises ``StructureError`` for a site index out of range.
    """
    from xas_data.simulation import lightshow_inputs
    from xas_data.simulation._lightshow_compat import lightshow_available

    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: use one of {BACKENDS}")
    if backend == "lightshow" or (backend == "auto" and lightshow_available()):
        text = lightshow_inputs.feff_input_text_lightshow(structure, site_index, preset, edge)
    else:
        text = pymatgen_feff_input_text(structure, site_index, preset, edge)
    return f"TITLE {title}\n" + text if title else text


def pymatgen_feff_input_text(
    structure: Structure, site_index: int, preset: FeffPreset, edge: str = "K"
) -> str:
    """feff.inp text from pymatgen's ``MPXANESSet`` with the preset's cards (no lightshow)."""
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
            return (Path(tmp) / "feff.inp").read_text()
