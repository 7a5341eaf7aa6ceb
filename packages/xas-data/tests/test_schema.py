"""Core schema types: energy grids, default grids, fidelity names and spectrum validation."""

from __future__ import annotations

import numpy as np
import pytest

from xas_data.errors import SpectrumError, XASDataError
from xas_data.schema import (
    DEFAULT_GRID_START_EV,
    K_EDGE_EV,
    EnergyGrid,
    Spectrum,
    check_energy,
    default_grid,
    edges_inside,
    fit_edge_grid,
    parse_fidelity,
)

# ----------------------------------------------------------------------------- EnergyGrid


def test_energy_grid_energies_are_uniform_and_float64():
    grid = EnergyGrid(100.0, step=0.5, n_points=5)
    np.testing.assert_array_equal(grid.energies, [100.0, 100.5, 101.0, 101.5, 102.0])
    assert grid.energies.dtype == np.float64
    assert grid.stop == 102.0
    assert grid.to_dict() == {"start": 100.0, "step": 0.5, "n_points": 5}


def test_energy_grid_defaults_are_omnixas():
    grid = EnergyGrid(0.0)
    assert grid.n_points == 141
    assert grid.step == 0.25
    assert grid.stop == pytest.approx(35.0)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"start": float("nan")}, "start=nan"),
        ({"start": float("inf")}, "start=inf"),
        ({"start": 1.0, "step": 0.0}, "step=0.0"),
        ({"start": 1.0, "step": -0.25}, "step=-0.25"),
        ({"start": 1.0, "n_points": 1}, "n=1"),
        ({"start": 1.0, "n_points": 0}, "n=0"),
    ],
)
def test_energy_grid_rejects_bad_parameters(kwargs, fragment):
    with pytest.raises(SpectrumError) as info:
        EnergyGrid(**kwargs)
    message = str(info.value)
    assert fragment in message
    assert "step > 0 eV" in message
    assert "at least 2 points" in message


def test_spectrum_error_is_an_xas_data_error():
    with pytest.raises(XASDataError):
        EnergyGrid(1.0, step=0.0)


# ----------------------------------------------------------------------------- default_grid


def test_default_grid_cu_is_omnixas():
    grid = default_grid("Cu")
    assert grid.start == 8983.173
    assert grid.n_points == 141
    assert grid.step == 0.25
    energies = grid.energies
    assert energies.shape == (141,)
    assert energies[0] == pytest.approx(8983.173)
    assert energies[-1] == pytest.approx(8983.173 + 35.0)
    np.testing.assert_allclose(np.diff(energies), 0.25)


def test_default_grid_other_elements_use_the_cu_offset():
    offset = 8983.173 - K_EDGE_EV["Cu"]
    for element, edge in K_EDGE_EV.items():
        assert default_grid(element).start == pytest.approx(edge + offset, abs=1e-3)
    assert DEFAULT_GRID_START_EV["Fe"] == pytest.approx(7112.0 + 4.173)


def test_default_grid_starts_override_and_extend():
    assert default_grid("Cu", starts={"Cu": 9000.0}).start == 9000.0
    # other elements keep their default
    assert default_grid("Ni", starts={"Cu": 9000.0}).start == DEFAULT_GRID_START_EV["Ni"]
    # an element without a tabulated start becomes usable through ``starts``
    grid = default_grid("Pt", starts={"Pt": 78400.0}, step=0.5, n_points=11)
    assert (grid.start, grid.step, grid.n_points) == (78400.0, 0.5, 11)
    assert grid.stop == pytest.approx(78405.0)


def test_default_grid_unknown_element_names_the_fix():
    with pytest.raises(SpectrumError) as info:
        default_grid("Pt")
    message = str(info.value)
    assert "no default grid start for Pt" in message
    assert "starts={'Pt': <eV>}" in message
    assert "Cu" in message  # lists the known elements


def test_default_grid_rejects_a_non_element():
    with pytest.raises(SpectrumError, match="not a chemical element"):
        default_grid("Xx")


# ----------------------------------------------------------------------------- fidelities


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("FEFF", ("FEFF", None)),
        ("FEFF-fast", ("FEFF", "fast")),
        ("VASP", ("VASP", None)),
        ("FEFF-scf_5.0", ("FEFF", "scf_5.0")),
    ],
)
def test_parse_fidelity_valid(name, expected):
    assert parse_fidelity(name) == expected


@pytest.mark.parametrize(
    "name", ["feff", "FEFF-Fast", "", "FEFF-", "-fast", "FEFF fast", "FEFF--fast", None]
)
def test_parse_fidelity_invalid_names_the_fix(name):
    with pytest.raises(SpectrumError) as info:
        parse_fidelity(name)
    message = str(info.value)
    assert f"fidelity {name!r} is not valid" in message
    assert "FEFF-fast" in message
    assert "lower case" in message
    assert "'FEFF'" in message  # lists the base fidelities


def test_parse_fidelity_rejects_a_trailing_newline():
    with pytest.raises(SpectrumError):
        parse_fidelity("FEFF\n")


# ----------------------------------------------------------------------------- Spectrum


def _spectrum(**overrides) -> Spectrum:
    values = {
        "energy": np.array([1.0, 2.0, 3.0, 4.0]),
        "intensity": np.array([0.0, 0.5, 1.5, 1.0]),
        "element": "Cu",
    }
    values |= overrides
    return Spectrum(**values)


def test_spectrum_valid_is_normalised():
    spectrum = _spectrum(energy=[1, 2, 3, 4], intensity=[0, 1, 2, 1])
    assert spectrum.element == "Cu"
    assert spectrum.edge == "K"
    assert spectrum.fidelity == "FEFF"
    assert spectrum.energy.dtype == np.float64
    assert spectrum.intensity.dtype == np.float64
    np.testing.assert_array_equal(spectrum.energy, [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(spectrum.intensity, [0.0, 1.0, 2.0, 1.0])


def test_spectrum_accepts_preset_fidelity_and_l_edge():
    spectrum = _spectrum(fidelity="FEFF-fast", edge="L3")
    assert (spectrum.fidelity, spectrum.edge) == ("FEFF-fast", "L3")


@pytest.mark.parametrize(
    ("energy", "index", "values"),
    [
        ([1.0, 2.0, 1.5, 4.0], 2, "(2.0 -> 1.5 eV)"),
        ([1.0, 2.0, 3.0, 3.0], 3, "(3.0 -> 3.0 eV)"),
        ([2.0, 1.0, 3.0, 4.0], 1, "(2.0 -> 1.0 eV)"),
    ],
)
def test_spectrum_non_monotonic_energy_names_the_index(energy, index, values):
    with pytest.raises(SpectrumError) as info:
        _spectrum(energy=np.array(energy))
    message = str(info.value)
    assert "Cu K FEFF spectrum" in message
    assert f"not strictly increasing at index {index}" in message
    assert values in message
    assert "sort them" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_spectrum_non_finite_energy_names_the_index(bad):
    with pytest.raises(SpectrumError) as info:
        _spectrum(energy=np.array([1.0, 2.0, bad, 4.0]))
    message = str(info.value)
    assert f"energy[2] is {bad}" in message
    assert "remove NaN/inf" in message


@pytest.mark.parametrize("energy", [np.array([1.0]), np.ones((2, 2)), np.array([])])
def test_spectrum_energy_needs_1d_and_two_points(energy):
    with pytest.raises(SpectrumError, match=r"1-D with >= 2 points"):
        _spectrum(energy=energy, intensity=np.zeros(energy.shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_spectrum_non_finite_intensity(bad):
    with pytest.raises(SpectrumError) as info:
        _spectrum(intensity=np.array([0.0, bad, 1.0, 1.0]))
    assert "intensity has NaN/inf values" in str(info.value)


def test_spectrum_negative_intensity_reports_the_minimum():
    with pytest.raises(SpectrumError) as info:
        _spectrum(intensity=np.array([0.1, -0.25, 1.0, 1.0]))
    message = str(info.value)
    assert "negative values" in message
    assert "min -0.25" in message
    assert "background subtraction" in message


def test_spectrum_shape_mismatch_reports_both_shapes():
    with pytest.raises(SpectrumError) as info:
        _spectrum(intensity=np.array([0.0, 1.0, 2.0]))
    message = str(info.value)
    assert "intensity shape (3,)" in message
    assert "energy shape (4,)" in message


@pytest.mark.parametrize("edge", ["k", "L", "M1", ""])
def test_spectrum_bad_edge_lists_the_edges(edge):
    with pytest.raises(SpectrumError) as info:
        _spectrum(edge=edge)
    message = str(info.value)
    assert f"unknown edge {edge!r}" in message
    assert "'L3'" in message


def test_spectrum_bad_fidelity_and_element():
    with pytest.raises(SpectrumError, match="fidelity 'feff' is not valid"):
        _spectrum(fidelity="feff")
    with pytest.raises(SpectrumError, match="not a chemical element"):
        _spectrum(element="Qq")


def test_check_energy_uses_the_given_name():
    with pytest.raises(SpectrumError, match=r"^Cu grid: energies not strictly increasing"):
        check_energy(np.array([1.0, 1.0]), "Cu grid")
    out = check_energy([1, 2, 3])
    assert out.dtype == np.float64


@pytest.mark.parametrize("spread", [0.5, 4.0, 12.0])
def test_fit_edge_grid_keeps_99_percent_of_edges_inside(spread):
    rng = np.random.default_rng(1)
    e0 = 7120 + rng.normal(0, spread, 500)
    e0[:3] -= 40  # a few wild edges may fall outside (1 %)
    grid = fit_edge_grid(e0)
    assert edges_inside(e0, grid).mean() >= 0.99
    assert grid.stop >= np.median(e0) + 60 and grid.n_points <= 256
    assert grid.step >= 0.25 and abs(grid.start / 0.05 - round(grid.start / 0.05)) < 1e-6


def test_fit_edge_grid_refuses_no_edges():
    with pytest.raises(SpectrumError, match="no finite edge energies"):
        fit_edge_grid(np.array([np.nan]))
