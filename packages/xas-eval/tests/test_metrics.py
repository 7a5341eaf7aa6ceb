"""OmniXAS metrics on hand-checkable inputs."""

import numpy as np
import pytest

from xas_eval import metrics as m


def test_eta_of_baseline_is_one_and_perfect_is_infinite():
    rng = np.random.default_rng(0)
    train = rng.random((50, 10))
    test = rng.random((20, 10))
    baseline = m.baseline_prediction(train, 20)
    assert m.eta(test, baseline, train) == pytest.approx(1.0)
    half_error = test + 0.5 * (baseline - test)  # squared errors x 1/4 -> eta 4
    assert m.eta(test, half_error, train) == pytest.approx(4.0)


def test_median_and_per_spectrum():
    y = np.zeros((3, 2))
    p = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(m.per_spectrum_mse(y, p), [1.0, 2.0, 0.0])
    assert m.median_error(y, p) == 1.0


def test_win_rates_and_improvement():
    y = np.zeros((4, 3))
    a = np.full((4, 3), 0.1)
    b = np.array([[0.2] * 3, [0.2] * 3, [0.05] * 3, [0.1] * 3])
    assert m.win_rate_spectra(y, a, b) == pytest.approx((2 + 0.5) / 4)
    assert m.win_rate_energy(y, a, a) == pytest.approx(0.5)
    train = np.ones((5, 3))
    imp = m.energy_improvement(y, a, 2 * a, train)
    np.testing.assert_allclose(imp, (0.04 - 0.01) / 1.0)


def test_rse_pearson_edge():
    y = np.array([[1.0, 2.0, 3.0]])
    assert m.rse(y, y)[0] == 0.0
    assert m.rse(y, np.zeros_like(y))[0] == pytest.approx(1.0)
    assert m.pearson(y, 2 * y + 1)[0] == pytest.approx(1.0)
    energy = np.linspace(-10, 10, 81)
    spectra = np.stack([np.arctan(energy - 1.3), np.arctan(energy + 0.7)])
    np.testing.assert_allclose(m.edge_energy(energy, spectra), [1.3, -0.7], atol=0.03)
    np.testing.assert_allclose(
        m.edge_energy_error(energy, spectra[:1], spectra[1:]), [2.0], atol=0.05
    )
    with pytest.raises(ValueError, match="equal shape"):
        m.rse(y, y[:, :2])
