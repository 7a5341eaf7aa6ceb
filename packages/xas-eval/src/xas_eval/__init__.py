"""xas-eval: spectral metrics (OmniXAS eta, win rates, energy-resolved improvement, RSE,
Pearson, edge-energy error), a predictions file format, and the OmniXAS Table I report with
plots (Matplotlib is imported only when plotting); the inverse problem (spectrum -> site
descriptors: data, scores, robustness, tree baselines; plots in ``xas_eval.inverse_plots``)."""

from xas_eval.compare import ablation_rows, comparison_rows, pooled_metrics
from xas_eval.inverse_baselines import TreeBaseline, majority_baseline
from xas_eval.inverse_data import InverseData, InverseDataset, load_inverse_data
from xas_eval.inverse_metrics import (
    add_noise,
    classification_scores,
    coverage_scale,
    interval_coverage,
    regression_scores,
    render_table,
    robustness_curve,
    robustness_table,
    score_predictions,
    shift_energy,
)
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
    "InverseData",
    "InverseDataset",
    "Predictions",
    "TreeBaseline",
    "ablation_rows",
    "add_noise",
    "baseline_prediction",
    "classification_scores",
    "comparison_rows",
    "derivative_mse",
    "edge_energy",
    "edge_energy_error",
    "energy_improvement",
    "ensemble",
    "eta",
    "find_predictions",
    "coverage_scale",
    "interval_coverage",
    "load_inverse_data",
    "majority_baseline",
    "median_error",
    "pearson",
    "per_spectrum_mse",
    "pooled_metrics",
    "regression_scores",
    "render_markdown",
    "render_table",
    "robustness_curve",
    "robustness_table",
    "rse",
    "score_predictions",
    "shift_energy",
    "table_one",
    "win_rate_energy",
    "win_rate_spectra",
    "write_report",
]
