"""Global shift + broadening baseline: recovers known parameters, refuses bad grids."""

from __future__ import annotations

import numpy as np
import pytest

from xas_train.calibration.shift_broaden import (
    ShiftBroadening,
    broaden,
    fit_shift_broadening,
    shift,
)


def _spectra(energy: np.ndarray, n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(3)
    centres = 10.0 + rng.uniform(-1, 1, n)
    edge = 1 / (1 + np.exp(-(energy[None] - centres[:, None]) / 0.8))
    peak = rng.uniform(0.3, 0.8, (n, 1)) * np.exp(-0.5 * ((energy - 15.0) / 1.2) ** 2)
    return edge + peak


def test_broaden_keeps_area_and_shift_moves_the_edge():
    energy = np.arange(141) * 0.25
    y = _spectra(energy)
    b = broaden(energy, y, 1.0)
    interior = slice(30, 110)
    assert np.abs(b[:, interior].sum() - y[:, interior].sum()) / y[:, interior].sum() < 0.01
    assert np.all(np.abs(np.diff(b, n=2, axis=1)).max(1) < np.abs(np.diff(y, n=2, axis=1)).max(1))
    moved = shift(energy, y, 2.0)
    np.testing.assert_allclose(moved[:, 60], y[:, 52])  # 2 eV = 8 grid steps


def test_fit_recovers_a_known_shift_broadening_and_scale():
    energy = np.arange(141) * 0.25
    sim = _spectra(energy)
    truth = ShiftBroadening(shift_ev=-3.1, sigma_ev=1.2, scale=0.5, offset=0.05)
    measured = truth.apply(energy, sim)
    fit = fit_shift_broadening(energy, sim, measured)
    assert fit.shift_ev == pytest.approx(-3.1, abs=0.05)
    assert fit.sigma_ev == pytest.approx(1.2, abs=0.1)
    assert fit.scale == pytest.approx(0.5, rel=0.02) and fit.offset == pytest.approx(0.05, abs=0.01)
    assert np.mean((fit.apply(energy, sim) - measured) ** 2) < 1e-5


def test_bad_inputs_are_refused():
    energy = np.arange(10) * 0.25
    with pytest.raises(ValueError, match="uniform"):
        broaden(energy[[0, 1, 3, 4, 5]], np.ones((1, 5)), 1.0)
    with pytest.raises(ValueError, match="energy grid"):
        shift(energy, np.ones((2, 9)), 1.0)
    with pytest.raises(ValueError, match="must be equal"):
        fit_shift_broadening(energy, np.ones((2, 10)), np.ones((3, 10)))
