"""xas-eval: spectral metrics (OmniXAS eta, win rates, energy-resolved improvement, RSE,
Pearson, edge-energy error), a predictions file format, and the OmniXAS Table I report with
plots (Matplotlib is imported only when plotting)."""

from xas_eval.compare import ablation_rows, comparison_rows, pooled_metrics
from xas_eval.metrics import (
    baseline_prediction,
    derivative_mse,
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
from xas_eval.predictions import Predictions, ensemble, find_predictions
from xas_eval.report import render_markdown, table_one, write_report

__version__ = "0.1.0"

__all__ = [
    "Predictions",
    "ablation_rows",
    "baseline_prediction",
    "comparison_rows",
    "derivative_mse",
    "edge_energy",
    "edge_energy_error",
    "energy_improvement",
    "ensemble",
    "eta",
    "find_predictions",
    "median_error",
    "pearson",
    "per_spectrum_mse",
    "pooled_metrics",
    "render_markdown",
    "rse",
    "table_one",
    "win_rate_energy",
    "win_rate_spectra",
    "write_report",
]
