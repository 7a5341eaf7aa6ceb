"""Spectral domain mapping (SDM) by cluster blind signal separation (numpy only).

Measured spectra differ from simulated ones by a systematic "domain" distortion (broadening,
energy shift, background, normalisation...). SDM maps each measured spectrum onto a
simulation-like spectrum so that models trained on simulations can be applied to it:

1. the simulated spectra of one element are clustered with k-means; the ``n`` centroids form
   the simulation basis ``S~`` (``K x n``, one column per centroid);
2. the measured spectra ``T`` (``K x Nm``, one column per spectrum) are modelled as
   ``T = S C`` with an *experimental* basis ``S`` (``K x n``) and weights ``C`` (``n x Nm``),
   ``C >= 0`` and every column of ``C`` summing to 1. ``S`` and ``C`` are fitted by alternating
   minimisation of ``||T - S C||^2 + lam ||S - S~||^2`` (with the penalty annealed from a
   strong value down to ``lam`` so that random starts keep the basis anchored):

   - ``S = (T C^T + lam S~)(C C^T + lam I)^-1`` (regularised least squares, i.e. the
     pseudo-inverse update ``S = T C^+`` kept close to the centroids),
   - ``C``: for each column, the exact simplex-constrained least-squares solution;

   ``lam = closeness * Nm``, so ``closeness`` weighs the basis deviation against the mean
   per-spectrum squared residual and does not depend on how many spectra are fitted;
3. the fit is repeated from ``n_restarts`` seeded random initialisations of ``C`` and averaged.
   Column ``j`` of ``S`` is anchored to centroid ``j`` by the penalty, so restarts share the basis
   order; this is checked (the best column permutation between each restart and the best one
   must be the identity) and the spread of ``C`` over restarts is reported;
4. the mapped spectra are ``T' = S~ C``: the same mixture of the *simulation* basis.

All spectra share one energy grid (``K`` points, in eV); the public functions take row-major
arrays (one spectrum per row), i.e. ``simulated [Ns, K]`` and ``measured [Nm, K]``.

Example:
    >>> import numpy as np
    >>> from xas_models.sdm import sdm_map
    >>> e = np.linspace(0.0, 30.0, 120)
    >>> shapes = np.stack([np.exp(-((e - c) ** 2) / 8.0) for c in (8.0, 15.0, 22.0)])
    >>> rng = np.random.default_rng(0)
    >>> simulated = np.repeat(shapes, 20, axis=0) + 0.01 * rng.standard_normal((60, 120))
    >>> w = rng.dirichlet(np.ones(3) * 0.5, size=30)  # known weights [30, 3]
    >>> measured = w @ np.roll(shapes, 2, axis=1)  # shifted by 2 grid points
    >>> res = sdm_map(simulated, measured, n_clusters=3, n_restarts=3, seed=0)
    >>> res.mapped.shape, res.weights.shape, res.basis.shape
    ((30, 120), (30, 3), (3, 120))
    >>> bool(np.allclose(res.weights.sum(axis=1), 1.0))
    True
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np

from xas_models.errors import ModelError

__all__ = [
    "SDMResult",
    "SpectralDomainMapper",
    "kmeans",
    "project_simplex",
    "sdm_map",
    "simplex_lstsq",
]

# per-iteration decay of the annealed penalty weight
_ANNEAL_FACTOR = 0.8
# exact support enumeration for at most this many basis spectra (2**n - 1 supports)
_EXACT_MAX_N = 10


# --------------------------------------------------------------------------- validation


def _as_spectra(x, name: str) -> np.ndarray:
    """``x`` as a finite float64 array [N, K] (a single spectrum [K] becomes [1, K])."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ModelError(
            f"{name} must be a 2-D array [n_spectra, n_energies] with one spectrum per row "
            f"(got shape {np.shape(x)}); stack the spectra with np.stack on a common energy grid."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ModelError(
            f"{name} contains NaN or infinite values in {rows.size} spectra (rows "
            f"{rows[:10].tolist()}{'...' if rows.size > 10 else ''}); drop those spectra or "
            f"interpolate the missing points (e.g. np.interp on the common energy grid) first."
        )
    return arr


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ModelError(
            f"{name} must be an integer >= {minimum} (got {value!r}); pass e.g. {name}={max(minimum, 4)}."
        )
    return int(value)


# --------------------------------------------------------------------------- k-means


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances [N, n] between rows of ``x`` [N, K] and ``c`` [n, K]."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _kmeans_pp(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: indices of ``n`` distinct-ish starting rows of ``x``."""
    centers = [int(rng.integers(x.shape[0]))]
    d2 = _sq_dist(x, x[centers])[:, 0]
    for _ in range(1, n):
        total = d2.sum()
        if total <= 0.0:  # all remaining points coincide with a centre
            idx = int(rng.integers(x.shape[0]))
        else:
            idx = int(rng.choice(x.shape[0], p=d2 / total))
        centers.append(idx)
        d2 = np.minimum(d2, _sq_dist(x, x[[idx]])[:, 0])
    return x[centers].copy()


def kmeans(
    X,
    n_clusters: int,
    seed: int = 0,
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means clustering (k-means++ seeding, Lloyd iterations), best of ``n_init`` runs.

    Args:
        X: data [N, K], one sample (spectrum) per row.
        n_clusters: number of clusters ``n`` (1 <= n <= N).
        seed: seed of the random generator (the result is deterministic for a given seed).
        n_init: number of k-means++ initialisations; the one with the lowest inertia is kept.
        max_iter: maximum Lloyd iterations per initialisation.
        tol: stop when the centroids move by less than ``tol`` (squared, relative to the data
            variance).

    Returns:
        ``(centroids, labels)``: centroids [n, K] and the cluster index [N] of every sample.
        An empty cluster is re-seeded with the sample farthest from its centroid.
    """
    x = _as_spectra(X, "X")
    n = _check_int(n_clusters, "n_clusters", 1)
    n_init = _check_int(n_init, "n_init", 1)
    max_iter = _check_int(max_iter, "max_iter", 1)
    if x.shape[0] < n:
        raise ModelError(
            f"k-means needs at least n_clusters={n} samples (got {x.shape[0]}); "
            f"lower n_clusters or provide more samples."
        )
    rng = np.random.default_rng(seed)
    scale = max(float(x.var(axis=0).sum()), np.finfo(float).tiny)
    best = (np.inf, None, None)
    for _ in range(n_init):
        c = _kmeans_pp(x, n, rng)
        for _ in range(max_iter):
            d = _sq_dist(x, c)
            labels = d.argmin(1)
            new = c.copy()
            for j in range(n):
                members = labels == j
                if members.any():
                    new[j] = x[members].mean(0)
                else:  # re-seed an empty cluster with the worst-fitted sample
                    far = int(d[np.arange(x.shape[0]), labels].argmax())
                    new[j] = x[far]
                    labels[far] = j
            shift = float(((new - c) ** 2).sum()) / scale
            c = new
            if shift <= tol:
                break
        d = _sq_dist(x, c)
        labels = d.argmin(1)
        inertia = float(d[np.arange(x.shape[0]), labels].sum())
        if inertia < best[0]:
            best = (inertia, c, labels)
    return best[1], best[2]


# --------------------------------------------------------------------------- simplex


def project_simplex(v, axis: int = -1) -> np.ndarray:
    """Exact Euclidean projection onto the probability simplex ``{c : c >= 0, sum(c) = 1}``.

    Sort-based algorithm (Held et al. 1974; Duchi et al. 2008), ``O(n log n)`` per vector.

    Args:
        v: array; every 1-D slice along ``axis`` is projected independently.
        axis: the axis holding the simplex coordinates.

    Returns:
        The projection, same shape as ``v``.
    """
    a = np.moveaxis(np.asarray(v, dtype=np.float64), axis, -1)
    if not np.isfinite(a).all():
        raise ModelError("project_simplex got NaN or infinite values; pass finite numbers.")
    n = a.shape[-1]
    u = -np.sort(-a, axis=-1)  # descending
    css = np.cumsum(u, axis=-1) - 1.0
    k = np.arange(1, n + 1)
    cond = u - css / k > 0
    rho = n - 1 - np.argmax(cond[..., ::-1], axis=-1)  # last index where cond holds
    theta = np.take_along_axis(css, rho[..., None], axis=-1) / (rho[..., None] + 1.0)
    out = np.maximum(a - theta, 0.0)
    return np.moveaxis(out, -1, axis)


def _simplex_lstsq_exact(S: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Exact simplex-constrained least squares by enumerating the supports (small ``n``)."""
    n = S.shape[1]
    m = T.shape[1]
    best_c = np.zeros((n, m))
    best_f = np.full(m, np.inf)
    G = S.T @ S
    B = S.T @ T  # [n, m]
    tt = (T * T).sum(0)
    for size in range(1, n + 1):
        for A in itertools.combinations(range(n), size):
            A = list(A)
            if size == 1:
                c_a = np.ones((1, m))
            else:
                # KKT system of min ||t - S_A c||^2 s.t. sum(c) = 1 (shared by all columns)
                kkt = np.zeros((size + 1, size + 1))
                kkt[:size, :size] = G[np.ix_(A, A)]
                kkt[:size, size] = 1.0
                kkt[size, :size] = 1.0
                rhs = np.vstack([B[A], np.ones((1, m))])
                c_a = (np.linalg.pinv(kkt) @ rhs)[:size]
            feasible = (c_a >= -1e-12).all(0)
            if not feasible.any():
                continue
            c_a = np.maximum(c_a, 0.0)
            c_a /= c_a.sum(0, keepdims=True)
            GA = G[np.ix_(A, A)]
            f = tt - 2.0 * (B[A] * c_a).sum(0) + (c_a * (GA @ c_a)).sum(0)
            better = feasible & (f < best_f - 1e-14 * np.maximum(tt, 1.0))
            if better.any():
                best_f[better] = f[better]
                best_c[:, better] = 0.0
                best_c[np.ix_(A, np.nonzero(better)[0])] = c_a[:, better]
    return best_c


def _simplex_lstsq_pg(
    S: np.ndarray, T: np.ndarray, C0: np.ndarray | None, n_iter: int = 5000, tol: float = 1e-12
) -> np.ndarray:
    """Simplex-constrained least squares by accelerated projected gradient (FISTA), large ``n``."""
    n, m = S.shape[1], T.shape[1]
    G = S.T @ S
    B = S.T @ T
    L = max(float(np.linalg.eigvalsh(G)[-1]), np.finfo(float).tiny)
    C = np.full((n, m), 1.0 / n) if C0 is None else project_simplex(C0, axis=0)
    Y, t = C.copy(), 1.0
    for _ in range(n_iter):
        C_new = project_simplex(Y - (G @ Y - B) / L, axis=0)
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        Y = C_new + ((t - 1.0) / t_new) * (C_new - C)
        step = float(np.abs(C_new - C).max())
        C, t = C_new, t_new
        if step <= tol:
            break
    return C


def simplex_lstsq(S, T, C0=None) -> np.ndarray:
    """Solve ``min_c ||t - S c||^2`` s.t. ``c >= 0, sum(c) = 1`` for every column ``t`` of ``T``.

    Exact (enumeration of the active supports, vectorised over columns) for ``n <= 10`` basis
    columns; accelerated projected gradient (converged to ``1e-12``) above.

    Args:
        S: basis [K, n] (one basis spectrum per column).
        T: targets [K, m] (one spectrum per column).
        C0: optional starting weights [n, m] (projected-gradient path only).

    Returns:
        Weights C [n, m], every column on the probability simplex.
    """
    S = np.asarray(S, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    if S.ndim != 2 or T.ndim != 2 or S.shape[0] != T.shape[0]:
        raise ModelError(
            f"simplex_lstsq needs S [K, n] and T [K, m] on the same grid (got {S.shape} and "
            f"{T.shape}); pass spectra as columns on one common energy grid."
        )
    if S.shape[1] <= _EXACT_MAX_N:
        return _simplex_lstsq_exact(S, T)
    return _simplex_lstsq_pg(S, T, C0)


# --------------------------------------------------------------------------- SDM


@dataclass
class SDMResult:
    """Result of a spectral domain mapping (row-major: one spectrum per row).

    Attributes:
        mapped: simulation-like versions of the measured spectra, ``T' = S~ C`` [Nm, K].
        basis: fitted experimental basis ``S`` (restart mean) [n, K].
        centroids: simulation basis ``S~`` (k-means centroids) [n, K].
        weights: mixing weights ``C`` (restart mean; non-negative, rows sum to 1) [Nm, n].
        weights_std: standard deviation of the weights over the restarts [Nm, n].
        basis_std: standard deviation of the experimental basis over the restarts [n, K].
        reconstruction_error: RMS of ``measured - weights @ basis`` per spectrum [Nm].
        labels: k-means cluster of every simulated spectrum [Ns].
        objective: final objective ``||T - S C||^2 + lam ||S - S~||^2`` per restart [R].
        n_iter: alternating iterations used per restart [R].
        permutation_consistent: True when every restart's best basis-column permutation
            relative to the best restart is the identity (restarts share the basis order).
        closeness: the closeness used (``lam = closeness * Nm``).
    """

    mapped: np.ndarray
    basis: np.ndarray
    centroids: np.ndarray
    weights: np.ndarray
    weights_std: np.ndarray
    basis_std: np.ndarray
    reconstruction_error: np.ndarray
    labels: np.ndarray
    objective: np.ndarray
    n_iter: np.ndarray
    permutation_consistent: bool
    closeness: float
    permutations: list[tuple[int, ...]] = field(default_factory=list)


def _best_permutation(S: np.ndarray, ref: np.ndarray) -> tuple[int, ...]:
    """Permutation p minimising ``||S[:, p] - ref||`` (exact for n <= 7, greedy above)."""
    n = S.shape[1]
    d = ((S[:, :, None] - ref[:, None, :]) ** 2).sum(0)  # d[i, j] = ||S_i - ref_j||^2
    if n <= 7:
        best, best_p = np.inf, tuple(range(n))
        for p in itertools.permutations(range(n)):
            cost = d[list(p), range(n)].sum()
            if cost < best:  # identity comes first, so ties keep the identity
                best, best_p = cost, p
        return best_p
    p = [-1] * n
    d = d.copy()
    for _ in range(n):
        i, j = np.unravel_index(np.argmin(d), d.shape)
        p[j] = int(i)
        d[i, :] = np.inf
        d[:, j] = np.inf
    return tuple(p)


class SpectralDomainMapper:
    """Map measured spectra onto simulation-like spectra (cluster blind signal separation).

    Args:
        n_clusters: number of k-means clusters ``n`` = basis spectra (>= 1).
        n_restarts: random initialisations of the weights ``C`` averaged over (>= 1).
        max_iter: maximum alternating (S, C) iterations per restart (>= 1).
        closeness: how strongly the experimental basis ``S`` is kept close to the centroids
            ``S~``: ``lam = closeness * Nm`` in ``||T - S C||^2 + lam ||S - S~||^2`` (>= 0; 0
            gives the plain pseudo-inverse update ``S = T C^+``, which is not anchored, so the
            basis order and ``T'`` become arbitrary). Larger values make ``T'`` closer to a plain
            fit of the measured spectra with the simulation basis.
        seed: seed of k-means and of the random restarts.
        tol: relative objective decrease below which a restart stops.
        kmeans_n_init: k-means++ initialisations.
        anneal: start every restart with the stronger closeness ``anneal_start`` and decay it
            by 0.8 per iteration down to ``closeness`` (default). Without it, the first
            ``S = T C^+`` updates from a random ``C`` are close to arbitrary mixtures of the
            measured spectra and the alternation often stalls in a local minimum with a permuted
            or collapsed basis.
        anneal_start: the closeness the annealing starts from (> closeness to have an effect).

    Attributes (after :meth:`fit`):
        result_: the :class:`SDMResult` of the fitted measured spectra.
        centroids_: ``S~`` [n, K]; basis_: fitted ``S`` [n, K].
    """

    def __init__(
        self,
        n_clusters: int = 4,
        n_restarts: int = 10,
        max_iter: int = 500,
        closeness: float = 0.01,
        seed: int = 0,
        tol: float = 1e-10,
        kmeans_n_init: int = 10,
        anneal: bool = True,
        anneal_start: float = 10.0,
    ) -> None:
        self.n_clusters = _check_int(n_clusters, "n_clusters", 1)
        self.n_restarts = _check_int(n_restarts, "n_restarts", 1)
        self.max_iter = _check_int(max_iter, "max_iter", 1)
        self.kmeans_n_init = _check_int(kmeans_n_init, "kmeans_n_init", 1)
        if not np.isfinite(closeness) or closeness < 0:
            raise ModelError(
                f"closeness must be a finite number >= 0 (got {closeness!r}); pass e.g. closeness=0.01."
            )
        self.closeness = float(closeness)
        if not np.isfinite(anneal_start) or anneal_start < 0:
            raise ModelError(
                f"anneal_start must be a finite number >= 0 (got {anneal_start!r}); "
                f"pass e.g. anneal_start=10.0."
            )
        self.anneal = bool(anneal)
        self.anneal_start = float(anneal_start)
        self.seed = int(seed)
        self.tol = float(tol)
        self.result_: SDMResult | None = None
        self.centroids_: np.ndarray | None = None
        self.basis_: np.ndarray | None = None

    # ----------------------------------------------------------------- internals

    def _one_restart(self, T: np.ndarray, S0: np.ndarray, lam: float, rng: np.random.Generator):
        n, m = S0.shape[1], T.shape[1]
        C = rng.dirichlet(np.ones(n), size=m).T  # random start [n, m]
        eye = np.eye(n)
        # continuation: the penalty starts strong (S ~ S~, which fixes the basis order) and
        # decays geometrically to the target; convergence is only tested at the target
        lam_t = max(lam, self.anneal_start * m) if self.anneal else lam
        f_prev = f = np.inf
        n_it = 0
        for _ in range(self.max_iter):
            n_it += 1
            if lam_t > 0:
                S = np.linalg.solve((C @ C.T + lam_t * eye).T, (T @ C.T + lam_t * S0).T).T
            else:  # plain pseudo-inverse update S = T C^+
                S = T @ np.linalg.pinv(C)
            C = simplex_lstsq(S, T, C)
            f = float(((T - S @ C) ** 2).sum() + lam * ((S - S0) ** 2).sum())
            if lam_t > lam:
                lam_t = max(lam, lam_t * _ANNEAL_FACTOR)
                continue
            if np.isfinite(f_prev) and f_prev - f <= self.tol * max(f_prev, np.finfo(float).tiny):
                break
            f_prev = f
        return S, C, f, n_it

    # ----------------------------------------------------------------- API

    def fit(self, simulated, measured) -> SpectralDomainMapper:
        """Cluster ``simulated`` [Ns, K] and fit the mapping of ``measured`` [Nm, K].

        Both arrays hold one spectrum per row on the same energy grid of ``K`` points (eV).
        Returns ``self``; the result is in :attr:`result_`.
        """
        sim = _as_spectra(simulated, "simulated")
        meas = _as_spectra(measured, "measured")
        if sim.shape[1] != meas.shape[1]:
            raise ModelError(
                f"simulated and measured spectra are on grids of different length "
                f"({sim.shape[1]} vs {meas.shape[1]} energies); interpolate both onto one common "
                f"energy grid (e.g. np.interp(grid, energies, mu)) before mapping."
            )
        n = self.n_clusters
        if sim.shape[0] < n:
            raise ModelError(
                f"need at least n_clusters={n} simulated spectra to build the cluster basis "
                f"(got {sim.shape[0]}); lower n_clusters or add simulated spectra."
            )
        centroids, labels = kmeans(sim, n, seed=self.seed, n_init=self.kmeans_n_init)
        S0 = centroids.T  # [K, n]
        T = meas.T  # [K, Nm]
        m = T.shape[1]
        lam = self.closeness * m
        rngs = [np.random.default_rng([self.seed, r]) for r in range(self.n_restarts)]
        runs = [self._one_restart(T, S0, lam, rng) for rng in rngs]
        Ss = np.stack([r[0] for r in runs])  # [R, K, n]
        Cs = np.stack([r[1] for r in runs])  # [R, n, m]
        obj = np.array([r[2] for r in runs])
        n_iter = np.array([r[3] for r in runs])
        ref = Ss[int(obj.argmin())]
        perms = [_best_permutation(S, ref) for S in Ss]
        identity = tuple(range(n))
        consistent = all(p == identity for p in perms)
        if not consistent:
            bad = sum(p != identity for p in perms)
            warnings.warn(
                f"SDM: {bad} of {len(perms)} restarts converged to a permuted basis; the restart "
                f"average mixes them. Increase closeness (currently {self.closeness}) to anchor "
                f"the basis to the cluster centroids.",
                RuntimeWarning,
                stacklevel=2,
            )
        S = Ss.mean(0)
        C = Cs.mean(0)
        resid = T - S @ C
        self.centroids_ = centroids
        self.basis_ = S.T.copy()
        self.result_ = SDMResult(
            mapped=(S0 @ C).T.copy(),
            basis=S.T.copy(),
            centroids=centroids,
            weights=C.T.copy(),
            weights_std=Cs.std(0).T.copy(),
            basis_std=Ss.std(0).T.copy(),
            reconstruction_error=np.sqrt((resid**2).mean(0)),
            labels=labels,
            objective=obj,
            n_iter=n_iter,
            permutation_consistent=consistent,
            closeness=self.closeness,
            permutations=perms,
        )
        return self

    def _check_fitted(self, measured) -> np.ndarray:
        if self.basis_ is None or self.centroids_ is None:
            raise ModelError(
                "SpectralDomainMapper is not fitted; call fit(simulated, measured) first."
            )
        meas = _as_spectra(measured, "measured")
        if meas.shape[1] != self.basis_.shape[1]:
            raise ModelError(
                f"measured spectra have {meas.shape[1]} energies but the mapper was fitted on "
                f"{self.basis_.shape[1]}; interpolate them onto the fitted energy grid first."
            )
        return meas

    def weights(self, measured) -> np.ndarray:
        """Weights [Nm, n] of ``measured`` [Nm, K] on the fitted experimental basis (simplex LS)."""
        meas = self._check_fitted(measured)
        return simplex_lstsq(self.basis_.T, meas.T).T

    def transform(self, measured) -> np.ndarray:
        """Simulation-like spectra ``T' = S~ C`` [Nm, K] of ``measured`` [Nm, K].

        ``C`` is solved for the given spectra with the fitted experimental basis held fixed,
        so spectra not seen by :meth:`fit` can be mapped too.
        """
        return self.weights(measured) @ self.centroids_

    def fit_transform(self, simulated, measured) -> np.ndarray:
        """:meth:`fit` then return the mapped spectra [Nm, K] (restart-averaged weights)."""
        return self.fit(simulated, measured).result_.mapped


def sdm_map(
    simulated,
    measured,
    n_clusters: int = 4,
    n_restarts: int = 10,
    max_iter: int = 500,
    closeness: float = 0.01,
    seed: int = 0,
) -> SDMResult:
    """Spectral domain mapping in one call; see :class:`SpectralDomainMapper`.

    Args:
        simulated: simulated spectra of one element [Ns, K] (Ns >= n_clusters).
        measured: measured spectra [Nm, K] on the same energy grid.

    Returns:
        The :class:`SDMResult` (``mapped`` [Nm, K], ``basis`` [n, K], ``weights`` [Nm, n], ...).
    """
    mapper = SpectralDomainMapper(
        n_clusters=n_clusters,
        n_restarts=n_restarts,
        max_iter=max_iter,
        closeness=closeness,
        seed=seed,
    )
    return mapper.fit(simulated, measured).result_
