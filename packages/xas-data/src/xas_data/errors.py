"""Exceptions raised for user mistakes. Every message names the problem and the fix."""

from __future__ import annotations


class XASDataError(Exception):
    """Base class for errors caused by bad input to xas-data."""


class StructureError(XASDataError):
    """A structure file cannot be used (malformed, disordered, missing the absorber)."""


class SpectrumError(XASDataError):
    """A spectrum violates the schema (non-monotonic or non-finite energies, NaN, negative)."""


class StoreError(XASDataError):
    """A dataset store is missing, of another schema version, or used inconsistently."""


class BusyError(XASDataError):
    """Another process holds the writer lock of a store or zoo; retry when it finishes."""


class SimulationError(XASDataError):
    """A FEFF run failed, diverged or timed out."""


class RegistryError(XASDataError):
    """A registered dataset cannot be fetched or fails its hash check."""


class MissingExtraError(XASDataError, ImportError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str, package: str = "xas-data") -> None:
        super().__init__(
            f"the optional dependency '{module}' is not installed; "
            f"install it with: pip install '{package}[{extra}]'  (or: uv sync --extra {extra})"
        )
        self.module = module
        self.extra = extra
