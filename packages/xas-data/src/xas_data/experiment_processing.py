"""Processing of measured K-edge spectra: absorbance, checks, deglitching, E0, normalisation.

From a :class:`~xas_data.measured.MeasuredSpectrum` (energies in eV, raw ``mu``) to a
normalised spectrum on a chosen energy grid, Athena-style:

1. ``mu = ln(i0/it)`` from transmission intensities (:func:`absorbance`; the readers already
   give ``mu`` for the XAS Data Library ``mu_raw`` and XDI files);
2. validation (:func:`check_energy_axis`, :func:`check_edge_coverage`): an energy axis in
   keV is converted to eV (as the readers do below ``KEV_THRESHOLD``) and noted, a descending
   or non-monotonic axis is refused, the claimed element's tabulated K edge must lie inside
   the data with points on both sides;
3. deglitching of single-point spikes (:func:`deglitch`);
4. E0 = maximum of the smoothed ``dmu/dE`` near the tabulated edge (:func:`find_edge`), which
   also refuses spectra of another edge than claimed and names the matching element;
5. pre-edge line and post-edge quadratic, ``norm = (mu - pre(E)) / edge_step``, optional
   flattening (:func:`normalize`);
6. interpolation onto a grid (absolute eV, or relative to E0).

Every problem raises :class:`~xas_data.errors.SpectrumError` (or a subclass defined here)
with a message naming the spectrum, the problem and the fix. All energies are in eV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter1d

from xas_data import curation
from xas_data.edges import k_edge_energy, k_edges_in_range, nearest_k_edge
from xas_data.errors import SpectrumError
from xas_data.measured import KEV_THRESHOLD, MeasuredSpectrum
from xas_data.schema import EnergyGrid

__all__ = [
    "EdgeCoverageError",
    "EnergyAxisError",
    "ProcessedSpectrum",
    "ProcessingConfig",
    "WrongEdgeError",
    "absorbance",
    "check_edge_coverage",
    "check_energy_axis",
    "deglitch",
    "find_edge",
    "normalize",
    "process_arrays",
    "process_spectrum",
]

FloatArray = npt.NDArray[np.float64]


class EnergyAxisError(SpectrumError):
    """The energy axis is descending, non-monotonic, repeated or not in eV/keV."""


class EdgeCoverageError(SpectrumError):
    """The data do not cover the claimed element's K edge (or too few points around it)."""


class WrongEdgeError(SpectrumError):
    """The edge found in the data is not the claimed element's K edge."""


@dataclass(frozen=True)
class ProcessingConfig:
    """Settings of :func:`process_spectrum` (energies in eV).

    Attributes:
        deglitch: remove single-point spikes before finding E0.
        deglitch_threshold: a point is a spike when it is farther than this many robust noise
            sigmas from the cubic through its two neighbours on each side.
        deglitch_max_iter: passes of the deglitcher (each replaces the worst isolated spikes).
        e0_window_ev: E0 is searched within ``tabulated edge +- e0_window_ev``.
        e0_smooth_ev: Gaussian sigma (eV) of the smoothing of ``dmu/dE``.
        max_edge_offset_ev: a strongest edge farther than this from the tabulated one, with no
            comparable edge near the tabulated one, means another element/edge: refused.
        min_points_below: points needed within ``coverage_window_ev`` below the tabulated edge.
        min_points_above: points needed within ``coverage_window_ev`` above the tabulated edge.
        coverage_window_ev: width of the windows counted by ``min_points_*``.
        pre_edge: pre-edge fit range relative to E0 (Athena default -150 .. -30 eV); clipped to
            the data; when fewer than 3 points lie in it, the points below E0 - 2 eV are used.
        post_edge: post-edge range relative to E0; ``None`` as upper bound = end of the data.
        post_order: post-edge polynomial order (2 = quadratic); lowered for short ranges
            (< 100 eV: at most 1; < 40 eV: 0).
        flatten: subtract the post-edge curvature above E0 (Athena's "flattened" spectrum).
    """

    deglitch: bool = True
    deglitch_threshold: float = 8.0
    deglitch_max_iter: int = 3
    e0_window_ev: float = 60.0
    e0_smooth_ev: float = 0.5
    max_edge_offset_ev: float = 60.0
    min_points_below: int = 2
    min_points_above: int = 10
    coverage_window_ev: float = 300.0
    pre_edge: tuple[float, float] = (-150.0, -30.0)
    post_edge: tuple[float, float | None] = (50.0, None)
    post_order: int = 2
    flatten: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the settings."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ProcessedSpectrum:
    """A measured spectrum after deglitching, E0 and edge-step normalisation.

    Attributes:
        energy: energies of ``mu_norm`` in eV, shape [K] (the grid, or the data energies when
            no grid was given).
        mu_norm: normalised absorption on ``energy``, shape [K] (pre-edge ~0, post-edge ~1).
        e0: edge energy in eV (maximum of the smoothed dmu/dE).
        edge_step: edge jump ``post(E0) - pre(E0)`` in the units of the raw mu.
        n_deglitched: number of single-point spikes replaced by interpolation.
        element: absorbing element symbol.
        edge: absorption edge (``"K"``).
        name: sample name.
        formula: chemical formula as given ("" when unknown).
        metadata: the source metadata of the ``MeasuredSpectrum`` (source file, beamline, ...).
        data_energy: the data energies in eV, shape [n].
        data_mu: the deglitched raw mu on ``data_energy``, shape [n].
        data_norm: the normalised mu on ``data_energy``, shape [n].
        deglitched_energies: energies (eV) of the replaced points.
        pre_range: (lo, hi) eV relative to E0 spanned by the pre-edge points used.
        post_range: (lo, hi) eV relative to E0 spanned by the post-edge points used.
        post_order: post-edge polynomial order actually fitted.
        flattened: whether ``mu_norm`` is flattened above E0.
        notes: what was changed or adapted (keV conversion, sorting, range adaptation, ...).
    """

    energy: FloatArray
    mu_norm: FloatArray
    e0: float
    edge_step: float
    n_deglitched: int
    element: str
    edge: str
    name: str
    formula: str
    metadata: dict[str, Any]
    data_energy: FloatArray
    data_mu: FloatArray
    data_norm: FloatArray
    deglitched_energies: tuple[float, ...] = ()
    pre_range: tuple[float, float] = (math.nan, math.nan)
    post_range: tuple[float, float] = (math.nan, math.nan)
    post_order: int = 2
    flattened: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars of the processing (no arrays)."""
        return {
            "e0_ev": self.e0,
            "edge_step": self.edge_step,
            "n_deglitched": self.n_deglitched,
            "deglitched_energies_ev": list(self.deglitched_energies),
            "pre_range_ev": list(self.pre_range),
            "post_range_ev": list(self.post_range),
            "post_order": self.post_order,
            "flattened": self.flattened,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- absorbance


def absorbance(i0: npt.ArrayLike, it: npt.ArrayLike, label: str = "spectrum") -> FloatArray:
    """Transmission absorbance ``mu = ln(i0 / it)``.

    Args:
        i0: incident intensity, shape [n], > 0.
        it: transmitted intensity, shape [n], > 0.
        label: names the spectrum in error messages.

    Returns:
        mu, shape [n], float64.

    Raises:
        SpectrumError: shapes differ or an intensity is not positive and finite.
    """
    a = np.asarray(i0, dtype=np.float64)
    b = np.asarray(it, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise SpectrumError(
            f"{label}: i0 and it must be 1-D arrays of equal length, got shapes {a.shape} and "
            f"{b.shape}; pass one i0 and one it value per energy"
        )
    bad = ~(np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0))
    if bad.any():
        raise SpectrumError(
            f"{label}: {int(bad.sum())} point(s) have i0 or it not positive/finite (first at "
            f"point {int(np.argmax(bad))}), so ln(i0/it) is undefined; remove those points or "
            "subtract the dark current correctly"
        )
    return np.log(a / b)


# --------------------------------------------------------------------------- validation


def _kev_hint(converted: bool) -> str:
    return (
        " (the energies were below 100 and were taken as keV, i.e. multiplied by 1000: if "
        "they are in another unit, convert them to eV first)"
        if converted
        else ""
    )


def check_energy_axis(
    energy: npt.ArrayLike, label: str = "spectrum", convert_kev: bool = True
) -> tuple[FloatArray, bool]:
    """Check a raw energy axis: finite, positive, strictly increasing; keV -> eV.

    Args:
        energy: energies, shape [n], in eV (or keV when every value is below
            ``KEV_THRESHOLD``, as the readers assume).
        label: names the spectrum in error messages.
        convert_kev: convert an all-below-threshold axis from keV to eV (else refuse it).

    Returns:
        (energy in eV, shape [n], strictly increasing; whether it was converted from keV).

    Raises:
        EnergyAxisError: NaN/inf, non-positive, keV refused, descending (reversed) or
            non-monotonic energies, repeated points.
    """
    e = np.asarray(energy, dtype=np.float64)
    if e.ndim != 1 or e.size < 3:
        raise EnergyAxisError(
            f"{label}: energy must be a 1-D array of at least 3 points, got shape {e.shape}"
        )
    if not np.all(np.isfinite(e)):
        i = int(np.argmax(~np.isfinite(e)))
        raise EnergyAxisError(f"{label}: energy[{i}] is {e[i]}; remove NaN/inf points")
    converted = False
    if float(np.max(np.abs(e))) < KEV_THRESHOLD:
        if not convert_kev:
            raise EnergyAxisError(
                f"{label}: energies {e.min():g}..{e.max():g} look like keV, but eV are "
                "required; multiply them by 1000"
            )
        e = e * 1000.0
        converted = True
    if np.any(e <= 0):
        raise EnergyAxisError(
            f"{label}: energies must be positive photon energies in eV; found {e.min():g}. "
            "Relative energies (E - E0) are not accepted: add E0"
        )
    steps = np.diff(e)
    if np.all(steps < 0):
        raise EnergyAxisError(
            f"{label}: the energy axis is descending ({e[0]:.2f} -> {e[-1]:.2f} eV, reversed "
            "scan); reverse energy and mu together (energy[::-1], mu[::-1]) or read the file "
            "with xas_data.measured, whose readers sort the points"
        )
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        kind = "repeats" if steps[bad[0]] == 0 else "goes back"
        raise EnergyAxisError(
            f"{label}: the energy axis is not strictly increasing: it {kind} at point {i} "
            f"({e[i - 1]:.3f} -> {e[i]:.3f} eV; {bad.size} such step(s), e.g. concatenated "
            "scans); sort energy and mu by energy and drop repeated points (the readers in "
            "xas_data.measured do this)"
        )
    return e, converted


def check_edge_coverage(
    energy: FloatArray,
    element: str,
    label: str = "spectrum",
    config: ProcessingConfig | None = None,
    converted_from_kev: bool = False,
) -> float:
    """Check that the data cover ``element``'s tabulated K edge; return that edge (eV).

    Args:
        energy: energies in eV, shape [n], strictly increasing.
        element: claimed absorbing element.
        label: names the spectrum in error messages.
        config: the point-count thresholds (``min_points_below/above``,
            ``coverage_window_ev``).
        converted_from_kev: add a hint that the axis was converted from keV.

    Raises:
        EdgeCoverageError: the edge lies outside the data, or too few points lie within
            ``coverage_window_ev`` below/above it; the message lists the K edges the data
            do cover.
    """
    config = config or ProcessingConfig()
    e_tab = k_edge_energy(element)
    lo, hi = float(energy[0]), float(energy[-1])
    w = config.coverage_window_ev
    n_below = int(np.count_nonzero((energy < e_tab) & (energy >= e_tab - w)))
    n_above = int(np.count_nonzero((energy > e_tab) & (energy <= e_tab + w)))
    problem = ""
    if not lo <= e_tab <= hi:
        problem = (
            f"the data span {lo:.1f}..{hi:.1f} eV and do not contain the {element} K edge "
            f"({e_tab:.1f} eV)"
        )
    elif n_below < config.min_points_below or n_above < config.min_points_above:
        problem = (
            f"too few points around the {element} K edge ({e_tab:.1f} eV): {n_below} within "
            f"{w:g} eV below it (need {config.min_points_below}) and {n_above} within {w:g} eV "
            f"above it (need {config.min_points_above}); the data span {lo:.1f}..{hi:.1f} eV "
            f"with {energy.size} points"
        )
    if problem:
        others = [f"{el} ({e:.0f} eV)" for el, e in k_edges_in_range(lo, hi) if el != element]
        fits = (
            f"; the data would cover the K edge of {', '.join(others)}: check the element"
            if others
            else ""
        )
        raise EdgeCoverageError(
            f"{label}: {problem}{_kev_hint(converted_from_kev)}{fits}. Give the spectrum of "
            f"the {element} K edge (from below the edge to well above it) or the right element"
        )
    return e_tab


# --------------------------------------------------------------------------- deglitching


def _neighbour_residuals(energy: FloatArray, mu: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Residual of each point against the cubic through its two neighbours on each side.

    Returns:
        (``r`` [n]: ``mu[i]`` minus the cubic through points i-2, i-1, i+1, i+2 evaluated at
        ``energy[i]``; ``a`` [n]: the factor ``sqrt(1 + sum w_j^2)`` by which that residual
        amplifies white noise, large where the point spacing changes abruptly). Both are NaN
        at the first and last two points.
    """
    n = energy.size
    r = np.full(n, np.nan)
    a = np.full(n, np.nan)
    if n < 5:
        return r, a
    idx = np.arange(2, n - 2)
    offsets = (-2, -1, 1, 2)
    xs = [energy[idx + o] - energy[idx] for o in offsets]
    prediction = np.zeros(idx.size)
    power = np.ones(idx.size)
    for j, o in enumerate(offsets):
        weight = np.ones(idx.size)
        for k in range(len(offsets)):
            if k != j:
                weight *= (0.0 - xs[k]) / (xs[j] - xs[k])
        prediction += weight * mu[idx + o]
        power += weight**2
    r[idx] = mu[idx] - prediction
    a[idx] = np.sqrt(power)
    return r, a


def _robust_scale(values: FloatArray, half_window: int = 10) -> FloatArray:
    """Local robust standard deviation of ``values`` ([n]): 1.4826 x the running median of
    ``|v|`` over ``2 * half_window + 1`` points, floored at half the spectrum-wide value."""
    v = np.abs(values)
    finite = np.isfinite(v)
    global_scale = 1.4826 * float(np.median(v[finite])) if finite.any() else 0.0
    out = np.full(v.size, global_scale)
    for i in range(v.size):
        window = v[max(0, i - half_window) : i + half_window + 1]
        window = window[np.isfinite(window)]
        if window.size:
            out[i] = 1.4826 * float(np.median(window))
    return np.maximum(out, max(0.5 * global_scale, 1e-300))


#: A spike must also exceed this multiple of the larger of its neighbours' own steps
#: (``|mu[i-1] - mu[i-2]|``, ``|mu[i+2] - mu[i+1]|``): the top of a sharp but real peak is
#: about as far from the cubic as its neighbours are from each other, a spike much farther.
SPIKE_ISOLATION = 1.5


def deglitch(
    energy: npt.ArrayLike,
    mu: npt.ArrayLike,
    threshold: float = 8.0,
    max_iter: int = 3,
) -> tuple[FloatArray, list[int]]:
    """Replace single-point spikes by linear interpolation between their neighbours.

    Point ``i`` is a spike when

    * its residual ``r_i = mu[i] - c(E_i)``, with ``c`` the cubic through points i-2, i-1,
      i+1, i+2 (smooth edges and peaks predict themselves), exceeds ``threshold`` robust noise
      sigmas: ``|r_i| / a_i > threshold * sigma_i``, where ``a_i`` is the noise amplification
      of the cubic at that spacing and ``sigma_i`` 1.4826 x the running median of
      ``|r / a|`` over 21 points (at least half the spectrum-wide value);
    * ``|r_i|`` exceeds ``SPIKE_ISOLATION`` x the neighbours' own steps (not a sharp peak);
    * it is the largest such outlier within two points (a spike also shifts its neighbours'
      residuals).

    The first and last two points are never changed. Repeated up to ``max_iter`` times.

    Args:
        energy: energies in eV, shape [n], strictly increasing.
        mu: absorption, shape [n].
        threshold: spike threshold in robust sigmas.
        max_iter: number of passes.

    Returns:
        (deglitched mu [n], sorted indices of the replaced points).
    """
    e = np.asarray(energy, dtype=np.float64)
    y = np.array(mu, dtype=np.float64, copy=True)
    replaced: set[int] = set()
    if e.size < 7:
        return y, []
    for _ in range(max_iter):
        r, amp = _neighbour_residuals(e, y)
        q = r / amp
        z = np.abs(q) / _robust_scale(q)
        z[~np.isfinite(z)] = 0.0
        steps = np.zeros(e.size)
        steps[2:-2] = np.maximum(np.abs(y[1:-3] - y[:-4]), np.abs(y[4:] - y[3:-1]))
        candidates = np.flatnonzero((z > threshold) & (np.abs(r) > SPIKE_ISOLATION * steps))
        picks = [int(i) for i in candidates if z[i] >= np.max(z[max(0, i - 2) : i + 3])]
        if not picks:
            break
        for i in picks:
            t = (e[i] - e[i - 1]) / (e[i + 1] - e[i - 1])
            y[i] = y[i - 1] * (1.0 - t) + y[i + 1] * t
            replaced.add(i)
    return y, sorted(replaced)


# --------------------------------------------------------------------------- E0


def _smoothed_derivative(
    energy: FloatArray, mu: FloatArray, smooth_ev: float, step_ev: float = 0.1
) -> tuple[FloatArray, FloatArray]:
    """``dmu/dE`` on a uniform grid of ``step_ev`` (at most 50000 points) over the data,
    smoothed by a Gaussian of sigma ``smooth_ev``: (grid [m] eV, derivative [m])."""
    span = float(energy[-1] - energy[0])
    step = max(step_ev, span / 50000.0)
    grid = np.arange(energy[0], energy[-1] + 0.5 * step, step)
    grid = grid[grid <= energy[-1]]
    d = np.gradient(np.interp(grid, energy, mu), step)
    if smooth_ev > 0:
        d = gaussian_filter1d(d, smooth_ev / step, mode="nearest")
    return grid, d


def _peak_position(grid: FloatArray, d: FloatArray, i: int) -> float:
    """Sub-grid position of the maximum ``d[i]`` (parabola through it and its neighbours)."""
    if 0 < i < grid.size - 1:
        denom = d[i - 1] - 2 * d[i] + d[i + 1]
        if denom < 0:
            shift = 0.5 * (d[i - 1] - d[i + 1]) / denom
            return float(grid[i] + np.clip(shift, -1.0, 1.0) * (grid[1] - grid[0]))
    return float(grid[i])


def find_edge(
    energy: npt.ArrayLike,
    mu: npt.ArrayLike,
    element: str,
    config: ProcessingConfig | None = None,
    label: str = "spectrum",
    converted_from_kev: bool = False,
) -> float:
    """E0 (eV): maximum of the smoothed ``dmu/dE`` within ``+- e0_window_ev`` of the K edge.

    The strongest edge of the whole spectrum is found as well: when it lies more than
    ``max_edge_offset_ev`` from the tabulated edge and the derivative near the tabulated edge
    is below 30 % of it, the spectrum is of another element or edge than claimed.

    Args:
        energy: energies in eV, shape [n], strictly increasing, covering the edge.
        mu: absorption (deglitched), shape [n].
        element: claimed absorbing element (K edge).
        config: ``e0_window_ev``, ``e0_smooth_ev``, ``max_edge_offset_ev``.
        label: names the spectrum in error messages.
        converted_from_kev: add a keV hint to error messages.

    Returns:
        E0 in eV.

    Raises:
        WrongEdgeError: the edge in the data is not the claimed element's K edge; the message
            names the element whose K edge it matches, if any.
        EdgeCoverageError: no rising edge near the tabulated energy.
    """
    config = config or ProcessingConfig()
    e = np.asarray(energy, dtype=np.float64)
    y = np.asarray(mu, dtype=np.float64)
    e_tab = k_edge_energy(element)
    grid, d = _smoothed_derivative(e, y, config.e0_smooth_ev)
    # ignore the outermost smoothing widths, where the edge padding distorts the derivative
    margin = 3.0 * config.e0_smooth_ev
    inner = (grid >= grid[0] + margin) & (grid <= grid[-1] - margin)
    if not inner.any():
        inner = np.ones_like(grid, dtype=bool)
    i_global = int(np.flatnonzero(inner)[np.argmax(d[inner])])
    e_global = _peak_position(grid, d, i_global)
    local = inner & (np.abs(grid - e_tab) <= config.e0_window_ev)
    d_local = float(np.max(d[local])) if local.any() else -math.inf
    if abs(e_global - e_tab) > config.max_edge_offset_ev and d_local < 0.3 * float(d[i_global]):
        other, e_other = nearest_k_edge(e_global)
        if abs(e_other - e_global) <= config.max_edge_offset_ev and other != element:
            match = (
                f"it matches the {other} K edge ({e_other:.1f} eV) instead: if this is a "
                f"{other} spectrum, set element='{other}'"
            )
        else:
            match = (
                f"it matches no tabulated K edge within {config.max_edge_offset_ev:g} eV "
                "(another edge, e.g. an L edge, or a mis-calibrated energy axis?)"
            )
        raise WrongEdgeError(
            f"{label}: the edge found at E0 = {e_global:.1f} eV is {e_global - e_tab:+.1f} eV "
            f"from the tabulated {element} K edge ({e_tab:.1f} eV), more than "
            f"{config.max_edge_offset_ev:g} eV: this is not a {element} K-edge spectrum; "
            f"{match}{_kev_hint(converted_from_kev)}"
        )
    if not local.any() or d_local <= 0:
        raise EdgeCoverageError(
            f"{label}: no rising edge within {config.e0_window_ev:g} eV of the {element} K "
            f"edge ({e_tab:.1f} eV); give a spectrum that covers the edge"
            f"{_kev_hint(converted_from_kev)}"
        )
    i_local = int(np.flatnonzero(local)[np.argmax(d[local])])
    return _peak_position(grid, d, i_local)


# --------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class _Normalization:
    norm: FloatArray
    edge_step: float
    pre_range: tuple[float, float]
    post_range: tuple[float, float]
    post_order: int
    notes: tuple[str, ...]


def normalize(
    energy: npt.ArrayLike,
    mu: npt.ArrayLike,
    e0: float,
    config: ProcessingConfig | None = None,
    label: str = "spectrum",
) -> _Normalization:
    """Edge-step normalisation with Athena-like defaults adapted to the data range.

    Pre-edge line over ``config.pre_edge`` (default -150 .. -30 eV relative to E0, clipped to
    the data); post-edge polynomial of order ``config.post_order`` over ``config.post_edge``
    (default +50 eV .. end of data). When the post-edge range spans less than 20 eV it starts
    20 eV before the end of the data (not below +10 eV); the order is lowered to 1 below
    100 eV of range and to 0 below 40 eV. ``curation.normalize_edge_step`` does the fits (with
    its fall-backs for very short spectra). ``norm = (mu - pre(E)) / edge_step``; with
    ``config.flatten``, ``norm = (mu - post(E)) / edge_step + 1`` above E0.

    Args:
        energy: energies in eV, shape [n].
        mu: absorption, shape [n].
        e0: edge energy in eV.
        config: fit ranges, order and flattening.
        label: names the spectrum in error messages.

    Returns:
        The normalisation: ``norm`` [n], ``edge_step``, ranges used (eV relative to E0),
        order fitted, notes on adaptations.

    Raises:
        SpectrumError: the edge step is not positive (no edge, wrong E0 or fit ranges).
    """
    config = config or ProcessingConfig()
    e = np.asarray(energy, dtype=np.float64)
    y = np.asarray(mu, dtype=np.float64)
    rel_min, rel_max = float(e[0] - e0), float(e[-1] - e0)
    notes: list[str] = []
    pre = (max(config.pre_edge[0], rel_min), config.pre_edge[1])
    if rel_min > config.pre_edge[1]:
        notes.append(
            f"data start {rel_min:+.1f} eV from E0, above the pre-edge range "
            f"{list(config.pre_edge)} eV: pre-edge from the points below E0 - 2 eV"
        )
    post_lo = config.post_edge[0]
    post_hi = rel_max if config.post_edge[1] is None else min(config.post_edge[1], rel_max)
    if post_hi - post_lo < 20.0:
        post_lo = max(10.0, post_hi - 20.0)
        notes.append(
            f"data end {rel_max:+.1f} eV from E0: post-edge range moved to "
            f"[{post_lo:+.1f}, {post_hi:+.1f}] eV"
        )
    span = post_hi - post_lo
    order = config.post_order if span >= 100 else min(config.post_order, 1 if span >= 40 else 0)
    if order != config.post_order:
        notes.append(f"post-edge range spans {span:.0f} eV: polynomial order {order}")
    try:
        result = curation.normalize_edge_step(e, y, e0, pre, (post_lo, post_hi), order)
    except SpectrumError as exc:
        raise SpectrumError(f"{label}: {exc}") from exc
    norm = result.norm
    if config.flatten:
        above = e > e0
        flat = (y - result.post(e)) / result.edge_step + 1.0
        norm = np.where(above, flat, norm)
    return _Normalization(
        norm=norm,
        edge_step=result.edge_step,
        pre_range=result.pre_range,
        post_range=result.post_range,
        post_order=len(result.post_poly) - 1,
        notes=tuple(notes),
    )


def _kept_normalization(
    energy: FloatArray, mu: FloatArray, metadata: dict[str, Any], label: str
) -> _Normalization:
    """The normalisation of data that are already normalised: kept as is (edge step 1)."""
    reason = metadata.get("normalized_reason", "marked normalised")
    note = f"{label} holds already-normalised mu ({reason}): its normalisation is kept, not redone"
    return _Normalization(
        norm=np.asarray(mu, dtype=np.float64),
        edge_step=1.0,
        pre_range=(math.nan, math.nan),
        post_range=(math.nan, math.nan),
        post_order=0,
        notes=(note,),
    )


# --------------------------------------------------------------------------- pipeline


def _label(spectrum: MeasuredSpectrum) -> str:
    source = spectrum.metadata.get("xdi_file") or spectrum.metadata.get("source_file") or ""
    name = spectrum.name or "measured spectrum"
    return f"{name} ({source})" if source and str(source) not in name else name


def _grid_energies(grid: EnergyGrid | npt.ArrayLike, e0: float, relative: bool) -> FloatArray:
    energies = grid.energies if isinstance(grid, EnergyGrid) else np.asarray(grid, float)
    if energies.ndim != 1 or energies.size < 2 or not np.all(np.diff(energies) > 0):
        raise SpectrumError(
            f"the target grid must be 1-D, strictly increasing energies in eV, got shape "
            f"{energies.shape}; pass e.g. xas_data.default_grid('Cu')"
        )
    return energies + e0 if relative else energies


def process_spectrum(
    spectrum: MeasuredSpectrum,
    grid: EnergyGrid | npt.ArrayLike | None = None,
    config: ProcessingConfig | None = None,
    relative_grid: bool = False,
) -> ProcessedSpectrum:
    """Deglitch, find E0, normalise and interpolate one measured K-edge spectrum.

    Args:
        spectrum: the measured spectrum (energies in eV as the readers give them; ``mu`` raw,
            e.g. ``ln(i0/it)``).
        grid: target energies: an ``EnergyGrid`` (e.g. ``default_grid(element)``: 141
            points at 0.25 eV) or an array [K] in eV; ``None`` keeps the data energies.
        config: processing settings.
        relative_grid: the grid is relative to E0 (eV above E0) instead of absolute.

    Returns:
        :class:`ProcessedSpectrum` with ``energy``/``mu_norm`` of shape [K] (or [n]).
        Grid points outside the data take the first/last normalised value (noted).

    Raises:
        SpectrumError: a non-K edge, and the subclasses ``EnergyAxisError``,
            ``EdgeCoverageError``, ``WrongEdgeError`` as described in their functions.
    """
    config = config or ProcessingConfig()
    label = _label(spectrum)
    if (spectrum.edge or "K").strip().upper() != "K":
        raise SpectrumError(
            f"{label}: the {spectrum.edge} edge is not supported; only K-edge spectra are "
            "processed (give a K-edge spectrum or set edge='K' if it is one)"
        )
    metadata = dict(spectrum.metadata)
    notes: list[str] = []
    converted = metadata.get("energy_converted_from") == "keV"
    if converted:
        notes.append("energies converted from keV to eV (x1000) by the reader")
    if metadata.get("reordered_points"):
        notes.append("the file was not in ascending energy order: points were sorted")
    if metadata.get("duplicate_energies_dropped"):
        notes.append(
            f"{metadata['duplicate_energies_dropped']} repeated energy point(s) were dropped"
        )
    energy, now_converted = check_energy_axis(spectrum.energy, label)
    if now_converted:
        notes.append("energies converted from keV to eV (x1000)")
    converted = converted or now_converted
    mu = np.asarray(spectrum.mu, dtype=np.float64)
    if not np.all(np.isfinite(mu)):
        raise SpectrumError(f"{label}: mu has NaN/inf values; remove those points")
    element = spectrum.element
    check_edge_coverage(energy, element, label, config, converted)
    glitches: list[int] = []
    if config.deglitch:
        mu, glitches = deglitch(energy, mu, config.deglitch_threshold, config.deglitch_max_iter)
    e0 = find_edge(energy, mu, element, config, label, converted)
    if metadata.get("normalized"):
        norm = _kept_normalization(energy, mu, metadata, label)
    else:
        norm = normalize(energy, mu, e0, config, label)
    notes.extend(norm.notes)
    if grid is None:
        out_energy, out_norm = energy, norm.norm
    else:
        out_energy = _grid_energies(grid, e0, relative_grid)
        outside = int(np.count_nonzero((out_energy < energy[0]) | (out_energy > energy[-1])))
        if outside:
            notes.append(
                f"{outside} grid point(s) outside the data ({energy[0]:.1f}..{energy[-1]:.1f}"
                " eV) take the nearest end value"
            )
        out_norm = curation.interpolate_to_grid(energy, norm.norm, out_energy, "clamp")
    return ProcessedSpectrum(
        energy=out_energy,
        mu_norm=out_norm,
        e0=e0,
        edge_step=norm.edge_step,
        n_deglitched=len(glitches),
        element=element,
        edge="K",
        name=spectrum.name,
        formula=spectrum.formula,
        metadata=metadata,
        data_energy=energy,
        data_mu=mu,
        data_norm=norm.norm,
        deglitched_energies=tuple(float(energy[i]) for i in glitches),
        pre_range=norm.pre_range,
        post_range=norm.post_range,
        post_order=norm.post_order,
        flattened=config.flatten,
        notes=tuple(notes),
    )


def process_arrays(
    energy: npt.ArrayLike,
    element: str,
    mu: npt.ArrayLike | None = None,
    *,
    i0: npt.ArrayLike | None = None,
    it: npt.ArrayLike | None = None,
    name: str = "",
    formula: str = "",
    metadata: dict[str, Any] | None = None,
    grid: EnergyGrid | npt.ArrayLike | None = None,
    config: ProcessingConfig | None = None,
    relative_grid: bool = False,
) -> ProcessedSpectrum:
    """:func:`process_spectrum` for raw arrays (not sorted by a reader).

    Args:
        energy: energies, shape [n], eV (keV when all below ``KEV_THRESHOLD``: converted and
            noted); must be strictly increasing (a descending axis is refused).
        element: claimed absorbing element (K edge).
        mu: absorption, shape [n]; or give ``i0`` and ``it`` (shape [n] each) for
            ``mu = ln(i0/it)``.
        i0: incident intensity, shape [n].
        it: transmitted intensity, shape [n].
        name: sample name.
        formula: chemical formula.
        metadata: provenance to keep.
        grid: target grid (see :func:`process_spectrum`).
        config: processing settings.
        relative_grid: the grid is relative to E0.

    Returns:
        :class:`ProcessedSpectrum`.
    """
    label = name or "spectrum"
    meta = dict(metadata or {})
    if mu is None:
        if i0 is None or it is None:
            raise SpectrumError(f"{label}: pass mu, or i0 and it (mu = ln(i0/it))")
        mu = absorbance(i0, it, label)
        meta.setdefault("mu_source", "ln(i0/it)")
    mu_arr = np.asarray(mu, dtype=np.float64)
    e, converted = check_energy_axis(energy, label)
    if mu_arr.shape != e.shape:
        raise SpectrumError(
            f"{label}: mu has shape {mu_arr.shape} but energy has {e.shape}; pass one mu per energy"
        )
    if converted:
        meta["energy_converted_from"] = "keV"
    spectrum = MeasuredSpectrum(
        energy=e, mu=mu_arr, element=element, name=name, formula=formula, metadata=meta
    )
    return process_spectrum(spectrum, grid, config, relative_grid)
