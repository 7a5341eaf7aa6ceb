"""The featurizer protocol: structures + absorbing site indices -> float32 [n_sites, dim].

A featurizer has a ``name``, a ``version`` and a JSON-serialisable ``config``; together they
give the key under which its output is stored (``features/<key>``). Featurizers that must be
fitted (PCA for ACSF/SOAP) implement ``fit`` on training rows and ``state``/``load_state`` so
the fitted transform is saved with the features.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from xas_features.errors import FeaturizerError

if TYPE_CHECKING:
    from pymatgen.core import Structure


@runtime_checkable
class SiteFeaturizer(Protocol):
    """Anything with these members can be stored by ``featurize_dataset``."""

    name: str
    version: str

    @property
    def dim(self) -> int:
        """Feature dimension D (known after ``fit`` for fitted featurizers)."""
        ...

    def config(self) -> dict[str, Any]:
        """Settings that change the output (hashed into the storage key)."""
        ...

    def featurize(self, structures: Sequence[Structure], sites: Sequence[int]) -> np.ndarray:
        """float32 [n, D] for absorbing site ``sites[i]`` of ``structures[i]``.

        Implementations should batch: the same structure object may appear many times.
        """
        ...


def config_hash(config: dict[str, Any]) -> str:
    """First 8 hex digits of the sha256 of the canonical JSON of ``config``."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def feature_key(featurizer: SiteFeaturizer) -> str:
    """Storage key ``<name>-v<version>-<config hash>`` (e.g. ``chgnet-v0.4.2-1a2b3c4d``)."""
    return f"{featurizer.name}-v{featurizer.version}-{config_hash(featurizer.config())}"


def check_sites(structures: Sequence[Structure], sites: Sequence[int]) -> None:
    """Raise ``FeaturizerError`` when lengths differ or a site index is out of range, and
    ``StructureError`` for a structure the featurizers' C code must not see (NaN coordinates,
    a singular lattice, overlapping atoms...: ``xas_data.structures.check_structure``)."""
    from xas_data.structures import check_structure

    for first in group_by_structure(structures).values():
        structure = structures[first[0]]
        check_structure(structure, f"item {first[0]} ({structure.composition.reduced_formula})")
    if len(structures) != len(sites):
        raise FeaturizerError(
            f"{len(structures)} structures but {len(sites)} site indices: pass one site per structure"
        )
    for i, (structure, site) in enumerate(zip(structures, sites, strict=True)):
        if not 0 <= int(site) < len(structure):
            raise FeaturizerError(
                f"item {i}: site index {site} is out of range for "
                f"{structure.composition.reduced_formula} with {len(structure)} atoms; "
                f"use 0..{len(structure) - 1}"
            )


def group_by_structure(structures: Sequence[Structure]) -> dict[int, list[int]]:
    """Positions of each distinct structure object (by identity), in first-seen order."""
    groups: dict[int, list[int]] = {}
    for i, structure in enumerate(structures):
        groups.setdefault(id(structure), []).append(i)
    return groups


def backend_version(module: str, distribution: str, extra: str) -> str:
    """Installed version of an optional backend, read without importing it.

    Raises the missing-extra error (naming ``xas-features[<extra>]``) when it is absent.
    """
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    from xas_features.errors import missing_extra

    if importlib.util.find_spec(module) is None:
        raise missing_extra(module, extra)
    try:
        return version(distribution)
    except PackageNotFoundError:  # pragma: no cover - importable but not installed
        return "unknown"


def require_ordered(structure: Structure, backend: str) -> None:
    """Raise ``FeaturizerError`` for a structure with partially occupied sites."""
    if not structure.is_ordered:
        raise FeaturizerError(
            f"{structure.composition.reduced_formula} has partially occupied sites; {backend} "
            "needs an ordered structure (order it first, e.g. with pymatgen's "
            "OrderDisorderedStructureTransformation)"
        )
