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


def test_ridge_eta_on_a_store(tmp_path):
    """Features that determine the spectrum linearly give a high eta; noise gives ~1."""
    from pymatgen.core import Lattice, Structure

    from xas_data.store import XASDataset
    from xas_eval.feature_comparison import ridge_eta

    rng = np.random.default_rng(0)
    n, k = 120, 30
    ds = XASDataset.create(tmp_path / "s.zarr", "s")
    ids = [f"m{i}" for i in range(n)]
    s = Structure(Lattice.cubic(4), ["Cu"], [[0, 0, 0]])
    ds.add_materials(ids, [s] * n, ["t"] * n)
    latent = rng.normal(size=(n, 3))
    basis = rng.random((3, k))
    spectra = 2 + latent @ basis + 0.01 * rng.normal(size=(n, k))
    splits = ["train"] * 90 + ["val"] * 30
    ds.append_spectra("Cu", "FEFF", np.arange(k) * 0.25, ids, [0] * n, spectra, splits=splits)
    good = ds.create_features("good", 3)
    good[:] = latent
    noise = ds.create_features("noise", 3)
    noise[:] = rng.normal(size=(n, 3))
    assert ridge_eta(ds, "Cu", "FEFF", "good").eta > 50
    assert ridge_eta(ds, "Cu", "FEFF", "noise").eta < 1.5
