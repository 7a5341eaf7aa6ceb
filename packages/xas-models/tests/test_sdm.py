"""Spectral domain mapping: k-means, simplex projection, weight recovery, errors (numpy, fast)."""

from __future__ import annotations

import doctest
import itertools
import subprocess
import sys

import numpy as np
import pytest

from xas_models import ModelError
from xas_models import sdm as sdm_module
from xas_models.sdm import (
    SDMResult,
    SpectralDomainMapper,
    kmeans,
    project_simplex,
    sdm_map,
    simplex_lstsq,
)
from xas_models.sdm import _simplex_lstsq_pg as simplex_lstsq_pg

# ----------------------------------------------------------------------------- helpers


def _brute_project(v: np.ndarray) -> np.ndarray:
    """Projection onto the simplex by enumerating the faces (independent of the sort method)."""
    n = v.size
    best, best_d = None, np.inf
    for size in range(1, n + 1):
        for face in itertools.combinations(range(n), size):
            x = np.zeros(n)
            f = list(face)
            x[f] = v[f] - (v[f].sum() - 1.0) / size  # projection onto the face's affine hull
            if (x >= -1e-12).all():
                d = ((x - v) ** 2).sum()
                if d < best_d:
                    best, best_d = x, d
    return best


def _synthetic(seed: int = 0, shift: float = 1.0, sigma: float = 0.8, noise: float = 0.002):
    """XAS-like synthetic domain-shift problem with known weights.

    Four simulated shapes (a common arctan edge + one distinct peak each) -> 25 simulated spectra
    per shape (tiny jitter). Measured = Dirichlet(0.5) mixtures of the *distorted* shapes
    (Gaussian broadening ``sigma`` eV, energy shift ``shift`` eV) plus noise.
    """
    rng = np.random.default_rng(seed)
    e = np.linspace(-5.0, 40.0, 160)  # eV
    edge = 0.5 + np.arctan(e / 0.8) / np.pi
    base = np.stack([edge + np.exp(-0.5 * ((e - c) / 1.2) ** 2) for c in (6.0, 14.0, 22.0, 30.0)])
    sim = np.array(
        [
            np.interp(e - rng.normal(0, 0.05), e, b) * (1 + rng.normal(0, 0.01))
            + 0.003 * rng.standard_normal(e.size)
            for b in base
            for _ in range(25)
        ]
    )
    de = e[1] - e[0]
    kx = np.arange(-40, 41) * de
    ker = np.exp(-0.5 * (kx / sigma) ** 2)
    ker /= ker.sum()

    def distort(b):
        pad = np.concatenate([np.full(40, b[0]), b, np.full(40, b[-1])])
        return np.interp(e - shift, e, np.convolve(pad, ker, mode="same")[40:-40])

    dist = np.stack([distort(b) for b in base])
    w = rng.dirichlet(np.full(4, 0.5), size=60)
    meas = w @ dist + noise * rng.standard_normal((60, e.size))
    return {"e": e, "base": base, "sim": sim, "dist": dist, "w": w, "meas": meas, "ideal": w @ base}


def _order(centroids: np.ndarray, base: np.ndarray) -> list[int]:
    """Index of the centroid nearest each true base shape."""
    return [int(np.argmin(((centroids - b) ** 2).sum(1))) for b in base]


def _rms(a, b) -> float:
    return float(np.sqrt(((np.asarray(a) - np.asarray(b)) ** 2).mean()))


@pytest.fixture(scope="module")
def problem():
    return _synthetic()


@pytest.fixture(scope="module")
def fitted(problem):
    return sdm_map(problem["sim"], problem["meas"], n_clusters=4, n_restarts=3, seed=0)


# ----------------------------------------------------------------------------- k-means


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(1)
    means = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]])
    truth = np.repeat(np.arange(4), 30)
    X = means[truth] + 0.3 * rng.standard_normal((120, 3))
    perm = rng.permutation(120)
    X, truth = X[perm], truth[perm]
    centroids, labels = kmeans(X, 4, seed=0, n_init=5)
    assert centroids.shape == (4, 3) and labels.shape == (120,)
    # the partition equals the truth up to renaming, and every centroid sits on a true mean
    mapping = {int(t): int(labels[truth == t][0]) for t in range(4)}
    assert len(set(mapping.values())) == 4
    assert all((labels[truth == t] == mapping[t]).all() for t in range(4))
    for t in range(4):
        assert np.linalg.norm(centroids[mapping[t]] - means[t]) < 0.2
    # deterministic for a seed
    c2, l2 = kmeans(X, 4, seed=0, n_init=5)
    np.testing.assert_array_equal(centroids, c2)
    np.testing.assert_array_equal(labels, l2)


def test_kmeans_single_cluster_and_duplicates():
    X = np.ones((5, 4))
    centroids, labels = kmeans(X, 2, seed=0)  # all points identical: no crash, no NaN
    assert np.isfinite(centroids).all() and set(labels.tolist()) <= {0, 1}
    c1, l1 = kmeans(np.arange(12.0).reshape(4, 3), 1)
    np.testing.assert_allclose(c1[0], np.arange(12.0).reshape(4, 3).mean(0))
    assert (l1 == 0).all()


# ----------------------------------------------------------------------------- simplex


def test_project_simplex_properties():
    rng = np.random.default_rng(2)
    V = 3.0 * rng.standard_normal((200, 6))
    P = project_simplex(V)
    assert (P >= 0).all()
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(project_simplex(P), P, atol=1e-12)  # idempotent
    # along another axis
    np.testing.assert_allclose(project_simplex(V.T, axis=0), P.T, atol=1e-12)
    # points already on the simplex are unchanged
    Q = rng.dirichlet(np.ones(6), size=20)
    np.testing.assert_allclose(project_simplex(Q), Q, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_project_simplex_matches_brute_force(n):
    rng = np.random.default_rng(n)
    for _ in range(50):
        v = 2.0 * rng.standard_normal(n)
        np.testing.assert_allclose(project_simplex(v), _brute_project(v), atol=1e-10)


def test_simplex_lstsq_exact_matches_projected_gradient_and_grid():
    rng = np.random.default_rng(3)
    S = rng.standard_normal((20, 3))
    T = rng.standard_normal((20, 8))
    C = simplex_lstsq(S, T)
    assert (C >= 0).all()
    np.testing.assert_allclose(C.sum(0), 1.0, atol=1e-12)
    C_pg = simplex_lstsq_pg(S, T, None, n_iter=20000, tol=1e-14)
    np.testing.assert_allclose(C, C_pg, atol=1e-6)
    # no point on a fine grid of the 2-simplex does better
    g = np.linspace(0.0, 1.0, 201)
    a, b = np.meshgrid(g, g)
    keep = a + b <= 1.0 + 1e-12
    grid = np.stack([a[keep], b[keep], 1.0 - a[keep] - b[keep]])  # [3, G]
    for j in range(T.shape[1]):
        f_opt = ((T[:, j] - S @ C[:, j]) ** 2).sum()
        f_grid = ((T[:, [j]] - S @ grid) ** 2).sum(0).min()
        assert f_opt <= f_grid + 1e-9


# ----------------------------------------------------------------------------- SDM


def test_sdm_recovers_weights_and_maps_towards_simulation(problem, fitted):
    res = fitted
    assert isinstance(res, SDMResult)
    nm, k = problem["meas"].shape
    assert res.mapped.shape == (nm, k)
    assert res.basis.shape == res.centroids.shape == (4, k)
    assert res.weights.shape == res.weights_std.shape == (nm, 4)
    assert res.reconstruction_error.shape == (nm,)
    assert res.labels.shape == (problem["sim"].shape[0],)
    assert (res.weights >= 0).all()
    np.testing.assert_allclose(res.weights.sum(1), 1.0, atol=1e-10)

    order = _order(res.centroids, problem["base"])
    assert sorted(order) == [0, 1, 2, 3]
    w_err = np.abs(res.weights[:, order] - problem["w"])
    assert w_err.max() < 0.05, w_err.max()
    assert w_err.mean() < 0.01, w_err.mean()
    # the mapped spectra are much closer to the undistorted mixture than the measured ones
    d_mapped = _rms(res.mapped, problem["ideal"])
    d_meas = _rms(problem["meas"], problem["ideal"])
    assert d_mapped < 0.1 * d_meas, (d_mapped, d_meas)
    # the fitted experimental basis is the distorted one; the fit reaches the noise level
    assert _rms(res.basis[order], problem["dist"]) < 0.2 * _rms(problem["base"], problem["dist"])
    assert res.reconstruction_error.mean() < 0.01  # noise 0.002 + penalty bias
    # restarts agree (anchored basis, no permutation) and their spread is reported
    assert res.permutation_consistent
    assert all(p == (0, 1, 2, 3) for p in res.permutations)
    assert res.weights_std.max() < 1e-3
    assert res.objective.shape == res.n_iter.shape == (3,)


def test_sdm_is_deterministic(problem, fitted):
    again = sdm_map(problem["sim"], problem["meas"], n_clusters=4, n_restarts=3, seed=0)
    np.testing.assert_array_equal(fitted.weights, again.weights)
    np.testing.assert_array_equal(fitted.mapped, again.mapped)
    np.testing.assert_array_equal(fitted.weights_std, again.weights_std)


def test_transform_maps_new_spectra(problem):
    mapper = SpectralDomainMapper(n_clusters=4, n_restarts=2, seed=0)
    mapper.fit(problem["sim"], problem["meas"][:40])
    res = mapper.result_
    order = _order(res.centroids, problem["base"])
    new = problem["meas"][40:]
    w_new = mapper.weights(new)
    assert np.abs(w_new[:, order] - problem["w"][40:]).max() < 0.05
    mapped = mapper.transform(new)
    assert mapped.shape == new.shape
    assert _rms(mapped, problem["ideal"][40:]) < 0.2 * _rms(new, problem["ideal"][40:])
    # one spectrum [K] works as [1, K]
    assert mapper.transform(new[0]).shape == (1, new.shape[1])


def test_unanchored_fit_warns_or_stays_consistent(problem):
    """Without annealing random starts may stall in permuted minima: that is reported."""
    mapper = SpectralDomainMapper(n_clusters=4, n_restarts=4, anneal=False, max_iter=60, seed=0)
    with pytest.warns(RuntimeWarning, match="permuted basis"):
        mapper.fit(problem["sim"], problem["meas"])
    assert not mapper.result_.permutation_consistent


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise_with_fix(problem):
    sim, meas = problem["sim"], problem["meas"]
    with pytest.raises(ModelError, match="different length.*interpolate"):
        sdm_map(sim, meas[:, :-3])
    bad = meas.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ModelError, match="NaN.*rows \\[3\\].*interpolate"):
        sdm_map(sim, bad)
    bad_sim = sim.copy()
    bad_sim[0, 0] = np.inf
    with pytest.raises(ModelError, match="simulated contains NaN"):
        sdm_map(bad_sim, meas)
    with pytest.raises(ModelError, match="at least n_clusters=4 simulated.*lower n_clusters"):
        sdm_map(sim[:3], meas)
    for n in (0, -2):
        with pytest.raises(ModelError, match="n_clusters must be an integer >= 1"):
            SpectralDomainMapper(n_clusters=n)
    with pytest.raises(ModelError, match="n_clusters must be an integer"):
        SpectralDomainMapper(n_clusters=2.5)
    with pytest.raises(ModelError, match="n_restarts"):
        SpectralDomainMapper(n_restarts=0)
    with pytest.raises(ModelError, match="closeness"):
        SpectralDomainMapper(closeness=-1.0)
    with pytest.raises(ModelError, match="2-D array"):
        sdm_map(sim[None], meas)
    with pytest.raises(ModelError, match="not fitted"):
        SpectralDomainMapper().transform(meas)
    with pytest.raises(ModelError, match="at least n_clusters"):
        kmeans(sim[:2], 3)


# ----------------------------------------------------------------------------- module


def test_docstring_example():
    failures, tried = doctest.testmod(sdm_module, verbose=False)
    assert tried > 0 and failures == 0


def test_lazy_exports_and_no_torch():
    import xas_models

    assert "SpectralDomainMapper" in dir(xas_models)
    code = (
        "import sys; import xas_models.sdm; "
        "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
