"""xas-data: X-ray absorption spectra datasets.

Zarr v3 stores of site spectra with structures (``XASDataset``), curation functions, material
splits, FEFF10 simulation, ingest of public and measured data, and a dataset registry.
Heavy parts (FEFF, pymatgen structure tools) are imported on first use.
"""

from xas_data.errors import (
    MissingExtraError,
    RegistryError,
    SimulationError,
    SpectrumError,
    StoreError,
    StructureError,
    XASDataError,
)
from xas_data.schema import (
    DEFAULT_GRID_START_EV,
    SCHEMA_VERSION,
    EnergyGrid,
    Spectrum,
    default_grid,
    parse_fidelity,
)

__version__ = "0.1.0"

_LAZY = {"Batch", "Selection", "XASDataset"}
_LAZY_MODULES = {
    "ProcessedSpectrum": "experiment_processing",
    "ProcessingConfig": "experiment_processing",
    "process_spectrum": "experiment_processing",
    "process_arrays": "experiment_processing",
    "IngestReport": "experiment_ingest",
    "ingest_measured_spectra": "experiment_ingest",
    "read_measured_sources": "experiment_ingest",
    "K_EDGE_EV": "edges",
    "k_edge_energy": "edges",
}


def __getattr__(name: str):
    """Import the Zarr-backed store classes on first use (keeps ``import xas_data`` light)."""
    if name in _LAZY:
        from xas_data import store

        return getattr(store, name)
    if name in _LAZY_MODULES:
        import importlib

        return getattr(importlib.import_module(f"xas_data.{_LAZY_MODULES[name]}"), name)
    raise AttributeError(f"module 'xas_data' has no attribute {name!r}")


def default_dataset_path():
    """Path of the shipped default dataset (a Zarr store inside this package)."""
    from xas_data.cli import default_dataset_path as path

    return path()


def open_default_dataset():
    """Open the shipped default dataset read-only (an ``XASDataset``)."""
    from xas_data.store import XASDataset

    return XASDataset.open(default_dataset_path())


__all__ = [
    "DEFAULT_GRID_START_EV",
    "K_EDGE_EV",
    "IngestReport",
    "ProcessedSpectrum",
    "ProcessingConfig",
    "SCHEMA_VERSION",
    "Batch",
    "EnergyGrid",
    "MissingExtraError",
    "RegistryError",
    "Selection",
    "SimulationError",
    "Spectrum",
    "SpectrumError",
    "StoreError",
    "StructureError",
    "XASDataError",
    "XASDataset",
    "default_dataset_path",
    "default_grid",
    "ingest_measured_spectra",
    "k_edge_energy",
    "open_default_dataset",
    "parse_fidelity",
    "process_arrays",
    "process_spectrum",
    "read_measured_sources",
]
