"""The simplest physics calibration of simulated spectra: one global energy shift plus
Gaussian broadening (and a linear intensity map), fitted on training spectra.

``y'(E) = a * (G_sigma * y)(E - shift) + b``: the simulated spectrum ``y`` [K] on a uniform
grid (eV) is convolved with a normalised Gaussian of standard deviation ``sigma`` (eV),
shifted by ``shift`` eV (positive moves features to higher energy; values outside the grid take
the nearest end value) and mapped linearly onto the measured intensity scale (``a``, ``b``;
simulated FEFF labels and edge-step-normalised measurements have different units). ``shift``
and ``sigma`` are shared by all spectra; ``a`` and ``b`` are fitted in closed form for each
``(shift, sigma)`` over all training spectra together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _check(energy: np.ndarray, spectra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    energy = np.asarray(energy, dtype=np.float64)
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    if energy.ndim != 1 or spectra.shape[1] != energy.size or energy.size < 3:
        raise ValueError(
            f"spectra {spectra.shape} must be [N, K] on the energy grid of K={energy.size} "
            "points (K >= 3)"
        )
    step = np.diff(energy)
    if not np.allclose(step, step[0], rtol=1e-6, atol=1e-9) or step[0] <= 0:
        raise ValueError("the energy grid must be uniform and ascending (eV)")
    return energy, spectra


def broaden(energy: np.ndarray, spectra: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian convolution (sigma in eV) of spectra [N, K]; edges padded with end values."""
    energy, spectra = _check(energy, spectra)
    step = energy[1] - energy[0]
    if sigma <= 0.05 * step:
        return spectra.copy()
    half = int(np.ceil(4 * sigma / step))
    x = np.arange(-half, half + 1) * step
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(spectra, ((0, 0), (half, half)), mode="edge")
    out = np.empty_like(spectra)
    for i, row in enumerate(padded):
        out[i] = np.convolve(row, kernel, mode="valid")
    return out


def shift(energy: np.ndarray, spectra: np.ndarray, delta: float) -> np.ndarray:
    """Spectra [N, K] with features moved by ``delta`` eV: ``y'(E) = y(E - delta)``."""
    energy, spectra = _check(energy, spectra)
    return np.stack([np.interp(energy - delta, energy, row) for row in spectra])


@dataclass(frozen=True)
class ShiftBroadening:
    """Fitted global calibration: ``shift_ev``, ``sigma_ev`` and the intensity map
    ``scale``/``offset`` (measured = scale * simulated + offset)."""

    shift_ev: float
    sigma_ev: float
    scale: float
    offset: float

    def apply(self, energy: np.ndarray, spectra: np.ndarray) -> np.ndarray:
        """Calibrated spectra [N, K] of simulated ``spectra`` [N, K] on ``energy`` [K] (eV)."""
        moved = shift(energy, broaden(energy, spectra, self.sigma_ev), self.shift_ev)
        return self.scale * moved + self.offset

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _linear_map(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``y ~ a x + b`` over all points; returns (a, b, mse)."""
    xf, yf = x.ravel(), y.ravel()
    design = np.stack([xf, np.ones_like(xf)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, yf, rcond=None)
    return float(a), float(b), float(np.mean((a * xf + b - yf) ** 2))


def fit_shift_broadening(
    energy: np.ndarray,
    simulated: np.ndarray,
    measured: np.ndarray,
    max_shift: float = 15.0,
    max_sigma: float = 4.0,
) -> ShiftBroadening:
    """Fit one shift (|shift| <= max_shift eV) and broadening (0..max_sigma eV) to pairs of
    simulated and measured spectra [N, K] on ``energy`` [K]: a grid search (0.25 eV shift,
    0.25 eV sigma) refined by Nelder-Mead, minimising the pooled MSE."""
    from scipy.optimize import minimize

    energy, simulated = _check(energy, simulated)
    _, measured = _check(energy, measured)
    if simulated.shape != measured.shape or len(simulated) == 0:
        raise ValueError(
            f"simulated {simulated.shape} and measured {measured.shape} must be equal, N >= 1"
        )

    def loss(params: np.ndarray) -> float:
        d, s = float(params[0]), float(params[1])
        if abs(d) > max_shift or s < 0 or s > max_sigma:
            return np.inf
        moved = shift(energy, broaden(energy, simulated, s), d)
        return _linear_map(moved, measured)[2]

    best_grid = (np.inf, 0.0, 0.0)
    for s in np.arange(0.0, max_sigma + 1e-9, 0.25):
        broadened = broaden(energy, simulated, float(s))
        for d in np.arange(-max_shift, max_shift + 1e-9, 0.25):
            mse = _linear_map(shift(energy, broadened, float(d)), measured)[2]
            if mse < best_grid[0]:
                best_grid = (mse, float(d), float(s))
    start = (best_grid[1], best_grid[2])
    best = minimize(loss, np.array(start), method="Nelder-Mead", options={"xatol": 1e-3})
    d, s = (best.x if best.fun <= loss(np.array(start)) else np.array(start)).tolist()
    moved = shift(energy, broaden(energy, simulated, s), d)
    a, b, _ = _linear_map(moved, measured)
    return ShiftBroadening(shift_ev=float(d), sigma_ev=float(s), scale=a, offset=b)
