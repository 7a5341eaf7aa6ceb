"""Oxidation-state check of measured standards with and without SDM."""

from __future__ import annotations

import numpy as np
import pytest

from xas_eval.oxidation import known_oxidation_state, oxidation_state_check, post_edge_normalise

E = np.arange(141) * 0.25


def _spectra(os_values, rng, shift=0.0, scale=1.0):
    # the edge moves 2 eV per oxidation state (a chemical shift), plus sample jitter
    centres = 8.0 + 2.0 * np.asarray(os_values) + rng.normal(0, 0.2, len(os_values)) + shift
    edge = 1 / (1 + np.exp(-(E[None] - centres[:, None]) / 0.7))
    return scale * (edge + 0.3 * np.exp(-0.5 * ((E[None] - centres[:, None] - 4) / 1.5) ** 2))


def test_known_oxidation_states_from_formulas():
    assert known_oxidation_state("Cr2O3", "Cr") == 3
    assert known_oxidation_state("K2Cr2O7", "Cr") == 6
    assert known_oxidation_state("Cu", "Cu") == 0
    assert known_oxidation_state("Cu2O", "Cu") == 1
    assert known_oxidation_state("NiO", "Cu") is None
    assert known_oxidation_state("Ni_OH_2", "Ni") == 2  # XAS Data Library spelling


def test_post_edge_normalise_removes_scale_and_refuses_flat_zero():
    y = _spectra([2, 3], np.random.default_rng(0))
    np.testing.assert_allclose(post_edge_normalise(5 * y), post_edge_normalise(y))
    with pytest.raises(ValueError, match="post-edge"):
        post_edge_normalise(np.zeros((1, 141)))


def test_classifier_recovers_oxidation_states_of_aligned_standards():
    rng = np.random.default_rng(1)
    sim_os = np.repeat([2.0, 3.0, 4.0], 20)
    sim = _spectra(sim_os, rng, scale=3.0)  # simulated units differ from measured ones
    formulas = ["FeO", "Fe2O3", "Fe2O3", "FeO"]
    exp = _spectra([2, 3, 3, 2], rng, shift=1.5)  # measured energy scale 1.5 eV higher
    res = oxidation_state_check(
        sim, sim_os, exp, ["a", "b", "c", "d"], formulas, "Fe", energy=E, energy_shift=1.5
    )
    assert res.classes == [2.0, 3.0, 4.0] and res.n_scorable == 4
    assert res.accuracy["raw"] == 1.0
    assert res.mean_abs_error["raw"] < 0.5
    assert set(res.accuracy) == {"raw", "sdm"} and "| a | +2 |" in res.table()
    with pytest.raises(ValueError, match="2\\+"):
        oxidation_state_check(sim, np.full(len(sim), 3.0), exp, list("abcd"), formulas, "Fe")
    with pytest.raises(ValueError, match="one grid"):
        oxidation_state_check(sim, sim_os, exp[:, :100], list("abcd"), formulas, "Fe")


def test_known_oxidation_state_prefers_the_linked_structure():
    from pymatgen.core import Lattice, Structure

    # rock-salt CuO with Cu-O 1.95 A: bond valence sums give Cu(II)
    cuo = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.9), ["Cu", "O"], [[0] * 3, [0.5] * 3])
    assert known_oxidation_state("Cu3OH_2CO3_2", "Cu") is None  # unparseable spelling
    assert known_oxidation_state("Cu3OH_2CO3_2", "Cu", cuo) == 2
    assert known_oxidation_state("", "Cu", cuo) == 2
    assert known_oxidation_state("Cu2O", "Cu", cuo) == 2  # the structure wins over a label
    assert known_oxidation_state("Cu2O", "Cu") == 1
    assert known_oxidation_state("", "Cu") is None


def _spacegroup(symbol, lattice, species, coords):
    import warnings

    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_spacegroup(symbol, lattice, species, coords)


def test_oxidation_state_comes_from_the_linked_structure():
    from pymatgen.core import Lattice

    pyrite = _spacegroup("Pa-3", Lattice.cubic(5.417), ["Fe", "S"], [[0, 0, 0], [0.385] * 3])
    # the formula alone is ambiguous (pymatgen guesses Fe(III)); the S-S pairs make it Fe(II)
    assert known_oxidation_state("FeS2", "Fe") != 2
    assert known_oxidation_state("FeS2", "Fe", pyrite) == 2
    magnetite = _spacegroup(
        "Fd-3m",
        Lattice.cubic(8.396),
        ["Fe", "Fe", "O"],
        [[0, 0, 0], [0.625] * 3, [0.3799] * 3],
    )
    assert known_oxidation_state("Fe3O4", "Fe", magnetite) == pytest.approx(8 / 3)
    troilite = _spacegroup(
        "P6_3/mmc", Lattice.hexagonal(3.45, 5.75), ["Fe", "S"], [[0, 0, 0], [1 / 3, 2 / 3, 0.25]]
    )
    assert known_oxidation_state("FeS", "Fe", troilite) == 2
    copper = _spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    assert known_oxidation_state("", "Cu", copper) == 0


def test_mixed_valence_accepts_both_neighbouring_classes():
    from xas_eval.oxidation import accepted_classes

    assert accepted_classes(8 / 3) == {2.0, 3.0}
    assert accepted_classes(2.0) == {2.0}
