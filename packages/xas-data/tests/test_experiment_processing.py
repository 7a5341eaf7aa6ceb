"""Processing of measured K-edge spectra: E0, edge step, deglitching and bad-input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xas_data.edges import K_EDGE_EV, k_edge_energy, k_edges_in_range, nearest_k_edge
from xas_data.errors import SpectrumError
from xas_data.experiment_processing import (
    EdgeCoverageError,
    EnergyAxisError,
    ProcessingConfig,
    WrongEdgeError,
    absorbance,
    deglitch,
    process_arrays,
    process_spectrum,
)
from xas_data.measured import MeasuredSpectrum, read_two_column, read_xaslib_json
from xas_data.schema import default_grid

E0_CU = 8985.0
STEP = 1.2


def scan_energies(lo: float = 8779.0, hi: float = 9700.0, e0: float = E0_CU) -> np.ndarray:
    """A typical step scan: 5 eV pre-edge, 0.5 eV across the edge, 2 eV above (eV, [n])."""
    return np.unique(
        np.concatenate(
            [
                np.arange(lo, e0 - 30.0, 5.0),
                np.arange(e0 - 30.0, e0 + 60.0, 0.5),
                np.arange(e0 + 60.0, hi, 2.0),
            ]
        )
    )


def synthetic_mu(
    energy: np.ndarray, e0: float = E0_CU, step: float = STEP, noise: float = 1e-3, seed: int = 0
) -> np.ndarray:
    """Linear background + arctan edge (width 1.5 eV) + a white-line peak + Gaussian noise."""
    rng = np.random.default_rng(seed)
    background = 0.4 - 2e-4 * (energy - e0)
    edge = step * (0.5 + np.arctan((energy - e0) / 1.5) / np.pi)
    peak = 0.3 * step * np.exp(-0.5 * ((energy - e0 - 8.0) / 3.0) ** 2)
    return background + edge + peak + noise * rng.standard_normal(energy.size)


@pytest.fixture
def cu_scan() -> tuple[np.ndarray, np.ndarray]:
    energy = scan_energies()
    return energy, synthetic_mu(energy)


# --------------------------------------------------------------------------- edges table


def test_edge_table() -> None:
    for symbol, value in {"Ti": 4966, "V": 5465, "Cr": 5989, "Mn": 6539, "Fe": 7112}.items():
        assert abs(k_edge_energy(symbol) - value) < 1.0
    for symbol, value in {"Co": 7709, "Ni": 8333, "Cu": 8979, "Zn": 9659}.items():
        assert abs(k_edge_energy(symbol) - value) < 1.0
    assert all(s in K_EDGE_EV for s in ("K", "Ca", "Ga", "Se", "Zr", "Mo"))  # Z = 19..42
    assert nearest_k_edge(8990.0)[0] == "Cu"
    assert [s for s, _ in k_edges_in_range(8000, 9000)] == ["Ni", "Cu"]
    with pytest.raises(SpectrumError, match="no tabulated K-edge"):
        k_edge_energy("Xx")


# --------------------------------------------------------------------------- synthetic


def test_e0_and_edge_step_of_synthetic_spectrum(cu_scan) -> None:
    energy, mu = cu_scan
    result = process_arrays(energy, "Cu", mu, name="synthetic Cu", grid=default_grid("Cu"))
    assert abs(result.e0 - E0_CU) < 0.5
    assert abs(result.edge_step - STEP) / STEP < 0.03
    assert result.n_deglitched == 0
    assert result.energy.shape == (141,) and result.mu_norm.shape == (141,)
    np.testing.assert_allclose(result.energy, default_grid("Cu").energies)
    # pre-edge ~0 and post-edge ~1 on the data energies
    rel = result.data_energy - result.e0
    assert abs(np.mean(result.data_norm[rel < -40])) < 0.02
    assert abs(np.mean(result.data_norm[(rel > 100) & (rel < 600)]) - 1.0) < 0.03
    assert result.pre_range[0] >= -150.5 and result.pre_range[1] <= -29.5
    assert result.post_range[0] >= 49.5 and result.post_order == 2


def test_relative_grid_and_flattening(cu_scan) -> None:
    energy, mu = cu_scan
    offsets = np.linspace(-20.0, 60.0, 81)
    result = process_arrays(energy, "Cu", mu, grid=offsets, relative_grid=True)
    np.testing.assert_allclose(result.energy, result.e0 + offsets)
    curved = mu + 2e-6 * np.clip(energy - E0_CU, 0, None) ** 2  # post-edge curvature
    plain = process_arrays(energy, "Cu", curved)
    flat = process_arrays(energy, "Cu", curved, config=ProcessingConfig(flatten=True))
    far = (plain.data_energy - plain.e0) > 100
    assert flat.flattened
    assert np.std(flat.data_norm[far]) < np.std(plain.data_norm[far])


def test_absorbance_from_intensities(cu_scan) -> None:
    energy, mu = cu_scan
    i0 = np.full(energy.size, 1e5)
    it = i0 * np.exp(-mu)
    np.testing.assert_allclose(absorbance(i0, it), mu)
    result = process_arrays(energy, "Cu", i0=i0, it=it)
    assert abs(result.e0 - E0_CU) < 0.5
    with pytest.raises(SpectrumError, match="ln\\(i0/it\\) is undefined"):
        absorbance(i0, np.where(energy > 9000, 0.0, it))


def test_single_point_spike_is_removed(cu_scan) -> None:
    energy, mu = cu_scan
    i = int(np.argmin(np.abs(energy - 9250.0)))
    spiked = mu.copy()
    spiked[i] += 0.15
    result = process_arrays(energy, "Cu", spiked)
    assert result.n_deglitched == 1
    assert result.deglitched_energies == (pytest.approx(energy[i]),)
    assert abs(result.data_mu[i] - mu[i]) < 0.01
    assert abs(result.e0 - E0_CU) < 0.5
    off = process_arrays(energy, "Cu", spiked, config=ProcessingConfig(deglitch=False))
    assert off.n_deglitched == 0 and off.data_mu[i] == spiked[i]


def test_deglitch_keeps_sharp_real_peaks() -> None:
    energy = np.arange(5960.0, 6060.0, 0.5)
    sharp = 3.0 * np.exp(-0.5 * ((energy - 5993.0) / 0.7) ** 2)  # chromate-like pre-edge
    mu = 0.1 + sharp + 0.8 * (0.5 + np.arctan((energy - 6005.0) / 2.0) / np.pi)
    mu += 5e-4 * np.random.default_rng(1).standard_normal(energy.size)
    cleaned, replaced = deglitch(energy, mu)
    assert replaced == []
    np.testing.assert_array_equal(cleaned, mu)


# --------------------------------------------------------------------------- bad input


def test_kev_energies_are_converted_with_a_note(cu_scan) -> None:
    energy, mu = cu_scan
    result = process_arrays(energy / 1000.0, "Cu", mu)
    assert abs(result.e0 - E0_CU) < 0.5
    assert any("keV" in note for note in result.notes)


def test_kev_energies_of_another_edge_name_the_unit(cu_scan) -> None:
    energy, mu = cu_scan
    with pytest.raises(EdgeCoverageError, match="taken as keV") as info:
        process_arrays(energy / 1000.0, "Ni", mu)
    assert "Cu (8979 eV)" in str(info.value)


def test_reversed_energy_axis_is_refused(cu_scan) -> None:
    energy, mu = cu_scan
    with pytest.raises(EnergyAxisError, match="descending.*reverse energy and mu"):
        process_arrays(energy[::-1], "Cu", mu[::-1])
    spectrum = MeasuredSpectrum(energy=energy[::-1], mu=mu[::-1], element="Cu", name="rev")
    with pytest.raises(EnergyAxisError, match="rev: the energy axis is descending"):
        process_spectrum(spectrum)


def test_non_monotonic_axis_is_refused(cu_scan) -> None:
    energy, mu = cu_scan
    twice = np.concatenate([energy, energy[:50]])
    with pytest.raises(EnergyAxisError, match="not strictly increasing.*concatenated scans"):
        process_arrays(twice, "Cu", np.concatenate([mu, mu[:50]]))


def test_reader_sorts_a_descending_file_and_says_so(tmp_path: Path, cu_scan) -> None:
    energy, mu = cu_scan
    path = tmp_path / "cu_desc.txt"
    path.write_text(
        "\n".join(f"{e:.3f} {m:.6f}" for e, m in zip(energy[::-1], mu[::-1], strict=True))
    )
    result = process_spectrum(read_two_column(path, element="Cu"))
    assert abs(result.e0 - E0_CU) < 0.5
    assert any("sorted" in note for note in result.notes)


def test_spectrum_not_covering_the_edge(cu_scan) -> None:
    energy, mu = cu_scan
    above = energy > 9050.0
    with pytest.raises(EdgeCoverageError, match="do not contain the Cu K edge \\(8978.9 eV\\)"):
        process_arrays(energy[above], "Cu", mu[above])
    barely = energy >= 8978.5  # one point below the tabulated edge
    with pytest.raises(EdgeCoverageError, match="too few points around the Cu K edge"):
        process_arrays(energy[barely], "Cu", mu[barely])


def test_cu_spectrum_claimed_as_ni(cu_scan) -> None:
    energy, mu = cu_scan
    with pytest.raises(
        EdgeCoverageError, match="do not contain the Ni K edge.*cover the K edge of Cu"
    ):
        process_arrays(energy, "Ni", mu)
    # a scan that also covers the Ni edge position: the edge found is Cu's
    wide = scan_energies(lo=8200.0)
    with pytest.raises(WrongEdgeError, match="not a Ni K-edge spectrum.*matches the Cu K edge"):
        process_arrays(wide, "Ni", synthetic_mu(wide))


def test_edge_of_no_tabulated_element() -> None:
    energy = scan_energies(lo=8100.0, e0=8700.0, hi=9000.0)
    with pytest.raises(WrongEdgeError, match="matches no tabulated K edge"):
        process_arrays(energy, "Ni", synthetic_mu(energy, e0=8700.0))


def test_only_k_edges() -> None:
    energy = scan_energies()
    spectrum = MeasuredSpectrum(energy, synthetic_mu(energy), "Cu", edge="L3", name="x")
    with pytest.raises(SpectrumError, match="L3 edge is not supported"):
        process_spectrum(spectrum)


# --------------------------------------------------------------------------- real data


def test_real_standards_e0(shared_data: Path) -> None:
    spectra = read_xaslib_json(shared_data / "experiment/xaslib/xaslib_K_edge.json")
    by_file = {Path(str(s.metadata["xdi_file"])).stem: s for s in spectra}
    for stem in ("Cu_Foil_rt_2016Foils", "CuO_tenorite_13K_01", "cu_metal_rt", "Zn_foil"):
        spectrum = by_file[stem]
        result = process_spectrum(spectrum, default_grid(spectrum.element))
        assert abs(result.e0 - k_edge_energy(spectrum.element)) < 10.0, stem
        assert result.edge_step > 0
        assert abs(np.median(result.mu_norm[-20:]) - 1.0) < 0.3
    anatase = read_two_column(
        shared_data / "experiment/lightshow-anatase/anatase_exp.txt", element="Ti"
    )
    result = process_spectrum(anatase, default_grid("Ti"))
    assert 4970.0 < result.e0 < 4990.0  # TiO2 main edge above the metal's 4966 eV
    assert any("pre-edge" in note for note in result.notes)
