"""Spectral metrics as defined in the OmniXAS paper, plus RSE, Pearson and edge-energy error.

Shapes: ``y_true``/``y_pred`` are [N, K] (N spectra on one K-point grid); energies in eV.

* per-spectrum MSE ``J_i = mean_k (y_ik - yhat_ik)^2``;
* median spectral error ``xi = median_i J_i``;
* ``eta = xi_baseline / xi_model`` with the baseline predicting the mean training spectrum
  for every test site (eta of the baseline is 1; higher is better);
* win rates of model A over B: ``w_s`` = share of spectra with a lower J_i, ``w_e`` = share
  of energy points with a lower median squared error over spectra;
* energy-resolved improvement ``I(E_k) = (median_i se_B(E_k) - median_i se_A(E_k))
  / median_i se_baseline(E_k)``;
* ``RSE_i = sum_k (y - yhat)^2 / sum_k y^2`` (CGXAS), Pearson r per spectrum, and the
  edge-energy error |E0(pred) - E0(true)| with E0 at the derivative maximum;
* derivative and curvature errors (XANE(3)): the MSE of the first / second finite
  differences of the error along the grid, ``mean_k (Delta^n (y - yhat))^2`` per spectrum
  (per grid step, in spectrum units, the same terms as the derivative-aware losses).
"""

from __future__ import annotations

import numpy as np


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise ValueError(
            f"y_true {y_true.shape} and y_pred {y_pred.shape} must both be [N, K] of equal shape"
        )
    return y_true, y_pred


def per_spectrum_mse(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``J_i`` (mean squared error of each spectrum), [N]."""
    y_true, y_pred = _pair(y_true, y_pred)
    return np.mean((y_true - y_pred) ** 2, axis=1)


def median_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """``xi = median_i J_i``."""
    return float(np.median(per_spectrum_mse(y_true, y_pred)))


def baseline_prediction(y_train: np.ndarray, n: int) -> np.ndarray:
    """The mean training spectrum repeated ``n`` times, [n, K]."""
    mean = np.asarray(y_train, dtype=np.float64).mean(axis=0)
    return np.broadcast_to(mean, (n, mean.size)).copy()


def eta(y_true: np.ndarray, y_pred: np.ndarray, y_train: np.ndarray) -> float:
    """``xi_baseline / xi_model`` against the mean-training-spectrum baseline (higher is better)."""
    baseline = baseline_prediction(y_train, len(y_true))
    return median_error(y_true, baseline) / median_error(y_true, y_pred)


def win_rate_spectra(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """``w_s``: fraction of spectra where A's J_i is lower than B's (ties count half)."""
    ja, jb = per_spectrum_mse(y_true, pred_a), per_spectrum_mse(y_true, pred_b)
    return float(np.mean((ja < jb) + 0.5 * (ja == jb)))


def win_rate_energy(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """``w_e``: fraction of energy points where A's median squared error is lower than B's."""
    y_true, pred_a = _pair(y_true, pred_a)
    _, pred_b = _pair(y_true, pred_b)
    ma = np.median((y_true - pred_a) ** 2, axis=0)
    mb = np.median((y_true - pred_b) ** 2, axis=0)
    return float(np.mean((ma < mb) + 0.5 * (ma == mb)))


def energy_improvement(
    y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, y_train: np.ndarray
) -> np.ndarray:
    """``I(E_k)``: A's improvement over B per energy point, normalised by the baseline, [K]."""
    y_true, pred_a = _pair(y_true, pred_a)
    baseline = baseline_prediction(y_train, len(y_true))
    ma = np.median((y_true - pred_a) ** 2, axis=0)
    mb = np.median((y_true - np.asarray(pred_b, dtype=np.float64)) ** 2, axis=0)
    m0 = np.median((y_true - baseline) ** 2, axis=0)
    return (mb - ma) / np.where(m0 > 0, m0, np.nan)


def derivative_mse(y_true: np.ndarray, y_pred: np.ndarray, order: int = 1) -> np.ndarray:
    """MSE of the ``order``-th finite difference (per grid step) of each spectrum's error, [N].

    ``order=1`` is the derivative (gradient) error, ``order=2`` the curvature error of the
    XANE(3) paper; differences are not divided by the grid step, so the values are in spectrum
    units and comparable between grids of the same number of points.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    if order < 1 or y_true.shape[1] <= order:
        raise ValueError(f"order must be in 1..{y_true.shape[1] - 1}, got {order}")
    return np.mean(np.diff(y_true - y_pred, n=order, axis=1) ** 2, axis=1)


def rse(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Relative squared error per spectrum ``sum (y - yhat)^2 / sum y^2``, [N]."""
    y_true, y_pred = _pair(y_true, y_pred)
    return np.sum((y_true - y_pred) ** 2, axis=1) / np.sum(y_true**2, axis=1)


def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson correlation of each predicted spectrum with its true one, [N]."""
    y_true, y_pred = _pair(y_true, y_pred)
    a = y_true - y_true.mean(axis=1, keepdims=True)
    b = y_pred - y_pred.mean(axis=1, keepdims=True)
    denom = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    return np.where(denom > 0, (a * b).sum(axis=1) / np.where(denom > 0, denom, 1), np.nan)


def edge_energy(energy: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """E0 of each spectrum (eV): maximum of dmu/dE with a parabolic sub-grid refinement, [N]."""
    energy = np.asarray(energy, dtype=np.float64)
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    grad = np.gradient(spectra, energy, axis=1)
    k = np.clip(np.argmax(grad, axis=1), 1, energy.size - 2)
    rows = np.arange(len(spectra))
    y0, y1, y2 = grad[rows, k - 1], grad[rows, k], grad[rows, k + 1]
    denom = y0 - 2 * y1 + y2
    offset = np.where(np.abs(denom) > 1e-12, 0.5 * (y0 - y2) / np.where(denom == 0, 1, denom), 0.0)
    step = energy[k + 1] - energy[k]
    return energy[k] + np.clip(offset, -1, 1) * step


def edge_energy_error(energy: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """|E0(pred) - E0(true)| per spectrum (eV), [N]."""
    return np.abs(edge_energy(energy, y_pred) - edge_energy(energy, y_true))
