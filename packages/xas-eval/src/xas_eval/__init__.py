"""xas-eval: spectral metrics (OmniXAS eta, win rates, energy-resolved improvement, RSE,
Pearson, edge-energy error); reports and plots follow with the OmniXAS end-to-end issue."""

from xas_eval.metrics import (
    baseline_prediction,
    edge_energy,
    edge_energy_error,
    energy_improvement,
    eta,
    median_error,
    pearson,
    per_spectrum_mse,
    rse,
    win_rate_energy,
    win_rate_spectra,
)

__version__ = "0.1.0"

__all__ = [
    "baseline_prediction",
    "edge_energy",
    "edge_energy_error",
    "energy_improvement",
    "eta",
    "median_error",
    "pearson",
    "per_spectrum_mse",
    "rse",
    "win_rate_energy",
    "win_rate_spectra",
]
