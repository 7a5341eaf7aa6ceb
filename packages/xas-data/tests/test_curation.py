"""Tests of xas_data.curation on synthetic spectra with known answers."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from xas_data.curation import (
    BOHR_RADIUS_ANGSTROM,
    OUTLIER_C,
    align_to_reference,
    broaden,
    duplicate_keep_mask,
    find_e0,
    interpolate_to_grid,
    normalize_edge_step,
    omnixas_label_scale,
    outlier_c_for,
    outlier_keep_mask,
    record_step,
    shift_energy,
    validate_energy,
    validate_spectrum,
)
from xas_data.errors import SpectrumError, XASDataError

E0 = 8333.37  # eV, deliberately off the 0.25 eV grid


def arctan_edge(energy: np.ndarray, e0: float = E0, width: float = 0.5) -> np.ndarray:
    """Unit step broadened by a Lorentzian of half width ``width`` (eV)."""
    return 0.5 + np.arctan((energy - e0) / width) / np.pi


def fwhm_of(x: np.ndarray, y: np.ndarray) -> float:
    """FWHM of a single peak from linearly interpolated half-maximum crossings."""
    half = y.max() / 2.0
    i = int(np.argmax(y))
    left = np.flatnonzero(y[:i] < half)[-1]
    right = i + np.flatnonzero(y[i:] < half)[0]
    xl = np.interp(half, [y[left], y[left + 1]], [x[left], x[left + 1]])
    xr = np.interp(half, [y[right], y[right - 1]], [x[right], x[right - 1]])
    return float(xr - xl)


# ------------------------------------------------------------------------------ validation


def test_validate_energy_accepts_and_converts() -> None:
    e = validate_energy([1, 2, 3.5])
    assert e.dtype == np.float64
    np.testing.assert_array_equal(e, [1.0, 2.0, 3.5])


def test_validate_energy_nan_names_spectrum_and_index() -> None:
    with pytest.raises(SpectrumError, match=r"mp-123.*energy\[2\]"):
        validate_energy([1.0, 2.0, np.nan, 4.0], name="mp-123")


def test_validate_energy_non_monotonic_reports_first_bad_index() -> None:
    with pytest.raises(SpectrumError, match=r"index 3") as info:
        validate_energy([1.0, 2.0, 3.0, 3.0, 2.0], name="Cu-K")
    assert "Cu-K" in str(info.value)
    assert isinstance(info.value, XASDataError)


def test_validate_energy_rejects_2d_and_single_point() -> None:
    with pytest.raises(SpectrumError, match="1-D"):
        validate_energy(np.ones((2, 3)))
    with pytest.raises(SpectrumError, match="at least 2"):
        validate_energy([1.0])


def test_validate_spectrum_errors() -> None:
    e = np.arange(5.0)
    with pytest.raises(SpectrumError, match="shape"):
        validate_spectrum(e, np.ones(4), "s")
    with pytest.raises(SpectrumError, match="not finite"):
        validate_spectrum(e, [1.0, 1.0, np.inf, 1.0, 1.0], "s")
    with pytest.raises(SpectrumError, match=r"index 1.*negative"):
        validate_spectrum(e, [1.0, -0.01, 1.0, 1.0, 1.0], "s")
    with pytest.raises(SpectrumError, match=r"\(1, 3\)"):
        validate_spectrum(e, [[1.0] * 5, [1.0, 1.0, 1.0, -0.5, 1.0]], "s")


def test_validate_spectrum_negative_tolerance_and_flag() -> None:
    e = np.arange(3.0)
    # round-off negatives (relative 1e-8) pass
    _, y = validate_spectrum(e, [2.0, -2e-8, 1.0], "s")
    assert y.dtype == np.float64
    with pytest.raises(SpectrumError):
        validate_spectrum(e, [2.0, -1e-3, 1.0], "s")
    validate_spectrum(e, [2.0, -1.0, 1.0], "s", allow_negative=True)


# ------------------------------------------------------------------------------ interpolation


def test_interpolation_exact_on_linear_function() -> None:
    rng = np.random.default_rng(0)
    energy = np.sort(rng.uniform(8300.0, 8400.0, 60))
    mu = np.stack([3.0 * energy - 7.0, -0.5 * energy + 2.0])
    grid = np.linspace(energy[0], energy[-1], 141)
    out = interpolate_to_grid(energy, mu, grid, extrapolate="error")
    assert out.shape == (2, 141)
    np.testing.assert_allclose(out[0], 3.0 * grid - 7.0, rtol=1e-12)
    np.testing.assert_allclose(out[1], -0.5 * grid + 2.0, rtol=1e-12)
    np.testing.assert_allclose(interpolate_to_grid(energy, mu[0], grid), out[0])


def test_interpolation_clamp_matches_np_interp_and_error_raises() -> None:
    energy = np.array([1.0, 2.0, 4.0, 5.0])
    mu = np.array([1.0, 3.0, 2.0, 6.0])
    grid = np.array([0.0, 1.0, 1.5, 3.0, 4.5, 5.0, 9.0])
    out = interpolate_to_grid(energy, mu, grid, extrapolate="clamp")
    np.testing.assert_allclose(out, np.interp(grid, energy, mu))
    assert out[0] == 1.0 and out[-1] == 6.0
    with pytest.raises(SpectrumError, match="extrapolate='clamp'"):
        interpolate_to_grid(energy, mu, grid, extrapolate="error")
    with pytest.raises(SpectrumError):
        interpolate_to_grid(energy, mu, grid, extrapolate="linear")  # type: ignore[arg-type]


def test_shift_energy() -> None:
    np.testing.assert_allclose(shift_energy([1.0, 2.0], 0.5), [1.5, 2.5])


# ------------------------------------------------------------------------------ outliers


def test_outlier_mask_drops_planted_outlier() -> None:
    rng = np.random.default_rng(1)
    grid = np.linspace(0.0, 1.0, 50)
    spectra = np.sin(3 * grid) + 0.01 * rng.standard_normal((200, 50))
    spectra[17, 20] += 1.0  # one bad point is enough
    keep = outlier_keep_mask(spectra, 5.0)
    assert keep.shape == (200,) and keep.dtype == bool
    assert not keep[17]
    assert keep.sum() == 199


def test_outlier_mask_uses_population_std() -> None:
    # nine zeros and one value x: mean x/10, |x - mean| = 0.9x,
    # std(ddof=0) = 0.3x -> z = 3.0; std(ddof=1) = 0.3162x -> z = 2.846.
    spectra = np.zeros((10, 2))
    spectra[9, 0] = 1.0
    keep = outlier_keep_mask(spectra, 2.9)
    assert not keep[9]  # would be kept with ddof=1
    assert keep[:9].all()
    assert outlier_keep_mask(spectra, 3.01).all()


def test_outlier_c_for_fidelities() -> None:
    assert OUTLIER_C["FEFF"] == 2.5 and OUTLIER_C["VASP"] == 5.0
    assert outlier_c_for("FEFF") == 2.5
    assert outlier_c_for("FEFF-fast") == 2.5
    assert outlier_c_for("VASP-pbe-u") == 5.0
    assert outlier_c_for("EXP") == 5.0
    assert outlier_c_for("FDMNES") == 2.5
    with pytest.raises(SpectrumError, match="FEFF") as info:
        outlier_c_for("QE-scf")
    assert "VASP" in str(info.value)


# ------------------------------------------------------------------------------ edge energy


@pytest.mark.parametrize("width", [0.3, 0.8])
@pytest.mark.parametrize("smooth_points", [1, 3])
def test_find_e0_arctan_edge(width: float, smooth_points: int) -> None:
    energy = np.arange(8300.0, 8400.0, 0.25)
    mu = 0.1 + 1.3 * arctan_edge(energy, width=width)
    e0 = find_e0(energy, mu, smooth_points=smooth_points)
    assert abs(e0 - E0) < 0.05
    assert e0 != pytest.approx(8333.25) and e0 != pytest.approx(8333.5)  # sub-grid refinement


def test_find_e0_rejects_even_smoothing() -> None:
    energy = np.arange(0.0, 10.0, 0.5)
    with pytest.raises(SpectrumError, match="odd"):
        find_e0(energy, arctan_edge(energy, 5.0), smooth_points=2)


# ------------------------------------------------------------------------------ normalisation


def synthetic_xanes(energy: np.ndarray, step: float, pre: tuple[float, float], post_coef):
    """pre line + step * arctan edge + (post polynomial in E - E0) above the edge."""
    x = energy - E0
    h = arctan_edge(energy, width=0.3)
    pre_line = pre[0] + pre[1] * x
    return pre_line + step * h + h * np.polyval(post_coef, x), pre_line, h


def test_normalize_wide_range() -> None:
    energy = np.arange(E0 - 200.0, E0 + 800.0, 0.5)
    step = 1.7
    post_coef = [2e-7, -4e-4, 0.0]
    mu, pre_line, h = synthetic_xanes(energy, step, (0.3, 1e-3), post_coef)
    res = normalize_edge_step(energy, mu)
    assert abs(res.e0 - E0) < 0.05
    assert res.edge_step == pytest.approx(step, rel=0.02)
    assert res.pre_range[0] >= -150.0 and res.pre_range[1] <= -30.0
    assert res.post_range[0] >= 50.0 and res.post_range[1] <= 300.0
    assert len(res.post_poly) == 3
    assert res.pre_line[0] == pytest.approx(1e-3, rel=0.05)
    x = energy - E0
    far = x > 30.0
    # no flattening: remove the known post-edge trend, the rest must be ~1
    flat = res.norm[far] - h[far] * np.polyval(post_coef, x[far]) / step
    np.testing.assert_allclose(flat, 1.0, atol=0.03)
    np.testing.assert_allclose(res.norm, (mu - pre_line) / step, atol=0.03)
    near = np.abs(x) < 100.0  # the arctan tail tilts the fitted line slightly
    np.testing.assert_allclose(res.pre(energy[near]), pre_line[near], atol=0.01)
    assert np.all(np.abs(res.norm[x < -30.0]) < 0.01)


def test_normalize_short_feff_like_range() -> None:
    energy = np.arange(E0 - 8.0, E0 + 50.0, 0.25)
    step = 2.4
    mu, pre_line, _ = synthetic_xanes(energy, step, (0.05, 2e-4), [-1e-4, 0.0])
    res = normalize_edge_step(energy, mu)
    assert abs(res.e0 - E0) < 0.05
    assert res.edge_step == pytest.approx(step, rel=0.02)
    # the fallback regions are recorded
    assert res.pre_range[0] == pytest.approx(energy[0] - res.e0)
    assert res.pre_range[1] < -2.0
    assert res.post_range[0] > 10.0
    assert res.post_range[1] == pytest.approx(energy[-1] - res.e0)
    x = energy - E0
    np.testing.assert_allclose(res.norm[x > 30.0], 1.0, atol=0.03)
    np.testing.assert_allclose(res.norm[x < -5.0], 0.0, atol=0.03)


def test_normalize_given_e0_and_bad_inputs() -> None:
    energy = np.arange(E0 - 8.0, E0 + 50.0, 0.25)
    mu = 0.2 + arctan_edge(energy)
    res = normalize_edge_step(energy, mu, e0=E0)
    assert res.e0 == E0
    with pytest.raises(SpectrumError, match="not positive"):
        normalize_edge_step(energy, 2.0 - arctan_edge(energy), e0=E0)
    with pytest.raises(SpectrumError, match="outside"):
        normalize_edge_step(energy, mu, e0=E0 + 100.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.e0 = 1.0  # type: ignore[misc]


# ------------------------------------------------------------------------------ alignment


def reference_like(energy: np.ndarray) -> np.ndarray:
    x = energy - E0
    white_line = 0.4 * np.exp(-0.5 * ((x - 6.0) / 2.0) ** 2)
    wiggle = 0.08 * np.sin(x / 5.0) * arctan_edge(energy, width=2.0)
    return arctan_edge(energy, width=0.8) + white_line + wiggle


@pytest.mark.parametrize("planted", [1.37, -2.2])
def test_align_recovers_planted_shift(planted: float) -> None:
    ref_e = np.arange(E0 - 20.0, E0 + 70.0, 0.25)
    ref_mu = reference_like(ref_e)
    energy = np.arange(E0 - 15.0, E0 + 60.0, 0.3)
    # the spectrum sits `planted` eV too low, on another grid, over a sloped background
    mu = 1.5 * reference_like(energy + planted) + 0.002 * (energy - energy[0])
    shift = align_to_reference(energy, mu, ref_e, ref_mu)
    assert shift == pytest.approx(planted, abs=0.03)
    # sign convention: shifting the energies by the result lines the edges up
    assert find_e0(shift_energy(energy, shift), mu) == pytest.approx(
        find_e0(ref_e, ref_mu), abs=0.05
    )


def test_align_respects_max_shift() -> None:
    ref_e = np.arange(E0 - 20.0, E0 + 70.0, 0.25)
    energy = np.arange(E0 - 20.0, E0 + 70.0, 0.25)
    mu = reference_like(energy + 4.0)
    shift = align_to_reference(energy, mu, ref_e, reference_like(ref_e), max_shift=2.0)
    assert abs(shift) <= 2.0 + 1e-9


# ------------------------------------------------------------------------------ broadening


def test_broaden_gaussian_widths_add_in_quadrature_and_area_is_kept() -> None:
    rng = np.random.default_rng(3)
    energy = np.unique(np.concatenate([np.arange(0.0, 100.0, 0.1), rng.uniform(0, 100, 150)]))
    sigma0 = 0.5
    peak = np.exp(-0.5 * ((energy - 50.0) / sigma0) ** 2)
    f0 = 2.0 * np.sqrt(2.0 * np.log(2.0)) * sigma0
    for fwhm in (1.0, 3.0):
        out = broaden(energy, peak, fwhm, kind="gaussian")
        assert out.shape == peak.shape
        assert np.trapezoid(out, energy) == pytest.approx(np.trapezoid(peak, energy), rel=1e-3)
        assert fwhm_of(energy, out) == pytest.approx(np.hypot(f0, fwhm), rel=0.05)


def test_broaden_lorentzian_area_width_and_edges() -> None:
    energy = np.linspace(0.0, 200.0, 2001)
    narrow = np.exp(-0.5 * ((energy - 100.0) / 0.05) ** 2)  # much narrower than the kernel
    out = broaden(energy, narrow, 2.0)  # lorentzian by default
    assert np.trapezoid(out, energy) == pytest.approx(np.trapezoid(narrow, energy), rel=0.02)
    assert fwhm_of(energy, out) == pytest.approx(2.0, rel=0.05)
    # an edge: the ends must not sag (edge padding), rows are broadened independently
    edge = np.stack([arctan_edge(energy, 100.0, 0.2), np.full_like(energy, 3.0)])
    out2 = broaden(energy, edge, 2.0, kind="lorentzian")
    assert out2.shape == edge.shape
    np.testing.assert_allclose(out2[1], 3.0, rtol=1e-9)
    assert out2[0, -1] == pytest.approx(edge[0, -1], abs=0.02)
    assert out2[0, 0] == pytest.approx(edge[0, 0], abs=0.02)


def test_broaden_zero_width_is_a_copy_and_bad_kind_raises() -> None:
    energy = np.arange(5.0)
    mu = np.array([0.0, 1.0, 4.0, 1.0, 0.0])
    out = broaden(energy, mu, 0.0)
    np.testing.assert_array_equal(out, mu)
    out[0] = 9.0
    assert mu[0] == 0.0
    with pytest.raises(SpectrumError, match="gaussian"):
        broaden(energy, mu, 1.0, kind="voigt")  # type: ignore[arg-type]
    with pytest.raises(SpectrumError):
        broaden(energy, mu, -1.0)


# ------------------------------------------------------------------------------ duplicates


def test_duplicates_exact() -> None:
    rng = np.random.default_rng(4)
    base = rng.random((6, 141))
    spectra = np.concatenate([base, base[[1, 4, 1]], base[:1] + 1e-15])
    keep = duplicate_keep_mask(spectra)
    expected = np.array([True] * 6 + [False, False, False, True])
    np.testing.assert_array_equal(keep, expected)


def naive_near_keep(spectra: np.ndarray, rtol: float) -> np.ndarray:
    keep = np.zeros(len(spectra), dtype=bool)
    peaks = np.abs(spectra).max(axis=1)
    for j in range(len(spectra)):
        dup = any(
            np.abs(spectra[i] - spectra[j]).max() <= rtol * max(peaks[i], peaks[j])
            for i in range(j)
            if keep[i]
        )
        keep[j] = not dup
    return keep


def test_duplicates_near() -> None:
    rng = np.random.default_rng(5)
    base = 1.0 + rng.random((40, 141))
    copies = base[rng.integers(0, 40, 30)] * (1.0 + 2e-4 * rng.standard_normal((30, 141)))
    far = base[:5] * 1.05  # 5 % off: not duplicates at rtol=1e-3
    spectra = np.concatenate([base, copies, far])
    keep = duplicate_keep_mask(spectra, rtol=1e-3)
    assert keep[:40].all()
    assert not keep[40:70].any()
    assert keep[70:].all()
    np.testing.assert_array_equal(keep, naive_near_keep(spectra, 1e-3))
    # exact mode does not treat the slightly perturbed copies as duplicates
    assert duplicate_keep_mask(spectra).all()


def test_duplicates_near_chain_matches_reference() -> None:
    # 0.0, 0.8e-3, 1.6e-3 (times a flat row): 0~1, 1~2 but 0 !~ 2 at rtol=1e-3
    rng = np.random.default_rng(6)
    row = np.ones(20)
    spectra = np.stack([row, row * (1 + 0.8e-3), row * (1 + 1.6e-3), row * 3.0])
    keep = duplicate_keep_mask(spectra, rtol=1e-3)
    np.testing.assert_array_equal(keep, [True, False, True, True])
    random = rng.random((60, 10)).round(2)
    random = np.concatenate([random, random[::3] + 0.004])
    for rtol in (0.005, 0.02):
        np.testing.assert_array_equal(
            duplicate_keep_mask(random, rtol=rtol), naive_near_keep(random, rtol)
        )
    with pytest.raises(SpectrumError):
        duplicate_keep_mask(random, rtol=-1.0)


# ------------------------------------------------------------------------------ labels, records


def test_omnixas_label_scale() -> None:
    assert BOHR_RADIUS_ANGSTROM == pytest.approx(0.529177210903)
    # 1000 * 2 * 0.01 / 0.529177210903**2 = 71.4212...
    out = omnixas_label_scale(np.array([2.0, 0.0]), 0.01)
    np.testing.assert_allclose(out, [71.42128, 0.0], rtol=1e-6)
    rows = omnixas_label_scale(np.ones((2, 3)), np.array([0.01, 0.02]))
    np.testing.assert_allclose(rows[1] / rows[0], 2.0)
    assert rows.shape == (2, 3)
    with pytest.raises(SpectrumError, match="one constant per spectrum"):
        omnixas_label_scale(np.ones((2, 3)), np.array([1.0, 2.0, 3.0]))


def test_record_step_to_dict_is_json_ready() -> None:
    rec = record_step("outlier_removal", {"c": np.float64(2.5), "grid": (1, 2)}, 10, 8, 0.25)
    d = rec.to_dict()
    assert d == {
        "step": "outlier_removal",
        "params": {"c": 2.5, "grid": [1, 2]},
        "n_in": 10,
        "n_out": 8,
        "seconds": 0.25,
    }
    json.dumps(d)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.n_out = 3  # type: ignore[misc]
    with pytest.raises(SpectrumError):
        record_step("x", {}, -1, 0, 0.0)
