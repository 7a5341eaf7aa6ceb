"""The one place that imports Lightshow, patched for the pymatgen this workspace locks.

lightshow 1.2.8 pins pymatgen==2024.3.1 (and old pydantic / mp-api); the root
``pyproject.toml`` lifts those pins with uv ``override-dependencies``. Its FEFF, XSpectra and
OCEAN writers and ``Database`` run unchanged on the current pymatgen; one name moved:

* ``pymatgen.io.vasp.sets.DictSet`` was renamed ``VaspInputSet`` (pymatgen 2024.5) and
  ``lightshow.parameters.vasp`` imports the old name. The alias below also keeps the old
  ``DictSet(structure, config_dict).incar`` result: the current ``VaspInputSet`` drops
  ``MAGMOM`` unless ``ISPIN = 2`` is set, and lightshow's ``Incar.adj_mag`` reads ``MAGMOM``
  (it then switches spin off for non-magnetic structures itself).

Not a moved name, but a cost: ``lightshow.database`` imports the Materials Project client
(``mp_api.client``) at import time, which alone takes longer than the rest of lightshow and is
used only by ``Database.from_materials_project``. It is bound lazily (:func:`_lazy_mp_rester`).

Every xas-data module gets Lightshow through :func:`load_lightshow`, never ``import lightshow``.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
import warnings
from types import ModuleType

from xas_data.errors import MissingExtraError

PIP_HINT = (
    "; with pip, skip its old pins: pip install ase mp-api && pip install --no-deps "
    "'lightshow==1.2.8' (uv applies the workspace overrides by itself)"
)


def _patch_vasp_sets() -> None:
    """Give ``pymatgen.io.vasp.sets`` the ``DictSet`` name lightshow imports (no-op if there)."""
    import pymatgen.io.vasp.sets as vasp_sets

    if hasattr(vasp_sets, "DictSet"):
        return

    class DictSet(vasp_sets.VaspInputSet):
        """pymatgen < 2024.5 ``DictSet(structure, config_dict)``: keeps ``MAGMOM`` in ``incar``."""

        def __init__(self, structure, config_dict: dict, **kwargs) -> None:
            config = copy.deepcopy(config_dict)
            self._had_ispin = "ISPIN" in config.get("INCAR", {})
            config.setdefault("INCAR", {}).setdefault("ISPIN", 2)
            super().__init__(structure, config, **kwargs)

        @property
        def incar(self):
            incar = super().incar
            if not self._had_ispin:
                incar.pop("ISPIN", None)
            return incar

    vasp_sets.DictSet = DictSet


def _lazy_mp_rester(*args, **kwargs):
    """``mp_api.client.MPRester``, imported on first use."""
    from mp_api.client import MPRester

    return MPRester(*args, **kwargs)


def _import_lightshow() -> ModuleType:
    """``import lightshow`` with ``mp_api.client`` replaced by a stub during the import only."""
    if "mp_api.client" in sys.modules:
        import lightshow

        return lightshow
    stub = ModuleType("mp_api.client")
    stub.MPRester = _lazy_mp_rester
    sys.modules["mp_api.client"] = stub
    try:
        import lightshow
    finally:
        if sys.modules.get("mp_api.client") is stub:
            del sys.modules["mp_api.client"]
    return lightshow


def load_lightshow() -> ModuleType:
    """Patch pymatgen (once) and return the ``lightshow`` module.

    Raises ``MissingExtraError`` (install hint included) when lightshow is not installed; an
    ``ImportError`` of an installed lightshow (a name that moved again) propagates as it is.
    """
    if importlib.util.find_spec("lightshow") is None:
        error = MissingExtraError("lightshow", "lightshow")
        error.args = (error.args[0] + PIP_HINT,)
        raise error
    _patch_vasp_sets()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _import_lightshow()


def lightshow_available() -> bool:
    """True when lightshow imports (through the patches above)."""
    try:
        load_lightshow()
    except MissingExtraError:
        return False
    return True
