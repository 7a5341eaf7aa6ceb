"""Local structure descriptors of an absorbing site: the labels of the inverse problem.

Eight per-site descriptors, as used for spectrum -> structure learning on transition-metal
oxides (oxidation state, coordination, distortion, site symmetry):

======  ===============  ==============================================================
name    kind             definition
======  ===============  ==============================================================
OS      classification   oxidation state of the site from pymatgen ``BVAnalyzer``
CN      classification   number of ``CrystalNN`` neighbours (unweighted)
OCN     classification   number of those neighbours that are oxygen
CN2     classification   second-shell coordination, see below
NNRS    regression       population standard deviation of first-shell distances [Angstrom]
MOOD    regression       minimum O-O distance among first-shell O neighbours [Angstrom]
PSGO    classification   order of the site's point group (number of operations)
NNOSM   regression       mean ``BVAnalyzer`` oxidation state of the first-shell neighbours
======  ===============  ==============================================================

Exact definitions
-----------------
* **First shell** of site ``i``: the neighbours returned by
  ``CrystalNN(weighted_cn=False, ...).get_nn_info(structure, i)``, each identified by
  ``(site index k, lattice image n)`` with ``n = round(frac(neighbour) - frac(structure[k]))``,
  so that periodic images of one site are distinct neighbours.
* **CN2**: the number of distinct ``(k, n)`` that are CrystalNN neighbours of at least one
  first-shell neighbour, excluding the absorber itself ``(i, 0)`` and every first-shell
  ``(k, n)``. The neighbours of a first-shell neighbour ``(j, m)`` are those of site ``j`` in
  its home cell, translated by ``m``. Periodic images count as distinct sites (in rocksalt
  NiO, CN2 of Ni is 18: 12 Ni at a/sqrt(2) and 6 Ni at a). CrystalNN is not symmetric
  (``k`` may be a neighbour of ``j`` without ``j`` being one of ``k``); the definition uses
  the neighbour lists as returned. A site with no first shell has CN2 = 0.
* **NNRS**: ``numpy.std`` (ddof=0) of the first-shell distances; missing when CN = 0.
* **MOOD**: minimum Cartesian distance between two first-shell O neighbours; missing when
  fewer than two first-shell neighbours are O. A neighbour counts as O when every species on
  its site is oxygen (any oxidation state).
* **PSGO**: order of the site-symmetry group (number of point operations fixing the site),
  by the orbit-stabilizer theorem on the spglib dataset of
  ``SpacegroupAnalyzer(structure, symprec, angle_tolerance)``:
  ``|P| / m``, where ``|P|`` is the order of the crystal point group (``pointgroup`` symbol
  -> :data:`POINT_GROUP_ORDERS`) and ``m`` the number of atoms of the primitive cell in the
  orbit of ``i`` (distinct ``mapping_to_primitive`` among the atoms with the same
  ``crystallographic_orbits`` label). The space group modulo primitive translations has order
  ``|P|`` and acts on the primitive cell's atoms, so the ratio is exact whatever the input
  cell. (Counting the input cell's ``rotations`` instead is wrong for supercells whose lattice
  has lower symmetry than the crystal: spglib returns only the operations with integer
  matrices in the input basis, e.g. 16 of the 48 for a 2x1x1 rocksalt cell.) The value is
  cross-checked against spglib's ``site_symmetry_symbols`` through
  :data:`POINT_GROUP_ORDERS` (oriented Hermann-Mauguin symbol with the dots removed); a
  disagreement makes PSGO missing and is counted as a failure. Symbols not in the table are
  not cross-checked.
* **OS / NNOSM**: ``BVAnalyzer().get_valences(structure)`` computed once per structure; for
  a disordered structure (list of valences per site) both are missing.

Missing values are NaN in the float32 output. An exception raised by a pymatgen analyzer makes
the descriptors that depend on it NaN for the affected sites and is counted in
:attr:`DescriptorFeaturizer.failures` (per descriptor) with a message in
:attr:`DescriptorFeaturizer.errors`. A site index out of range is a
:class:`~xas_features.errors.FeaturizerError`.

Versioning
----------
``DescriptorFeaturizer.version`` is bumped whenever the value computed for the same structure,
site and ``config()`` changes (a definition above, the missing-value rules, the cross-check).
Settings that change the output are in ``config()`` and hence in the storage key already.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Structure

from xas_features.errors import FeaturizerError
from xas_features.featurizers.base import check_sites, group_by_structure

try:  # pymatgen >= 2025: analyzers moved to pymatgen.core
    from pymatgen.core.bond_valence import BVAnalyzer
    from pymatgen.core.local_env import CrystalNN
except ImportError:  # pragma: no cover - older pymatgen
    from pymatgen.analysis.bond_valence import BVAnalyzer
    from pymatgen.analysis.local_env import CrystalNN
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

logger = logging.getLogger(__name__)

from xas_features.descriptor_table import (  # noqa: E402  (no pymatgen: see that module)
    DESCRIPTOR_KINDS,
    DESCRIPTOR_NAMES,
    DESCRIPTOR_UNITS,
)

_PG_ORDERS: dict[int, tuple[str, ...]] = {
    1: ("1",),
    2: ("-1", "2", "m"),
    3: ("3",),
    4: ("2/m", "222", "mm2", "m2m", "2mm", "4", "-4"),
    6: ("-3", "32", "321", "312", "3m", "3m1", "31m", "6", "-6"),
    8: ("mmm", "4/m", "422", "4mm", "-42m", "-4m2"),
    16: ("4/mmm",),
    12: ("-3m", "-3m1", "-31m", "6/m", "622", "6mm", "-6m2", "-62m", "23"),
    24: ("6/mmm", "m-3", "432", "-43m"),
    48: ("m-3m",),
}
POINT_GROUP_ORDERS: dict[str, int] = {
    symbol: order for order, symbols in _PG_ORDERS.items() for symbol in symbols
}
"""Order of the 32 crystallographic point groups by Hermann-Mauguin symbol (with the
orientation variants spglib can print once the dots of an oriented symbol are removed)."""

_MAX_ERRORS = 200  # messages kept in DescriptorFeaturizer.errors


def point_group_order(symbol: str) -> int | None:
    """Order of the point group with (oriented) Hermann-Mauguin ``symbol``, e.g. ``"m.mm"`` -> 8.

    Returns ``None`` for a symbol not in :data:`POINT_GROUP_ORDERS`.
    """
    return POINT_GROUP_ORDERS.get(symbol.replace(".", "").replace(" ", ""))


@contextmanager
def _quiet_pymatgen() -> Iterator[None]:
    """Silence per-call noise: pymatgen UserWarnings ('No oxidation states specified') and
    spglib's DeprecationWarning about its error handling."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pymatgen(\.|$)")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"spglib(\.|$)")
        yield


def _is_oxygen(site: Any) -> bool:
    """True when every species on ``site`` is oxygen (any oxidation state)."""
    return all(getattr(sp, "symbol", None) == "O" for sp in site.species)


_Key = tuple[int, tuple[int, int, int]]  # (site index, lattice image)


@dataclass
class _Neighbour:
    key: _Key
    coords: np.ndarray  # Cartesian [Angstrom]
    is_oxygen: bool


@dataclass
class _Symmetry:
    """The parts of a spglib dataset that PSGO needs."""

    pointgroup: str
    orbits: np.ndarray  # crystallographic_orbits [n_atoms]
    mapping: np.ndarray  # mapping_to_primitive [n_atoms]
    site_symbols: list[str]


@dataclass
class _StructureCache:
    """Per-structure results, computed lazily once for all requested sites."""

    structure: Structure
    nn: dict[int, list[_Neighbour] | Exception] = field(default_factory=dict)
    valences: list[int] | None | Exception = None
    valences_done: bool = False
    symmetry: _Symmetry | Exception | None = None


class DescriptorFeaturizer:
    """Local structure descriptors of absorbing sites -> float32 ``[n, len(names)]``.

    Args:
        names: descriptors to compute, in output column order (subset of
            :data:`DESCRIPTOR_NAMES`).
        distance_cutoffs: CrystalNN ``distance_cutoffs`` [Angstrom beyond the radii sum].
        x_diff_weight: CrystalNN electronegativity-difference weight.
        porous_adjustment: CrystalNN ``porous_adjustment``.
        search_cutoff: CrystalNN initial neighbour search radius [Angstrom].
        symprec: spglib distance tolerance for PSGO [Angstrom].
        angle_tolerance: spglib angle tolerance for PSGO [degrees].

    Attributes:
        failures: per descriptor, the number of sites made NaN by an analyzer exception
            (cumulative over ``featurize`` calls; see :meth:`reset_failures`).
        errors: the first messages of those exceptions (``formula site i: analyzer: error``).
    """

    name = "descriptors"
    version = "1"

    def __init__(
        self,
        names: Sequence[str] = DESCRIPTOR_NAMES,
        *,
        distance_cutoffs: tuple[float, float] = (0.5, 1.0),
        x_diff_weight: float = 3.0,
        porous_adjustment: bool = True,
        search_cutoff: float = 7.0,
        symprec: float = 0.01,
        angle_tolerance: float = 5.0,
    ) -> None:
        names = tuple(str(n) for n in names)
        unknown = [n for n in names if n not in DESCRIPTOR_KINDS]
        if unknown or not names or len(set(names)) != len(names):
            raise FeaturizerError(
                f"bad descriptor names {list(names)}: give distinct names from "
                f"{list(DESCRIPTOR_NAMES)}" + (f" (unknown: {unknown})" if unknown else "")
            )
        self.names: tuple[str, ...] = names
        self.distance_cutoffs = (float(distance_cutoffs[0]), float(distance_cutoffs[1]))
        self.x_diff_weight = float(x_diff_weight)
        self.porous_adjustment = bool(porous_adjustment)
        self.search_cutoff = float(search_cutoff)
        self.symprec = float(symprec)
        self.angle_tolerance = float(angle_tolerance)
        self._cnn = CrystalNN(
            weighted_cn=False,
            cation_anion=False,
            distance_cutoffs=self.distance_cutoffs,
            x_diff_weight=self.x_diff_weight,
            porous_adjustment=self.porous_adjustment,
            search_cutoff=self.search_cutoff,
        )
        self.failures: Counter[str] = Counter()
        self.errors: list[str] = []

    # ------------------------------------------------------------------ protocol
    @property
    def dim(self) -> int:
        """Number of descriptors (output columns)."""
        return len(self.names)

    @property
    def kinds(self) -> list[str]:
        """``"classification"``/``"regression"`` for each output column."""
        return [DESCRIPTOR_KINDS[n] for n in self.names]

    def config(self) -> dict[str, Any]:
        """Settings that change the output: descriptor names, CrystalNN and spglib settings."""
        return {
            "names": list(self.names),
            "crystalnn": {
                "weighted_cn": False,
                "cation_anion": False,
                "distance_cutoffs": list(self.distance_cutoffs),
                "x_diff_weight": self.x_diff_weight,
                "porous_adjustment": self.porous_adjustment,
                "search_cutoff": self.search_cutoff,
            },
            "symprec": self.symprec,
            "angle_tolerance": self.angle_tolerance,
        }

    def reset_failures(self) -> None:
        """Clear :attr:`failures` and :attr:`errors`."""
        self.failures.clear()
        self.errors.clear()

    def featurize(self, structures: Sequence[Structure], sites: Sequence[int]) -> np.ndarray:
        """float32 ``[n, dim]``: descriptors of site ``sites[i]`` of ``structures[i]``.

        Neighbour lists, valences and the symmetry dataset are computed once per distinct
        structure object. Undeterminable values are NaN.
        """
        check_sites(structures, sites)
        out = np.full((len(sites), self.dim), np.nan, dtype=np.float32)
        for rows in group_by_structure(structures).values():
            cache = _StructureCache(structures[rows[0]])
            for row in rows:
                values = self._site_values(cache, int(sites[row]))
                out[row] = [values[n] for n in self.names]
        return out

    # ------------------------------------------------------------------ internals
    def _fail(self, cache: _StructureCache, site: int, analyzer: str, exc: Exception) -> None:
        msg = f"{cache.structure.composition.reduced_formula} site {site}: {analyzer}: {exc!r}"
        logger.debug(msg)
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(msg)

    def _neighbours(self, cache: _StructureCache, site: int) -> list[_Neighbour] | Exception:
        """CrystalNN first shell of ``site`` (cached), or the exception CrystalNN raised."""
        if site not in cache.nn:
            structure = cache.structure
            try:
                with _quiet_pymatgen():
                    info = self._cnn.get_nn_info(structure, site)
                result: list[_Neighbour] | Exception = []
                for entry in info:
                    nb = entry["site"]
                    k = int(entry["site_index"])
                    image = np.rint(nb.frac_coords - structure[k].frac_coords).astype(int)
                    key = (k, (int(image[0]), int(image[1]), int(image[2])))
                    result.append(_Neighbour(key, np.asarray(nb.coords, float), _is_oxygen(nb)))
            except Exception as exc:  # noqa: BLE001 - analyzer failure -> NaN
                result = exc
            cache.nn[site] = result
        return cache.nn[site]

    def _valences(self, cache: _StructureCache) -> list[int] | None | Exception:
        """BVAnalyzer valences (cached); ``None`` for a disordered structure."""
        if not cache.valences_done:
            try:
                with _quiet_pymatgen():
                    vals = BVAnalyzer().get_valences(cache.structure)
                if any(isinstance(v, list | tuple) for v in vals):
                    cache.valences = None  # disordered: per-species valences, no site value
                else:
                    cache.valences = [int(v) for v in vals]
            except Exception as exc:  # noqa: BLE001
                cache.valences = exc
            cache.valences_done = True
        return cache.valences

    def _symmetry(self, cache: _StructureCache) -> _Symmetry | Exception:
        """The spglib symmetry data of the structure (cached)."""
        if cache.symmetry is None:
            try:
                with _quiet_pymatgen():
                    sga = SpacegroupAnalyzer(
                        cache.structure, symprec=self.symprec, angle_tolerance=self.angle_tolerance
                    )
                    data = sga.get_symmetry_dataset()
                if data is None:
                    raise ValueError("spglib found no symmetry dataset")
                cache.symmetry = _Symmetry(
                    str(data.pointgroup).strip(),
                    np.asarray(data.crystallographic_orbits),
                    np.asarray(data.mapping_to_primitive),
                    [str(x) for x in data.site_symmetry_symbols],
                )
            except Exception as exc:  # noqa: BLE001
                cache.symmetry = exc
        return cache.symmetry

    def _psgo(self, cache: _StructureCache, site: int) -> float:
        sym = self._symmetry(cache)
        if isinstance(sym, Exception):
            self.failures["PSGO"] += 1
            self._fail(cache, site, "SpacegroupAnalyzer", sym)
            return math.nan
        order = POINT_GROUP_ORDERS.get(sym.pointgroup)
        in_orbit = sym.orbits == sym.orbits[site]
        multiplicity = len(set(sym.mapping[in_orbit].tolist()))
        table = point_group_order(sym.site_symbols[site])
        problem = None
        if order is None:
            problem = f"unknown crystal point group {sym.pointgroup!r}"
        elif order % multiplicity:
            problem = f"point group order {order} not divisible by multiplicity {multiplicity}"
        elif table is not None and table != order // multiplicity:
            problem = (
                f"|{sym.pointgroup}| = {order} / multiplicity {multiplicity} disagrees with "
                f"site symmetry {sym.site_symbols[site]!r} (order {table})"
            )
        if problem is not None:
            self.failures["PSGO"] += 1
            self._fail(cache, site, "SpacegroupAnalyzer", ValueError(problem))
            return math.nan
        return float(order // multiplicity)

    def _site_values(self, cache: _StructureCache, site: int) -> dict[str, float]:
        """All requested descriptors of one site (NaN where undeterminable)."""
        want = set(self.names)
        values = dict.fromkeys(self.names, math.nan)

        valences: list[int] | None = None
        if want & {"OS", "NNOSM"}:
            vals = self._valences(cache)
            if isinstance(vals, Exception):
                for n in want & {"OS", "NNOSM"}:
                    self.failures[n] += 1
                self._fail(cache, site, "BVAnalyzer", vals)
            else:
                valences = vals
        if "OS" in want and valences is not None:
            values["OS"] = float(valences[site])

        if want & {"CN", "OCN", "CN2", "NNRS", "MOOD", "NNOSM"}:
            shell = self._neighbours(cache, site)
            if isinstance(shell, Exception):
                for n in want & {"CN", "OCN", "CN2", "NNRS", "MOOD", "NNOSM"}:
                    self.failures[n] += 1
                self._fail(cache, site, "CrystalNN", shell)
            else:
                values.update(self._shell_values(cache, site, shell, want, valences))

        if "PSGO" in want:
            values["PSGO"] = self._psgo(cache, site)
        return values

    def _shell_values(
        self,
        cache: _StructureCache,
        site: int,
        shell: list[_Neighbour],
        want: set[str],
        valences: list[int] | None,
    ) -> dict[str, float]:
        """CN, OCN, NNRS, MOOD, NNOSM and CN2 from the first shell of ``site``."""
        out: dict[str, float] = {}
        centre = np.asarray(cache.structure[site].coords, float)
        out["CN"] = float(len(shell))
        out["OCN"] = float(sum(nb.is_oxygen for nb in shell))
        if shell:
            dist = np.linalg.norm(np.stack([nb.coords for nb in shell]) - centre, axis=1)
            out["NNRS"] = float(np.std(dist))
        else:
            out["NNRS"] = math.nan
        oxygens = [nb.coords for nb in shell if nb.is_oxygen]
        if len(oxygens) >= 2:
            xyz = np.stack(oxygens)
            d = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
            out["MOOD"] = float(d[np.triu_indices(len(oxygens), k=1)].min())
        else:
            out["MOOD"] = math.nan
        if shell and valences is not None:
            out["NNOSM"] = float(np.mean([valences[nb.key[0]] for nb in shell]))
        else:
            out["NNOSM"] = math.nan
        if "CN2" in want:
            out["CN2"] = self._cn2(cache, site, shell)
        return {k: v for k, v in out.items() if k in want}

    def _cn2(self, cache: _StructureCache, site: int, shell: list[_Neighbour]) -> float:
        """Second-shell count (see module docstring); NaN if CrystalNN fails on a neighbour."""
        exclude: set[_Key] = {(site, (0, 0, 0))} | {nb.key for nb in shell}
        second: set[_Key] = set()
        for nb in shell:
            j, (mx, my, mz) = nb.key
            outer = self._neighbours(cache, j)
            if isinstance(outer, Exception):
                self.failures["CN2"] += 1
                self._fail(cache, site, f"CrystalNN (neighbour {j})", outer)
                return math.nan
            for nb2 in outer:
                k, (nx, ny, nz) = nb2.key
                key = (k, (nx + mx, ny + my, nz + mz))
                if key not in exclude:
                    second.add(key)
        return float(len(second))


def compute_site_descriptors(
    structure: Structure, site: int, featurizer: DescriptorFeaturizer | None = None
) -> dict[str, float]:
    """Descriptors of one ``site`` of ``structure`` as ``{name: value}`` (NaN if missing).

    Same values as :meth:`DescriptorFeaturizer.featurize` but in float64. Values are in the units of :data:`DESCRIPTOR_UNITS`; ``featurizer`` defaults to
    ``DescriptorFeaturizer()`` (all :data:`DESCRIPTOR_NAMES`, default settings); its
    ``names`` select the keys.
    """
    featurizer = featurizer or DescriptorFeaturizer()
    check_sites([structure], [site])
    return featurizer._site_values(_StructureCache(structure), int(site))


__all__ = [
    "DESCRIPTOR_KINDS",
    "DESCRIPTOR_NAMES",
    "DESCRIPTOR_UNITS",
    "POINT_GROUP_ORDERS",
    "DescriptorFeaturizer",
    "compute_site_descriptors",
    "point_group_order",
]
