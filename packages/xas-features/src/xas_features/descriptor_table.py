"""Names, learning tasks and units of the local-structure descriptors (no heavy imports, so
evaluation code can use the table without importing pymatgen)."""

from __future__ import annotations

DESCRIPTOR_NAMES: tuple[str, ...] = ("OS", "CN", "OCN", "CN2", "NNRS", "MOOD", "PSGO", "NNOSM")
"""Descriptor names in the column order of the default featurizer."""

DESCRIPTOR_KINDS: dict[str, str] = {
    "OS": "classification",
    "CN": "classification",
    "OCN": "classification",
    "CN2": "classification",
    "NNRS": "regression",
    "MOOD": "regression",
    "PSGO": "classification",
    "NNOSM": "regression",
}
"""Learning task of each descriptor: integer-valued classes or a real-valued target."""

DESCRIPTOR_UNITS: dict[str, str] = {
    "OS": "e",
    "CN": "count",
    "OCN": "count",
    "CN2": "count",
    "NNRS": "angstrom",
    "MOOD": "angstrom",
    "PSGO": "count",
    "NNOSM": "e",
}
"""Unit of each descriptor (``e``: elementary charge, ``count``: dimensionless integer)."""
