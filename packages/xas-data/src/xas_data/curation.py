"""Curation of X-ray absorption spectra (XANES): validation, resampling, cleaning, normalisation.

All functions are pure numpy/scipy. Conventions used throughout:

* energies are in eV, 1-D, finite and strictly increasing, shape ``[n]``;
* a spectrum ``mu`` has shape ``[n]`` (one spectrum) or ``[m, n]`` (``m`` spectra that share
  the same energy axis), in arbitrary absorption units unless stated otherwise;
* a stack of spectra already on a common grid has shape ``[N, K]``.

Bad input raises :class:`xas_data.errors.SpectrumError` with a message that names the problem
and how to fix it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import interpolate, signal

from xas_data.errors import SpectrumError

__all__ = [
    "BOHR_RADIUS_ANGSTROM",
    "OUTLIER_C",
    "CurationRecord",
    "EdgeStepNormalization",
    "align_to_reference",
    "broaden",
    "duplicate_keep_mask",
    "find_e0",
    "interpolate_to_grid",
    "normalize_edge_step",
    "omnixas_label_scale",
    "outlier_c_for",
    "outlier_keep_mask",
    "record_step",
    "shift_energy",
    "validate_energy",
    "validate_spectrum",
]

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

#: Bohr radius in angstrom (CODATA 2018).
BOHR_RADIUS_ANGSTROM = 0.529177210903

#: Outlier-removal width ``c`` (in population standard deviations) per fidelity base name.
#: FEFF (2.5) and VASP (5.0) are the values used by OmniXAS; EXP follows the VASP value and
#: FDMNES the FEFF value (both are choices of this package, not OmniXAS values).
OUTLIER_C: dict[str, float] = {"FEFF": 2.5, "VASP": 5.0, "EXP": 5.0, "FDMNES": 2.5}

#: Largest number of points of the internal uniform grids used by ``broaden`` and
#: ``align_to_reference``.
MAX_UNIFORM_POINTS = 200_000

#: Tiny negative absorption tolerated by ``validate_spectrum`` (relative to ``max|mu|``).
NEGATIVE_TOLERANCE = 1e-6


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def validate_energy(energy: ArrayLike, name: str = "spectrum") -> FloatArray:
    """Check an energy axis and return it as a float64 array.

    Args:
        energy: energies in eV, shape ``[n]``, ``n >= 2``.
        name: label of the spectrum, used in error messages.

    Returns:
        The energies as a float64 array of shape ``[n]``.

    Raises:
        SpectrumError: not 1-D, fewer than 2 points, non-finite values or not strictly
            increasing; the message names ``name`` and the first bad index.
    """
    e = np.asarray(energy, dtype=np.float64)
    if e.ndim != 1:
        raise SpectrumError(
            f"{name}: energy must be 1-D, got shape {e.shape}; pass a single energy axis in eV"
        )
    if e.size < 2:
        raise SpectrumError(
            f"{name}: energy has {e.size} point(s); a spectrum needs at least 2 energies"
        )
    bad = np.flatnonzero(~np.isfinite(e))
    if bad.size:
        i = int(bad[0])
        raise SpectrumError(
            f"{name}: energy[{i}] = {e[i]} is not finite; remove or repair non-finite energies"
        )
    steps = np.diff(e)
    bad = np.flatnonzero(steps <= 0.0)
    if bad.size:
        i = int(bad[0]) + 1
        raise SpectrumError(
            f"{name}: energy is not strictly increasing at index {i} "
            f"(energy[{i - 1}] = {e[i - 1]}, energy[{i}] = {e[i]}); sort the points by energy "
            "and merge duplicated energies"
        )
    return e


def validate_spectrum(
    energy: ArrayLike,
    mu: ArrayLike,
    name: str = "spectrum",
    allow_negative: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """Check a spectrum (energy axis and absorption) and return both as float64 arrays.

    Args:
        energy: energies in eV, shape ``[n]`` (see :func:`validate_energy`).
        mu: absorption, shape ``[n]`` or ``[m, n]`` (rows share ``energy``).
        name: label of the spectrum, used in error messages.
        allow_negative: accept negative ``mu``. When False, values below
            ``-1e-6 * max|mu|`` (per row) are rejected; tinier negatives (round-off) pass.

    Returns:
        ``(energy [n], mu [n] or [m, n])`` as float64 arrays.

    Raises:
        SpectrumError: bad energy axis, length mismatch, non-finite or negative ``mu``.
    """
    e = validate_energy(energy, name)
    y = np.asarray(mu, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[-1] != e.size:
        raise SpectrumError(
            f"{name}: mu has shape {y.shape} but energy has {e.size} points; mu must have shape "
            f"[{e.size}] or [m, {e.size}] (one value per energy)"
        )
    bad = np.argwhere(~np.isfinite(y))
    if bad.size:
        idx = tuple(int(i) for i in bad[0])
        where = idx[0] if y.ndim == 1 else idx
        raise SpectrumError(
            f"{name}: mu at index {where} is {y[idx]} (not finite); drop this spectrum or "
            "repair the value"
        )
    if not allow_negative:
        scale = np.max(np.abs(y), axis=-1, keepdims=True)
        bad = np.argwhere(y < -NEGATIVE_TOLERANCE * scale)
        if bad.size:
            idx = tuple(int(i) for i in bad[0])
            where = idx[0] if y.ndim == 1 else idx
            raise SpectrumError(
                f"{name}: mu at index {where} is negative ({y[idx]:.6g}); absorption must be "
                "non-negative: fix the background subtraction or pass allow_negative=True"
            )
    return e, y


# --------------------------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------------------------


def interpolate_to_grid(
    energy: ArrayLike,
    mu: ArrayLike,
    grid: ArrayLike,
    extrapolate: Literal["clamp", "error"] = "clamp",
) -> FloatArray:
    """Linearly interpolate spectra onto an energy grid.

    Args:
        energy: energies in eV, shape ``[n]``, strictly increasing.
        mu: values, shape ``[n]`` or ``[m, n]`` (rows share ``energy``).
        grid: target energies in eV, shape ``[K]`` (any order).
        extrapolate: ``"clamp"`` returns the first/last value for grid points outside
            ``[energy[0], energy[-1]]`` (like ``np.interp``; what OmniXAS did); ``"error"``
            raises instead.

    Returns:
        Interpolated values, shape ``[K]`` or ``[m, K]``.

    Raises:
        SpectrumError: bad inputs, or ``extrapolate="error"`` and the grid leaves the data range.
    """
    e = validate_energy(energy, "interpolate_to_grid")
    y = np.asarray(mu, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[-1] != e.size:
        raise SpectrumError(
            f"interpolate_to_grid: mu has shape {y.shape} but energy has {e.size} points; "
            f"pass mu of shape [{e.size}] or [m, {e.size}]"
        )
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or not np.all(np.isfinite(g)):
        raise SpectrumError(
            f"interpolate_to_grid: grid must be a 1-D array of finite energies (eV), got shape "
            f"{g.shape}"
        )
    if extrapolate not in ("clamp", "error"):
        raise SpectrumError(
            f"interpolate_to_grid: extrapolate={extrapolate!r} is not known; use 'clamp' or 'error'"
        )
    if extrapolate == "error" and g.size and (g.min() < e[0] or g.max() > e[-1]):
        raise SpectrumError(
            f"interpolate_to_grid: grid spans [{g.min():.4f}, {g.max():.4f}] eV but the data only "
            f"covers [{e[0]:.4f}, {e[-1]:.4f}] eV; shrink the grid or use extrapolate='clamp'"
        )
    i = np.clip(np.searchsorted(e, g, side="right") - 1, 0, e.size - 2)
    t = np.clip((g - e[i]) / (e[i + 1] - e[i]), 0.0, 1.0)
    return y[..., i] * (1.0 - t) + y[..., i + 1] * t


def shift_energy(energy: ArrayLike, delta_ev: float) -> FloatArray:
    """Return ``energy + delta_ev`` (eV) as a new float64 array of the same shape."""
    return np.asarray(energy, dtype=np.float64) + float(delta_ev)


# --------------------------------------------------------------------------------------------
# outliers and duplicates
# --------------------------------------------------------------------------------------------


def _as_stack(spectra: ArrayLike, who: str) -> FloatArray:
    y = np.asarray(spectra, dtype=np.float64)
    if y.ndim != 2:
        raise SpectrumError(
            f"{who}: spectra must have shape [N, K] (N spectra on a common grid), got {y.shape}"
        )
    bad = np.argwhere(~np.isfinite(y))
    if bad.size:
        r, c = (int(v) for v in bad[0])
        raise SpectrumError(
            f"{who}: spectra[{r}, {c}] is not finite; validate and drop bad spectra first"
        )
    return y


def outlier_keep_mask(spectra: ArrayLike, c: float) -> npt.NDArray[np.bool_]:
    """OmniXAS outlier removal on spectra sharing one grid.

    For every energy point the mean and the *population* standard deviation (``ddof=0``) are
    taken over all ``N`` spectra; a spectrum is dropped when any of its points lies outside
    ``mean +- c * std``.

    Args:
        spectra: shape ``[N, K]``.
        c: band half-width in standard deviations (see :data:`OUTLIER_C`), ``c > 0``.

    Returns:
        Boolean keep mask, shape ``[N]``.
    """
    y = _as_stack(spectra, "outlier_keep_mask")
    if not (math.isfinite(c) and c > 0):
        raise SpectrumError(f"outlier_keep_mask: c = {c} must be a positive finite number")
    if y.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    mean = y.mean(axis=0)
    std = y.std(axis=0, ddof=0)
    inside = np.abs(y - mean) <= c * std
    return np.all(inside, axis=1)


def outlier_c_for(fidelity: str) -> float:
    """Outlier band width ``c`` for a fidelity label such as ``"FEFF"`` or ``"FEFF-fast"``.

    The base name (text before the first ``'-'``, case-insensitive) is looked up in
    :data:`OUTLIER_C`.

    Raises:
        SpectrumError: unknown base name; the message lists the known ones.
    """
    base = str(fidelity).split("-", 1)[0].strip().upper()
    if base not in OUTLIER_C:
        known = ", ".join(sorted(OUTLIER_C))
        raise SpectrumError(
            f"outlier_c_for: unknown fidelity {fidelity!r} (base {base!r}); known bases: {known}. "
            "Name the fidelity '<BASE>' or '<BASE>-<variant>', or pass c explicitly"
        )
    return OUTLIER_C[base]


def duplicate_keep_mask(spectra: ArrayLike, rtol: float = 0.0) -> npt.NDArray[np.bool_]:
    """Mark duplicated spectra, keeping the first of each group.

    Args:
        spectra: shape ``[N, K]``.
        rtol: ``0`` means exact duplicates (byte-equal rows, found by hashing). ``rtol > 0``
            means near-duplicates: rows ``i < j`` are duplicates when
            ``max|y_i - y_j| <= rtol * max(max|y_i|, max|y_j|)``. Rows are visited in order and
            a row is dropped when it duplicates an earlier *kept* row, so kept rows are pairwise
            distinct and every dropped row has a kept representative.

    Returns:
        Boolean keep mask, shape ``[N]``.
    """
    if not (math.isfinite(rtol) and rtol >= 0):
        raise SpectrumError(f"duplicate_keep_mask: rtol = {rtol} must be >= 0 and finite")
    if rtol == 0:
        y = np.asarray(spectra)
        if y.ndim != 2:
            raise SpectrumError(
                f"duplicate_keep_mask: spectra must have shape [N, K], got {y.shape}"
            )
        y = np.ascontiguousarray(y)
        keep = np.zeros(y.shape[0], dtype=bool)
        seen: set[bytes] = set()
        for i in range(y.shape[0]):
            key = y[i].tobytes()
            if key not in seen:
                seen.add(key)
                keep[i] = True
        return keep
    return _near_duplicate_keep_mask(_as_stack(spectra, "duplicate_keep_mask"), float(rtol))


def _near_duplicate_keep_mask(y: FloatArray, rtol: float) -> npt.NDArray[np.bool_]:
    n, k = y.shape
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    peak = np.max(np.abs(y), axis=1)
    # Linear summaries with L1-norm 1: |p.(y_i - y_j)| <= max|y_i - y_j| for each of them.
    rng = np.random.default_rng(12345)
    proj = np.empty((k, 4))
    proj[:, 0] = 1.0 / k
    proj[:, 1:] = rng.choice([-1.0, 1.0], size=(k, 3)) / k
    z = y @ proj
    # Bound on the pair tolerance seen from row j: a duplicate i has
    # |peak_i - peak_j| <= rtol * max(peak_i, peak_j), hence max(...) <= peak_j / (1 - rtol).
    bound = rtol * peak / (1.0 - rtol) if rtol < 1.0 else np.full(n, rtol * peak.max())
    bound = bound * (1.0 + 1e-12) + 1e-300
    col = int(np.argmax(z.std(axis=0)))
    order = np.argsort(z[:, col], kind="stable")
    zs = z[order, col]
    lo = np.searchsorted(zs, z[:, col] - bound, side="left")
    hi = np.searchsorted(zs, z[:, col] + bound, side="right")
    for j in range(n):
        cand = order[lo[j] : hi[j]]
        cand = cand[(cand < j) & keep[cand]]
        if cand.size:
            cand = cand[np.all(np.abs(z[cand] - z[j]) <= bound[j], axis=1)]
        if cand.size:
            diff = np.max(np.abs(y[cand] - y[j]), axis=1)
            if np.any(diff <= rtol * np.maximum(peak[cand], peak[j])):
                continue
        keep[j] = True
    return keep


# --------------------------------------------------------------------------------------------
# edge energy and normalisation
# --------------------------------------------------------------------------------------------


def _moving_average(x: FloatArray, points: int) -> FloatArray:
    if points <= 1:
        return x
    half = points // 2
    padded = np.pad(x, half, mode="edge")
    return np.convolve(padded, np.full(points, 1.0 / points), mode="valid")


def _parabola_vertex(x: FloatArray, y: FloatArray) -> float | None:
    """Abscissa of the vertex of the parabola through three points, or None if not a maximum."""
    a, b, _ = np.polyfit(x - x[1], y, 2)
    if not a < 0:
        return None
    return float(x[1] - b / (2.0 * a))


def find_e0(energy: ArrayLike, mu: ArrayLike, smooth_points: int = 3) -> float:
    """Edge energy E0 (eV): position of the maximum of the first derivative ``dmu/dE``.

    The derivative is ``np.gradient(mu, energy)`` (valid on non-uniform grids), optionally
    smoothed by a centred moving average of ``smooth_points`` samples (odd, ``1`` = none). The
    maximum is refined to sub-grid precision by the parabola through it and its two neighbours.

    Args:
        energy: energies in eV, shape ``[n]``, ``n >= 3``.
        mu: absorption, shape ``[n]``.
        smooth_points: odd moving-average window in samples.

    Returns:
        E0 in eV.
    """
    e, y = validate_spectrum(energy, mu, "find_e0", allow_negative=True)
    if y.ndim != 1 or e.size < 3:
        raise SpectrumError(
            f"find_e0: needs one spectrum of shape [n] with n >= 3, got mu of shape {y.shape}"
        )
    if smooth_points < 1 or smooth_points % 2 == 0:
        raise SpectrumError(
            f"find_e0: smooth_points = {smooth_points} must be an odd integer >= 1 (1 = no smoothing)"
        )
    d = _moving_average(np.gradient(y, e), int(smooth_points))
    i = int(np.argmax(d))
    if i == 0 or i == e.size - 1:
        return float(e[i])
    x = _parabola_vertex(e[i - 1 : i + 2], d[i - 1 : i + 2])
    if x is None:
        return float(e[i])
    return float(np.clip(x, e[i - 1], e[i + 1]))


@dataclasses.dataclass(frozen=True)
class EdgeStepNormalization:
    """Result of :func:`normalize_edge_step`.

    Attributes:
        norm: normalised spectrum ``(mu - pre(E)) / edge_step``, shape ``[n]``.
        e0: edge energy in eV.
        edge_step: ``post(E0) - pre(E0)``, in the units of ``mu`` (> 0).
        pre_line: ``(slope, intercept)`` of ``pre(E) = slope * (E - e0) + intercept``
            (slope per eV; intercept is the pre-edge value at E0).
        post_poly: coefficients of ``post(E) = np.polyval(post_poly, E - e0)`` (highest power
            first; its length minus one is the order actually fitted).
        pre_range: ``(lo, hi)`` eV relative to E0 spanned by the points used for the pre-edge.
        post_range: ``(lo, hi)`` eV relative to E0 spanned by the points used for the post-edge.
    """

    norm: FloatArray
    e0: float
    edge_step: float
    pre_line: tuple[float, float]
    post_poly: tuple[float, ...]
    pre_range: tuple[float, float]
    post_range: tuple[float, float]

    def pre(self, energy: ArrayLike) -> FloatArray:
        """Pre-edge line evaluated at ``energy`` (eV)."""
        slope, intercept = self.pre_line
        return slope * (np.asarray(energy, dtype=np.float64) - self.e0) + intercept

    def post(self, energy: ArrayLike) -> FloatArray:
        """Post-edge polynomial evaluated at ``energy`` (eV)."""
        return np.polyval(np.asarray(self.post_poly), np.asarray(energy, float) - self.e0)


#: Pre-edge points used when the requested pre-edge range holds fewer than 3 points: those
#: below ``E0 - FALLBACK_PRE_GAP_EV``.
FALLBACK_PRE_GAP_EV = 2.0
#: Post-edge points used when the requested post-edge range holds fewer than 3 points: the
#: last third of those above ``E0 + FALLBACK_POST_GAP_EV``.
FALLBACK_POST_GAP_EV = 10.0
#: In the pre-edge fallback a line is fitted only when its points span at least this (eV);
#: otherwise the pre-edge is the constant mean of the points within
#: ``FALLBACK_PRE_CONSTANT_WIDTH_EV`` of the lowest energy (the least edge-tail contamination).
FALLBACK_PRE_LINE_MIN_SPAN_EV = 20.0
FALLBACK_PRE_CONSTANT_WIDTH_EV = 1.0


def normalize_edge_step(
    energy: ArrayLike,
    mu: ArrayLike,
    e0: float | None = None,
    pre_edge: tuple[float, float] = (-150.0, -30.0),
    post_edge: tuple[float, float] = (50.0, 300.0),
    post_order: int = 2,
) -> EdgeStepNormalization:
    """Standard XANES edge-step normalisation (no flattening).

    A line is fitted to ``mu`` in the pre-edge range and a polynomial of order ``post_order``
    in the post-edge range (both ranges in eV relative to E0); ``edge_step = post(E0) -
    pre(E0)`` and ``norm = (mu - pre(E)) / edge_step``.

    Short (simulated) spectra spanning only about -10 ... +50 eV around E0 are handled: when a
    range holds fewer than 3 points it is replaced by what the data has.

    * Pre-edge: the points below ``E0 - 2 eV``. A line is fitted to them when there are at
      least 2 spanning at least ``FALLBACK_PRE_LINE_MIN_SPAN_EV`` (20 eV); otherwise the
      pre-edge is a constant, the mean of those within 1 eV of the lowest energy (``mu[0]`` if
      no point lies below ``E0 - 2 eV``). A slope fitted over a few eV just below the edge
      follows the Lorentzian tail of the edge and, extrapolated to E0 and above, biases the
      step by several per cent and tilts the whole normalised spectrum.
    * Post-edge: the last third (at least 3 points where available) of the points above
      ``E0 + 10 eV`` (of those above E0 if fewer than 3 lie there), fitted by a constant
      (order 0): a polynomial over such a short window extrapolated back to E0 amplifies the
      near-edge oscillations.

    The polynomial order is also lowered to what the number of points allows. The ranges
    actually used are recorded in the result.

    Args:
        energy: energies in eV, shape ``[n]``.
        mu: absorption, shape ``[n]``.
        e0: edge energy in eV; found with :func:`find_e0` when None.
        pre_edge: ``(lo, hi)`` pre-edge range, eV relative to E0.
        post_edge: ``(lo, hi)`` post-edge range, eV relative to E0.
        post_order: order of the post-edge polynomial (``>= 0``).

    Returns:
        :class:`EdgeStepNormalization`.

    Raises:
        SpectrumError: bad input, E0 outside the data, no post-edge data, or ``edge_step <= 0``.
    """
    e, y = validate_spectrum(energy, mu, "normalize_edge_step", allow_negative=True)
    if y.ndim != 1:
        raise SpectrumError(
            f"normalize_edge_step: normalise one spectrum at a time (mu shape [n]), got {y.shape}"
        )
    if post_order < 0:
        raise SpectrumError(f"normalize_edge_step: post_order = {post_order} must be >= 0")
    e0v = find_e0(e, y) if e0 is None else float(e0)
    if not (math.isfinite(e0v) and e[0] <= e0v <= e[-1]):
        raise SpectrumError(
            f"normalize_edge_step: e0 = {e0v} eV lies outside the data [{e[0]}, {e[-1]}] eV; "
            "pass the edge energy of this spectrum (or e0=None to find it)"
        )
    rel = e - e0v

    pre_mask = (rel >= pre_edge[0]) & (rel <= pre_edge[1])
    fit_line = np.count_nonzero(pre_mask) >= 3
    if not fit_line:
        pre_mask = rel < -FALLBACK_PRE_GAP_EV
        span = float(np.ptp(rel[pre_mask])) if pre_mask.any() else 0.0
        fit_line = np.count_nonzero(pre_mask) >= 2 and span >= FALLBACK_PRE_LINE_MIN_SPAN_EV
        if not fit_line:
            # too short a lever arm for a slope: the edge tail would tilt the line
            if pre_mask.any():
                pre_mask &= rel <= rel[0] + FALLBACK_PRE_CONSTANT_WIDTH_EV
            else:
                pre_mask = np.arange(rel.size) == 0
    if fit_line:
        slope, intercept = np.polyfit(rel[pre_mask], y[pre_mask], 1)
        pre_line = (float(slope), float(intercept))
    else:
        pre_line = (0.0, float(np.mean(y[pre_mask])))
    pre_range = (float(rel[pre_mask][0]), float(rel[pre_mask][-1]))

    post_idx = np.flatnonzero((rel >= post_edge[0]) & (rel <= post_edge[1]))
    order = min(int(post_order), post_idx.size - 1)
    if post_idx.size < 3:
        above = np.flatnonzero(rel > FALLBACK_POST_GAP_EV)
        if above.size < 3:
            above = np.flatnonzero(rel > 0.0)
        if above.size == 0:
            raise SpectrumError(
                "normalize_edge_step: no data above E0 for the post-edge fit; the spectrum must "
                "extend above the edge (check e0)"
            )
        take = min(above.size, max(3, math.ceil(above.size / 3)))
        post_idx = above[-take:]
        # a constant: a sloped/curved fit over a short window extrapolated back to E0
        # amplifies the near-edge oscillations
        order = 0
    coeffs = np.polyfit(rel[post_idx], y[post_idx], order)
    post_poly = tuple(float(c) for c in coeffs)
    post_range = (float(rel[post_idx[0]]), float(rel[post_idx[-1]]))

    edge_step = float(np.polyval(coeffs, 0.0) - pre_line[1])
    if not (math.isfinite(edge_step) and edge_step > 0):
        raise SpectrumError(
            f"normalize_edge_step: edge step = {edge_step:.6g} is not positive (E0 = {e0v} eV, "
            f"pre-edge {pre_range} eV, post-edge {post_range} eV); check e0 and the fit ranges"
        )
    norm = (y - (pre_line[0] * rel + pre_line[1])) / edge_step
    return EdgeStepNormalization(
        norm=norm,
        e0=e0v,
        edge_step=edge_step,
        pre_line=pre_line,
        post_poly=post_poly,
        pre_range=pre_range,
        post_range=post_range,
    )


# --------------------------------------------------------------------------------------------
# alignment and broadening
# --------------------------------------------------------------------------------------------


def _pearson_cross_correlation(
    b: FloatArray, a: FloatArray, max_lag: int
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Pearson correlation of ``b[n]`` with ``a[n - L]`` over their overlap, for ``|L| <= max_lag``.

    ``a`` and ``b`` have the same length ``N``; each lag uses only the overlapping samples, so
    the ends of the window do not bias the result. Returns ``(corr [2 max_lag + 1], lags)``.
    """
    n = a.size
    max_lag = min(max_lag, n // 2)
    lags = np.arange(-max_lag, max_lag + 1)
    full = signal.correlate(b, a, mode="full", method="auto")
    cross = full[lags + n - 1]
    ca = np.concatenate([[0.0], np.cumsum(a)])
    caa = np.concatenate([[0.0], np.cumsum(a * a)])
    cb = np.concatenate([[0.0], np.cumsum(b)])
    cbb = np.concatenate([[0.0], np.cumsum(b * b)])
    b_lo, b_hi = np.maximum(lags, 0), n + np.minimum(lags, 0)
    a_lo, a_hi = b_lo - lags, b_hi - lags
    m = (b_hi - b_lo).astype(np.float64)
    sa, saa = ca[a_hi] - ca[a_lo], caa[a_hi] - caa[a_lo]
    sb, sbb = cb[b_hi] - cb[b_lo], cbb[b_hi] - cbb[b_lo]
    cov = cross - sa * sb / m
    var = np.maximum(saa - sa * sa / m, 0.0) * np.maximum(sbb - sb * sb / m, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(var > 0, cov / np.sqrt(var), -np.inf)
    return corr, lags


def align_to_reference(
    energy: ArrayLike,
    mu: ArrayLike,
    ref_energy: ArrayLike,
    ref_mu: ArrayLike,
    max_shift: float = 10.0,
    step: float = 0.01,
) -> float:
    """Energy shift (eV) that, added to ``energy``, best matches the reference spectrum.

    The derivatives of cubic-spline interpolants of both spectra are sampled on a common uniform
    grid of spacing ``step`` over the overlap of their energy ranges; these derivatives (insensitive to smooth backgrounds) are
    cross-correlated with the Pearson (zero-mean, unit-variance) correlation over the samples
    that overlap at each lag; the best lag within ``+-max_shift`` is refined with a parabola. A positive result means the spectrum must move up in energy.

    Args:
        energy, mu: spectrum to align, eV and shape ``[n]``.
        ref_energy, ref_mu: reference, eV and shape ``[r]``.
        max_shift: largest shift searched, eV (> 0).
        step: spacing of the common grid, eV (> 0).

    Returns:
        The shift in eV.
    """
    e, y = validate_spectrum(energy, mu, "align_to_reference (spectrum)", allow_negative=True)
    er, yr = validate_spectrum(ref_energy, ref_mu, "align_to_reference (ref)", allow_negative=True)
    if y.ndim != 1 or yr.ndim != 1:
        raise SpectrumError("align_to_reference: mu and ref_mu must each have shape [n]")
    if not (step > 0 and max_shift > 0 and math.isfinite(step) and math.isfinite(max_shift)):
        raise SpectrumError(
            f"align_to_reference: step = {step} and max_shift = {max_shift} must be positive (eV)"
        )
    lo, hi = max(e[0], er[0]), min(e[-1], er[-1])
    if hi - lo < 4 * step:
        raise SpectrumError(
            f"align_to_reference: the spectrum [{e[0]}, {e[-1]}] eV and the reference "
            f"[{er[0]}, {er[-1]}] eV barely overlap; align only spectra of the same edge"
        )
    npts = int(math.floor((hi - lo) / step)) + 1
    if npts > MAX_UNIFORM_POINTS:
        raise SpectrumError(
            f"align_to_reference: {npts} grid points needed for step = {step} eV over "
            f"{hi - lo:.1f} eV; use a larger step (at most {MAX_UNIFORM_POINTS} points)"
        )
    grid = lo + step * np.arange(npts)
    # derivatives of cubic splines: linear interpolation would give piecewise-constant
    # derivatives whose steps lock the correlation peak to the data sampling
    a = interpolate.CubicSpline(e, y)(grid, 1)
    b = interpolate.CubicSpline(er, yr)(grid, 1)
    corr, lags = _pearson_cross_correlation(b, a, int(math.floor(max_shift / step + 1e-9)))
    if not np.isfinite(corr).any():
        raise SpectrumError(
            "align_to_reference: a spectrum is flat over the overlap; nothing to align on"
        )
    k = int(np.argmax(corr))
    shift = float(lags[k])
    if 0 < k < corr.size - 1:
        c_m, c_0, c_p = corr[k - 1], corr[k], corr[k + 1]
        denom = c_m - 2.0 * c_0 + c_p
        if denom < 0:
            shift += float(np.clip(0.5 * (c_m - c_p) / denom, -0.5, 0.5))
    return shift * step


def _kernel(kind: str, fwhm: float, h: float, half_width: float) -> FloatArray:
    m = max(1, int(math.ceil(half_width / h)))
    x = h * np.arange(-m, m + 1)
    if kind == "gaussian":
        sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        ker = np.exp(-0.5 * (x / sigma) ** 2)
    else:
        gamma = 0.5 * fwhm
        ker = 1.0 / (1.0 + (x / gamma) ** 2)
    return ker / ker.sum()


def broaden(
    energy: ArrayLike,
    mu: ArrayLike,
    fwhm: float,
    kind: Literal["lorentzian", "gaussian"] = "lorentzian",
) -> FloatArray:
    """Convolve a spectrum with a normalised Lorentzian or Gaussian of full width ``fwhm`` (eV).

    The data are resampled onto a uniform grid of spacing ``min(diff(energy)) / 2`` (coarsened
    if that would exceed ``MAX_UNIFORM_POINTS`` points), padded with the end values so the ends
    do not sag, convolved, and interpolated back to ``energy``. The kernel sums to one, so the
    area of a peak far from the ends is preserved. The Gaussian kernel is cut at +-6 sigma, the
    Lorentzian at the span of the data (at least +-50 fwhm).

    Args:
        energy: energies in eV, shape ``[n]``.
        mu: values, shape ``[n]`` or ``[m, n]``.
        fwhm: full width at half maximum, eV (``>= 0``; ``0`` returns a copy).
        kind: ``"lorentzian"`` or ``"gaussian"``.

    Returns:
        Broadened values, same shape as ``mu``.
    """
    e, y = validate_spectrum(energy, mu, "broaden", allow_negative=True)
    if kind not in ("lorentzian", "gaussian"):
        raise SpectrumError(f"broaden: kind={kind!r} is not known; use 'lorentzian' or 'gaussian'")
    if not (math.isfinite(fwhm) and fwhm >= 0):
        raise SpectrumError(f"broaden: fwhm = {fwhm} eV must be >= 0 and finite")
    if fwhm == 0:
        return y.copy()
    span = float(e[-1] - e[0])
    h = float(np.min(np.diff(e))) / 2.0
    npts = int(math.ceil(span / h)) + 1
    if npts > MAX_UNIFORM_POINTS:
        npts = MAX_UNIFORM_POINTS
        h = span / (npts - 1)
    grid = e[0] + h * np.arange(npts)
    grid[-1] = e[-1]
    u = interpolate_to_grid(e, y, grid)
    if kind == "gaussian":
        half_width = 6.0 * fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    else:
        half_width = max(span, 50.0 * fwhm)
    # keep the kernel (and padding) within a sane size
    half_width = min(half_width, h * MAX_UNIFORM_POINTS / 2)
    ker = _kernel(kind, float(fwhm), h, half_width)
    m = ker.size // 2
    pad = [(0, 0)] * (u.ndim - 1) + [(m, m)]
    padded = np.pad(u, pad, mode="edge")
    ker_nd = ker.reshape((1,) * (u.ndim - 1) + (-1,))
    out = signal.fftconvolve(padded, ker_nd, mode="valid", axes=-1)
    return interpolate_to_grid(grid, out, e)


# --------------------------------------------------------------------------------------------
# OmniXAS labels
# --------------------------------------------------------------------------------------------


def omnixas_label_scale(mu: ArrayLike, xsedge_norm: ArrayLike | float) -> FloatArray:
    """OmniXAS training-label scaling of FEFF spectra.

    Returns ``1000 * mu * xsedge_norm / BOHR_RADIUS_ANGSTROM**2``. This is how OmniXAS turned
    FEFF's normalised absorption (``xmu.dat`` column 4, dimensionless) and the ``xsedge+ 50``
    constant from the ``xmu.dat`` header into its training labels on the grid
    ``E_k = e_start + 0.25 k`` (eV); the interpolation onto that grid is done separately with
    :func:`interpolate_to_grid` and ``extrapolate="clamp"``.

    Args:
        mu: normalised absorption, shape ``[n]`` or ``[m, n]``.
        xsedge_norm: the header constant, a scalar or shape ``[m]`` (one per row of ``mu``).

    Returns:
        Scaled labels, same shape as ``mu``.
    """
    y = np.asarray(mu, dtype=np.float64)
    x = np.asarray(xsedge_norm, dtype=np.float64)
    if y.ndim not in (1, 2):
        raise SpectrumError(f"omnixas_label_scale: mu must have shape [n] or [m, n], got {y.shape}")
    if x.ndim == 1:
        if y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise SpectrumError(
                f"omnixas_label_scale: xsedge_norm of shape {x.shape} needs mu of shape "
                f"[{x.shape[0]}, n], got {y.shape}; pass one constant per spectrum (row)"
            )
        x = x[:, None]
    elif x.ndim != 0:
        raise SpectrumError(
            f"omnixas_label_scale: xsedge_norm must be a scalar or shape [m], got {x.shape}"
        )
    return 1000.0 * y * x / BOHR_RADIUS_ANGSTROM**2


# --------------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples to plain JSON-friendly Python objects."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class CurationRecord:
    """One curation step, for dataset provenance.

    Attributes:
        step: name of the step (e.g. ``"outlier_removal"``).
        params: parameters of the step.
        n_in: number of spectra before the step.
        n_out: number of spectra after the step.
        seconds: wall time of the step, s.
    """

    step: str
    params: dict[str, Any]
    n_in: int
    n_out: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict of the record."""
        return {
            "step": self.step,
            "params": _plain(dict(self.params)),
            "n_in": self.n_in,
            "n_out": self.n_out,
            "seconds": self.seconds,
        }


def record_step(
    step: str, params: Mapping[str, Any], n_in: int, n_out: int, seconds: float
) -> CurationRecord:
    """Build a :class:`CurationRecord` (counts are numbers of spectra, ``seconds`` wall time)."""
    if not step:
        raise SpectrumError("record_step: step must be a non-empty name")
    if int(n_in) < 0 or int(n_out) < 0:
        raise SpectrumError(f"record_step: counts must be >= 0, got n_in={n_in}, n_out={n_out}")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise SpectrumError(f"record_step: seconds = {seconds} must be >= 0 and finite")
    return CurationRecord(
        step=str(step),
        params=dict(params),
        n_in=int(n_in),
        n_out=int(n_out),
        seconds=float(seconds),
    )
