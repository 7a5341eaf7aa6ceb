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


def test_known_oxidation_state_falls_back_to_the_linked_structure():
    from pymatgen.core import Lattice, Structure

    cuo = Structure(Lattice.cubic(4.2), ["Cu", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert known_oxidation_state("Cu3OH_2CO3_2", "Cu") is None  # unparseable spelling
    assert known_oxidation_state("Cu3OH_2CO3_2", "Cu", cuo) == 2
    assert known_oxidation_state("", "Cu", cuo) == 2
    assert known_oxidation_state("Cu2O", "Cu", cuo) == 1  # the formula wins when it parses
    assert known_oxidation_state("", "Cu") is None
